"""Writing dashboard values at the step they were measured (not at Lightning's next logging step)."""

from __future__ import annotations

from typing import Optional

import lightning.pytorch as pl


def measured_step(trainer: pl.Trainer) -> int:
    """The index of the optimizer step being taken, as Lightning numbers its ``train/*`` scalars.

    Valid inside ``on_before_optimizer_step`` (before the step counter advances)."""
    return trainer.global_step


def log_at_step(trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
    """Write ``metrics`` once, at ``step``, to every logger (rank zero only: loggers are rank-zero)."""
    if not metrics:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def tensorboard_writer(trainer: pl.Trainer) -> Optional[object]:
    """The SummaryWriter of the first TensorBoard logger on rank zero, else None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image") and hasattr(experiment, "add_custom_scalars"):
            return experiment
    return None
