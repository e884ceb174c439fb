"""Run cli.py in child processes (never DDP inside the pytest process), with timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args

TRAINER_CONFIGS = REPO_ROOT / "configs/trainer"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(REPO_ROOT),
               PYTHONUNBUFFERED="1")
    return env


def fit_args(root: Path, *extra: str, max_steps: int = 4, trainer_config: str | None = None,
             **overrides: str) -> list[str]:
    """``cli.py fit`` arguments: the tiny config shrunk, deterministic data order, no aux loss (so a
    2-rank run over 2x4 sequences equals a 1-rank run over 8)."""
    overrides.setdefault("model.init_args.config.aux_loss_coef", "0.0")
    overrides.setdefault("data.init_args.shuffle", "false")
    overrides.setdefault("trainer.accelerator", "cpu")
    args = ["fit", "--config", TINY_CONFIG]
    if trainer_config:
        args += ["--config", str(TRAINER_CONFIGS / trainer_config)]
    return args + small_run_args(root, max_steps=max_steps, **overrides) + list(extra)


def run_cli(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO_ROOT, env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_cli(args: list[str], launcher: list[str] | None = None) -> subprocess.Popen:
    command = (launcher or [sys.executable]) + ["cli.py", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def describe(result) -> str:
    output = result.stdout + (result.stderr or "") if hasattr(result, "stderr") else result
    return output[-4000:]
