"""A progress bar that counts optimizer steps when a run is bounded by ``max_steps``.

Lightning's default (rich) bar shows ``Epoch 0/-2`` for step-bounded runs (``max_epochs=-1``) and
restarts at every epoch of a small dataset; this one shows ``step 120/400`` across epochs.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """TQDM bar over optimizer steps (``trainer.max_steps``); falls back to epochs without a step bound.

    Args:
        refresh_rate: Update the bar every N batches.
        leave: Keep the finished bar on screen.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = True) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)

    def _step_bounded(self, trainer) -> bool:
        return trainer.max_steps is not None and trainer.max_steps > 0

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        if not self._step_bounded(trainer):
            return super().on_train_epoch_start(trainer, *args)
        if self.train_progress_bar is None or self.train_progress_bar.disable is None:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.total = trainer.max_steps
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.set_description(f"step (epoch {trainer.current_epoch})")
        self.train_progress_bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._step_bounded(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and (trainer.global_step % self.refresh_rate == 0
                                                    or trainer.global_step >= trainer.max_steps):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._step_bounded(trainer):
            return super().on_train_epoch_end(trainer, pl_module)
        if self.train_progress_bar is not None and not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
