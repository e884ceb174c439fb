"""Test helpers for the study runner: a callback that preempts its own training run at a given step."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl


class SigtermAtStep(pl.Callback):
    """Sends SIGTERM to this process when optimizer step ``step`` begins, as a scheduler would mid-run:
    the run's PreemptionCheckpoint then saves ``last.ckpt`` after that step and exits with code 143.

    Args:
        step: The global step (optimizer steps done) at whose start the signal is sent.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
