"""Save a checkpoint when the job is told to stop (SIGTERM, or SIGUSR1 as SLURM's early warning).

Lightning sets ``trainer.received_sigterm`` on SIGTERM; this callback adds SIGUSR1 (unless SLURM
auto-requeue already handles it), agrees across ranks at the next step boundary, writes
``<checkpoint dir>/last.ckpt`` (so ``--ckpt_path last`` resumes from it) and ends the run.
"""

from __future__ import annotations

import os
import signal
from typing import Optional

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class PreemptionCheckpoint(pl.Callback):
    """Checkpoint-and-exit on preemption signals.

    Args:
        filename: File written in the ModelCheckpoint folder (or the root dir without one).
        extra_signals: Signals handled besides SIGTERM, e.g. ``[SIGUSR1]`` (``sbatch --signal=USR1@120``).
    """

    def __init__(self, filename: str = "last.ckpt", extra_signals: list[str] = ["SIGUSR1"]) -> None:  # noqa: B006
        self.filename = filename
        self.extra_signals = [getattr(signal, name) for name in extra_signals]
        self._received: Optional[int] = None
        self._previous_handlers: dict[int, object] = {}
        self.saved_path: Optional[str] = None

    def _handler(self, signum, frame) -> None:
        self._received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for signum in self.extra_signals:
            if signal.getsignal(signum) in (signal.SIG_DFL, None, signal.SIG_IGN):
                self._previous_handlers[signum] = signal.signal(signum, self._handler)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Lightning itself raises SIGTERMException at a step boundary after SIGTERM (on every rank)."""
        self._restore_handlers()
        if isinstance(exception, SIGTERMException) and self.saved_path is None:
            self._save(trainer)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def checkpoint_path(self, trainer: pl.Trainer) -> str:
        callback = trainer.checkpoint_callback
        directory = callback.dirpath if callback is not None and callback.dirpath else trainer.default_root_dir
        return os.path.join(directory, self.filename)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        local = bool(trainer.received_sigterm or self._received is not None)
        if not trainer.strategy.reduce_boolean_decision(local, all=False):
            return
        self._save(trainer)
        raise SIGTERMException(143)

    def _save(self, trainer: pl.Trainer) -> None:
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        rank_zero_info(f"Preempted at global step {trainer.global_step}: saved {path}; resume with --ckpt_path {path}")
