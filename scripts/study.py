"""Run a grid of experiments over seeds from one YAML, resume it, write a SLURM array for it, report on it.

    .venv/bin/python scripts/study.py run    configs/studies/router_ablation.yaml --parallel 2
    .venv/bin/python scripts/study.py slurm  configs/studies/router_ablation.yaml --sbatch=--time=02:00:00
    .venv/bin/python scripts/study.py report configs/studies/router_ablation.yaml

``run`` launches every unfinished (cell, seed) as a ``cli.py fit`` subprocess; rerunning it skips the
finished runs and resumes the others from their own newest ``last.ckpt``. Ctrl-C (or SIGTERM) makes
the running ones checkpoint and exit, so the same command continues later. See docs/studies.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lit_moe.errors import UserInputError
from lit_moe.study.report import write_report
from lit_moe.study.runner import StudyRunner, command, is_finished, newest_checkpoint, select_runs
from lit_moe.study.slurm import write_slurm_script
from lit_moe.study.spec import load_study, with_overrides


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per action, each taking the study file and an optional --root."""
    main = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="action", required=True)
    for name, text in (("run", "launch every unfinished run (skips finished ones, resumes killed ones)"),
                       ("slurm", "write a SLURM job-array script (one task per cell); submits nothing"),
                       ("report", "tables and seed-band plots of the finished runs")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("study", help="the study YAML, e.g. configs/studies/router_ablation.yaml")
        sub.add_argument("--root", help="output root (default: the file's 'root', else runs/studies/<name>)")
        sub.add_argument("--steps", type=int, help="steps per run instead of the file's (use a separate --root)")
        sub.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")],
                         help="comma-separated seeds instead of the file's, e.g. 1,2")
        if name in ("run", "slurm"):
            sub.add_argument("--python", default=sys.executable, help="interpreter for cli.py (default: this one)")
        if name == "run":
            sub.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
            sub.add_argument("--threads", type=int, help="OMP_NUM_THREADS per run (default: CPUs // parallel "
                                                         "when parallel > 1)")
            sub.add_argument("--only", action="append", default=[], help="a cell or <cell>/seed<S>; repeatable")
            sub.add_argument("--dry-run", action="store_true", help="print each pending run's command, run nothing")
        if name == "slurm":
            sub.add_argument("--per", choices=("cell", "run"), default="cell",
                             help="one array task per cell (its seeds in turn; default) or per (cell, seed)")
            sub.add_argument("--max-concurrent", type=int, default=0, help="the array's %%N limit (0: none)")
            sub.add_argument("--sbatch", action="append", default=[],
                             help="an extra #SBATCH option, e.g. --sbatch=--time=02:00:00; repeatable")
            sub.add_argument("--output", help="script path (default <root>/study.sbatch)")
        if name == "report":
            sub.add_argument("--out", help="output folder (default <root>/report)")
            sub.add_argument("--target-loss", type=float, help="val loss for 'tokens to target' instead of the file's")
    return main


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and perform the action; a bad study file or option ends with one ``error:`` line (2)."""
    args = parser().parse_args(argv)
    try:
        study = with_overrides(load_study(args.study, root=args.root), steps=args.steps, seeds=args.seeds,
                               target_loss=getattr(args, "target_loss", None))
        if args.action == "run":
            if args.dry_run:
                for run in select_runs(study, args.only):
                    if not is_finished(study, run):
                        print(shlex.join(command(study, run, newest_checkpoint(study.run_dir(run)), args.python)))
                return 0
            attempts = StudyRunner(study, parallel=args.parallel, threads=args.threads,
                                   python=args.python).run(only=args.only)
            failed = [a for a in attempts if not a.finished]
            return 1 if failed else 0
        if args.action == "slurm":
            path = write_slurm_script(study, args.output, per=args.per, python=args.python,
                                      max_concurrent=args.max_concurrent, sbatch=args.sbatch)
            print(f"wrote {path}; submit it with: sbatch {path}")
            return 0
        paths = write_report(study, args.out)
        print(f"wrote {paths['markdown']}")
        return 0
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
