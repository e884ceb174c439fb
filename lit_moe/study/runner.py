"""Run a study's cells as ``cli.py fit`` subprocesses, N at a time, skipping finished runs and resuming killed ones.

Each run lives in ``<root>/<cell>/seed<S>/``: TensorBoard versions (``version_*``), checkpoints (wherever the
checkpoint callback puts them below that folder), ``run.log`` (the subprocess's output, appended per attempt),
``attempts.jsonl`` (one line per launch: checkpoint resumed from, exit code, wall time) and, written only after a
clean exit (code 0), ``finished.json``. A run without ``finished.json`` is launched again, with ``--ckpt_path`` set
to the newest ``last.ckpt`` below its own folder (found by globbing, not by Lightning's ``last`` lookup, so any
checkpoint folder layout works); without one it starts from scratch. ``<root>/<cell>/cell.json`` records the
cell's settings; running an edited study into the same root stops with an error instead of mixing results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lit_moe.errors import UserInputError
from lit_moe.study.spec import Cell, Run, Study

FINISHED = "finished.json"
ATTEMPTS = "attempts.jsonl"
RUN_LOG = "run.log"
CELL_FILE = "cell.json"
PREEMPTED_EXIT = 143  # cli.py after PreemptionCheckpoint saved last.ckpt
USER_ERROR_EXIT = 2  # cli.py: bad config; every other cell would fail the same way


@dataclass(frozen=True)
class Attempt:
    """One launch of one run.

    Args:
        run: ``<cell>/seed<S>``.
        resumed_from: The checkpoint passed as ``--ckpt_path`` (None: from scratch).
        returncode: The subprocess's exit code (negative: killed by that signal).
        wall_s: Its wall-clock time.
        cpu_s: Its user + system CPU time (with its own waited-for children), from ``wait4``.
    """

    run: str
    resumed_from: Optional[str]
    returncode: int
    wall_s: float
    cpu_s: float

    @property
    def finished(self) -> bool:
        return self.returncode == 0


def cli_value(value: object) -> str:
    """A setting as jsonargparse reads it from the command line (strings verbatim, the rest as JSON/YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def command(study: Study, run: Run, ckpt_path: Optional[Path] = None, python: str = sys.executable,
            extra: Sequence[str] = ()) -> list[str]:
    """The ``cli.py fit`` command of one run: base and overlay configs, the cell's overrides, the run's seed,
    steps, log and checkpoint folder (``--ckpt_path`` when resuming), then ``extra`` flags."""
    run_dir = study.run_dir(run)
    args = [python, str(study.repo / "cli.py"), "fit"]
    for config in (*study.base, *run.cell.configs):
        args += ["--config", config]
    for key, value in run.cell.overrides.items():
        args += [f"--{key}", cli_value(value)]
    args += ["--seed_everything", str(run.seed), "--trainer.max_steps", str(study.steps),
             "--trainer.default_root_dir", str(run_dir),
             "--trainer.logger.init_args.save_dir", str(run_dir.parent),
             "--trainer.logger.init_args.name", run_dir.name]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    return args + list(extra)


def newest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The most recently written ``last.ckpt`` anywhere below ``run_dir`` (None if there is none)."""
    candidates = [p for p in run_dir.glob("**/last.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, str(p))) if candidates else None


def is_finished(study: Study, run: Run) -> bool:
    return (study.run_dir(run) / FINISHED).is_file()


def read_attempts(run_dir: Path) -> list[dict]:
    """The ``attempts.jsonl`` records of one run, oldest first."""
    path = run_dir / ATTEMPTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell_fingerprint(study: Study, cell: Cell) -> dict:
    """What makes a cell's results comparable: its configs (repo-relative), overrides and steps."""
    def relative(path: str) -> str:
        try:
            return str(Path(path).relative_to(study.repo))
        except ValueError:
            return path
    return {"name": cell.name, "base": [relative(b) for b in study.base],
            "configs": [relative(c) for c in cell.configs], "overrides": cell.overrides, "steps": study.steps}


def check_root(study: Study, runs: Sequence[Run]) -> None:
    """Stop before any launch if a cell's folder holds results of different settings (an edited study)."""
    for cell in {run.cell.name: run.cell for run in runs}.values():
        stored = study.root / cell.name / CELL_FILE
        if stored.is_file():
            previous = json.loads(stored.read_text())
            current = json.loads(json.dumps(cell_fingerprint(study, cell)))
            if previous != current:
                raise UserInputError(f"{stored} was written for other settings ({previous}) than the study now "
                                     f"gives ({current}); use another --root or delete {stored.parent}")


def select_runs(study: Study, only: Sequence[str] = ()) -> list[Run]:
    """The study's runs, or those whose cell name or ``<cell>/seed<S>`` is in ``only``."""
    runs = study.runs()
    if not only:
        return runs
    known = {r.cell.name for r in runs} | {r.key for r in runs}
    unknown = sorted(set(only) - known)
    if unknown:
        raise UserInputError(f"--only {unknown}: no such cell or run; cells: {sorted({r.cell.name for r in runs})}")
    return [r for r in runs if r.cell.name in only or r.key in only]


@dataclass
class _Live:
    run: Run
    process: subprocess.Popen
    log: object
    resumed_from: Optional[Path]
    started: float
    signalled: str = ""  # "", "stop" (SIGTERM / SIGUSR1 sent) or "killed"
    cpu_s: float = 0.0

    def reap(self) -> bool:
        """True once the process has exited (its exit code and CPU time recorded)."""
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return True


class StudyRunner:
    """Launches a study's unfinished runs, at most ``parallel`` at a time.

    Args:
        study: The parsed study.
        parallel: Runs at once.
        threads: ``OMP_NUM_THREADS`` of each run (default: CPU count // parallel when parallel > 1, else unset).
        python: Interpreter for ``cli.py``.
        extra: Flags appended to every run's command.
        echo: Print one line per launch and exit.
    """

    def __init__(self, study: Study, parallel: int = 1, threads: Optional[int] = None, python: str = sys.executable,
                 extra: Sequence[str] = (), echo: bool = True) -> None:
        if parallel < 1:
            raise UserInputError(f"--parallel must be at least 1, got {parallel}")
        self.study = study
        self.parallel = parallel
        if threads is None and parallel > 1:
            threads = max(1, (os.cpu_count() or 1) // parallel)
        self.threads = threads
        self.python = python
        self.extra = list(extra)
        self.echo = echo
        self._live: list[_Live] = []
        self._stop_signal: Optional[int] = None
        self._signals_received = 0

    def pending(self, runs: Sequence[Run]) -> list[Run]:
        return [run for run in runs if not is_finished(self.study, run)]

    def run(self, only: Sequence[str] = ()) -> list[Attempt]:
        """Launch every unfinished selected run; returns this call's attempts (finished runs are not launched).
        A bad-config exit (code 2) stops new launches. SIGTERM / SIGINT / SIGUSR1 to the runner stop new
        launches and are forwarded to the runs (SIGTERM, or SIGUSR1), which save ``last.ckpt`` and exit; a
        second signal kills them. Then it raises ``SystemExit(143)``; a later call resumes them."""
        runs = select_runs(self.study, only)
        check_root(self.study, runs)
        queue = self.pending(runs)
        self._say(f"study {self.study.name}: {len(runs)} runs, {len(runs) - len(queue)} finished, "
                  f"{len(queue)} to launch, {self.parallel} at a time -> {self.study.root}")
        attempts: list[Attempt] = []
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
        for signum in previous:
            signal.signal(signum, self._on_signal)
        try:
            while queue or self._live:
                while queue and len(self._live) < self.parallel and self._stop_signal is None:
                    self._launch(queue.pop(0))
                if self._stop_signal is not None:
                    self._forward_stop()
                time.sleep(0.2)
                for live in [lv for lv in self._live if lv.reap()]:
                    attempt = self._finish(live)
                    attempts.append(attempt)
                    if attempt.returncode == USER_ERROR_EXIT and queue:
                        self._say(f"stopping: {live.run.key} rejected its config; fix the study file and rerun")
                        queue.clear()
                if self._stop_signal is not None:
                    queue.clear()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for live in self._live:  # only after an unexpected error: leave no orphaned training behind
                if live.process.poll() is None:
                    live.process.terminate()
                live.log.close()
        if self._stop_signal is not None:
            raise SystemExit(PREEMPTED_EXIT)
        return attempts

    def _on_signal(self, signum: int, frame: object) -> None:
        # Acted on by the loop (so a run launched meanwhile is told as well); a second signal means "now".
        self._signals_received += 1
        self._stop_signal = signum

    def _forward_stop(self) -> None:
        forwarded = signal.SIGUSR1 if self._stop_signal == signal.SIGUSR1 else signal.SIGTERM
        for live in self._live:
            if self._signals_received >= 2 and live.signalled != "killed":
                live.process.kill()  # loses the steps since the run's last checkpoint
                live.signalled = "killed"
            elif not live.signalled:
                live.process.send_signal(forwarded)
                live.signalled = "stop"

    def _launch(self, run: Run) -> None:
        run_dir = self.study.run_dir(run)
        run_dir.mkdir(parents=True, exist_ok=True)
        cell_file = run_dir.parent / CELL_FILE
        if not cell_file.is_file():
            cell_file.write_text(json.dumps(cell_fingerprint(self.study, run.cell), indent=1) + "\n")
        checkpoint = newest_checkpoint(run_dir)
        args = command(self.study, run, checkpoint, self.python, self.extra)
        env = dict(os.environ)
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        log = open(run_dir / RUN_LOG, "a")  # noqa: SIM115 (held by the subprocess; closed in _finish)
        log.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n")
        log.flush()
        # Own session: a Ctrl-C in the terminal reaches only the runner, which forwards SIGTERM so each run
        # saves last.ckpt (PreemptionCheckpoint) instead of dying between two periodic checkpoints.
        process = subprocess.Popen(args, cwd=self.study.repo, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        self._live.append(_Live(run, process, log, checkpoint, time.monotonic()))
        how = f"resume from {checkpoint}" if checkpoint else "from scratch"
        self._say(f"start  {run.key} ({how}), log {run_dir / RUN_LOG}")

    def _finish(self, live: _Live) -> Attempt:
        self._live.remove(live)
        live.log.close()
        run_dir = self.study.run_dir(live.run)
        attempt = Attempt(live.run.key, None if live.resumed_from is None else str(live.resumed_from),
                          live.process.returncode, round(time.monotonic() - live.started, 2), round(live.cpu_s, 2))
        with open(run_dir / ATTEMPTS, "a") as file:
            file.write(json.dumps({**attempt.__dict__, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        if attempt.finished:
            history = read_attempts(run_dir)
            marker = {"run": live.run.key, "cell": live.run.cell.name, "seed": live.run.seed,
                      "steps": self.study.steps, "attempts": len(history),
                      "wall_s": round(sum(a["wall_s"] for a in history), 2),
                      "cpu_s": round(sum(a.get("cpu_s", 0.0) for a in history), 2),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": os.uname().nodename,
                      "threads": self.threads}
            (run_dir / FINISHED).write_text(json.dumps(marker, indent=1) + "\n")
            self._say(f"done   {live.run.key} in {attempt.wall_s:.0f} s ({attempt.cpu_s:.0f} s CPU)")
        else:
            what = "preempted (resumes on rerun)" if attempt.returncode == PREEMPTED_EXIT else "FAILED"
            self._say(f"{what} {live.run.key}: exit {attempt.returncode}; {_last_error(run_dir / RUN_LOG)}")
        return attempt

    def _say(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)


def _last_error(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line]
    return (errors or lines or ["(empty log)"])[-1][:300] + f" (see {log})"
