"""Data-parallel scaling of the tiny MoE config on CPU processes (gloo): tokens/s and efficiency.

    .venv/bin/python benchmarks/scaling.py [--steps 40] [--backend fused]

Runs ``cli.py fit`` on configs/moe/tiny.yaml as separate processes (the same entry point users run)
and reads ``train/tokens_per_s`` (global tokens per wall-clock second, every rank's batch counted)
back from the TensorBoard events; the median over the steps after a warm-up is reported.

Configurations, all with the same per-process batch (8 x 256 tokens):
- 1 process x 1 thread: the per-core baseline;
- 1 process x 2 threads: what one process gets from the whole machine;
- 2 processes x 1 thread, DDP (configs/trainer/ddp.yaml) and FSDP2 (configs/trainer/fsdp2.yaml).
Scaling efficiency = tokens/s(2 processes) / (2 x tokens/s(1 process x 1 thread)).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run(name: str, threads: int, steps: int, backend: str, extra: list[str]) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(tempfile.mkdtemp(prefix=f"scaling-{name}-"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, "cli.py", "fit", "--config", "configs/moe/tiny.yaml", *extra,
               "--trainer.accelerator", "cpu", "--trainer.max_steps", str(steps), "--trainer.log_every_n_steps", "1",
               "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
               "--trainer.logger.init_args.save_dir", str(root), "--trainer.callbacks", "[]",
               "--model.init_args.config.backend", backend]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    events = EventAccumulator(str(next((root / "moe_tiny").glob("version_*"))), size_guidance={"scalars": 0})
    events.Reload()
    values = [e.value for e in events.Scalars("train/tokens_per_s")]
    warm = values[len(values) // 4:]
    return statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--backend", default="fused", choices=["loop", "grouped_mm", "fused"])
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"python={platform.python_version()} date={datetime.date.today()}")
    print(f"tiny config, backend={args.backend}, {args.steps} steps, median tokens/s after warm-up\n")
    trainer = REPO_ROOT / "configs/trainer"
    single_1 = run("1x1", 1, args.steps, args.backend, [])
    single_2 = run("1x2", 2, args.steps, args.backend, [])
    ddp = run("ddp", 1, args.steps, args.backend, ["--config", str(trainer / "ddp.yaml"), "--trainer.devices", "2"])
    fsdp = run("fsdp2", 1, args.steps, args.backend,
               ["--config", str(trainer / "fsdp2.yaml"), "--trainer.devices", "2"])
    rows = [("1 process x 1 thread", single_1), ("1 process x 2 threads", single_2),
            ("2 processes x 1 thread, DDP", ddp), ("2 processes x 1 thread, FSDP2", fsdp)]
    print(f"{'configuration':34s} {'tokens/s':>10s} {'vs 1x1':>8s} {'efficiency':>11s}")
    for name, value in rows:
        efficiency = f"{value / (2 * single_1):.0%}" if name.startswith("2 processes") else ""
        print(f"{name:34s} {value:10.0f} {value / single_1:7.2f}x {efficiency:>11s}")


if __name__ == "__main__":
    main()
