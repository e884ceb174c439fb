"""Write a SLURM job-array script for a study: one array task per cell (or per run), nothing submitted.

Each task calls ``scripts/study.py run <study> --root <root> --only <cell>``, so it launches the very
``cli.py fit`` commands of a local run with the same skip / resume logic: a requeued or resubmitted task
skips its finished runs and resumes the others from their newest ``last.ckpt``. ``srun`` makes the
task a job step, so ``--signal=USR1@<s>`` reaches the training processes, which save ``last.ckpt``
and exit (PreemptionCheckpoint); ``--requeue`` lets the scheduler restart the task.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lit_moe.errors import UserInputError
from lit_moe.study.runner import command
from lit_moe.study.spec import Study


def array_units(study: Study, per: str) -> list[list[str]]:
    """The ``--only`` selectors of each array task: one cell (all its seeds, in turn) or one run."""
    if per == "cell":
        return [[cell.name] for cell in study.cells]
    if per == "run":
        return [[run.key] for run in study.runs()]
    raise UserInputError(f"--per must be 'cell' or 'run', got {per!r}")


def slurm_script(study: Study, per: str = "cell", python: str = sys.executable, max_concurrent: int = 0,
                 sbatch: Sequence[str] = (), signal_s: int = 120) -> str:
    """The job-array script's text.

    Args:
        study: The parsed study.
        per: ``cell``: one task per cell, its seeds one after another; ``run``: one task per (cell, seed).
        python: Interpreter on the cluster (default: this one).
        max_concurrent: ``%N`` limit on simultaneously running tasks (0: none).
        sbatch: Extra ``#SBATCH`` options, e.g. ``--partition=cpu`` ``--time=02:00:00``.
        signal_s: Seconds before the time limit at which SLURM sends SIGUSR1 (checkpoint and exit).
    """
    units = array_units(study, per)
    runner = study.repo / "scripts" / "study.py"
    limit = f"%{max_concurrent}" if max_concurrent > 0 else ""
    logs = study.root / "slurm"
    lines = ["#!/bin/bash",
             f"# Study {study.name} ({study.path}): {len(units)} array tasks, one per {per}.",
             f"# Written by: {shlex.join([python, str(runner), 'slurm', str(study.path)])}",
             f"# Submit:     sbatch {shlex.quote(str(study.root / 'study.sbatch'))}   (task logs: {logs})",
             f"# Report:     {shlex.join([python, str(runner), 'report', str(study.path), '--root', str(study.root)])}",
             f"#SBATCH --job-name={study.name}",
             f"#SBATCH --array=0-{len(units) - 1}{limit}",
             f"#SBATCH --output={logs}/%A_%a.out",
             "#SBATCH --ntasks=1",
             f"#SBATCH --signal=USR1@{signal_s}",
             "#SBATCH --requeue"]
    lines += [f"#SBATCH {option}" for option in sbatch]
    lines += ["set -euo pipefail", f"cd {shlex.quote(str(study.repo))}", "case \"$SLURM_ARRAY_TASK_ID\" in"]
    for index, only in enumerate(units):
        selected = [r for r in study.runs() if r.cell.name in only or r.key in only]
        lines.append(f"  {index})  # " + ", ".join(r.key for r in selected))
        for run in selected:  # the commands the task's runner launches (a resumed run adds --ckpt_path)
            lines.append("    #   " + shlex.join(command(study, run, python=python)))
        args = [python, str(runner), "run", str(study.path), "--root", str(study.root), "--steps", str(study.steps),
                "--seeds", ",".join(map(str, study.seeds))]
        for selector in only:
            args += ["--only", selector]
        lines += [f"    exec srun {shlex.join(args)} ;;"]
    lines += ["  *) echo \"no array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;", "esac", ""]
    return "\n".join(lines)


def write_slurm_script(study: Study, path: Path | None = None, **options) -> Path:
    """Write :func:`slurm_script` to ``path`` (default ``<root>/study.sbatch``) and return the path."""
    path = Path(path) if path is not None else study.root / "study.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    (study.root / "slurm").mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
    path.write_text(slurm_script(study, **options))
    path.chmod(0o755)
    return path
