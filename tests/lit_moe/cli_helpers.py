"""Run cli.py in-process on small overrides of the shipped configs and read the event files back."""

from __future__ import annotations

from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO_ROOT

TINY_CONFIG = str(REPO_ROOT / "configs/moe/tiny.yaml")


# Dashboards every 2 steps in the small runs (the shipped block measures every 25-50 steps).
SMALL_RUN_CALLBACKS = {"trainer": {"callbacks": [
    {"class_path": "lit_moe.callbacks.RouterFidelity", "init_args": {"every_n_steps": 2}},
    {"class_path": "lit_moe.callbacks.RoutingDashboard", "init_args": {"heatmap_every_n_steps": 2}},
    {"class_path": "lit_moe.callbacks.Throughput", "init_args": {"peak_flops_per_s": 1.0e12}},
]}}


def small_run_args(root: Path, max_steps: int = 6, **extra: str) -> list[str]:
    """Overrides that shrink configs/moe/tiny.yaml to a seconds-long run writing under ``root`` (an
    overlay config, merged into the composed callbacks by class path, makes the dashboards frequent)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    overlay = Path(root) / "small_run_overlay.yaml"
    overlay.write_text(yaml.safe_dump(SMALL_RUN_CALLBACKS))
    overrides = {
        "trainer.max_steps": str(max_steps),
        "trainer.val_check_interval": "3",
        "trainer.limit_val_batches": "2",
        "trainer.log_every_n_steps": "1",
        "trainer.default_root_dir": str(root),
        "trainer.logger.init_args.save_dir": str(root),
        "trainer.enable_progress_bar": "false",
        "model.init_args.config.n_layers": "2",
        "model.init_args.config.d_model": "64",
        "model.init_args.config.d_expert": "64",
        "model.init_args.config.max_seq_len": "64",
        "model.init_args.warmup_steps": "2",
        "data.init_args.seq_len": "64",
        "data.init_args.batch_size": "4",
    }
    overrides.update(extra)
    args = ["--config", str(overlay)]
    for key, value in overrides.items():
        args += [f"--{key}", value]
    return args


def read_events(log_dir: str | Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return accumulator
