"""Router studies: expand a grid of config overrides x seeds into ``cli.py fit`` runs, run them N at a
time (or write a SLURM job array), resume half-finished studies, and report seed spread.

Entry point: ``python scripts/study.py {run,slurm,report} <study.yaml>``; see ``docs/studies.md``.
"""

from lit_moe.study.spec import Cell, Run, Study, load_study

__all__ = ["Cell", "Run", "Study", "load_study"]
