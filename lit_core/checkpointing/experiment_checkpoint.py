"""ModelCheckpoint whose folder is stable across restarts, so ``--ckpt_path last`` finds it."""

from __future__ import annotations

import os

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class ExperimentCheckpoint(ModelCheckpoint):
    """Like ``ModelCheckpoint``, but without ``dirpath`` it saves to ``<save_dir>/<name>/checkpoints``
    of the first logger (not the per-version folder), so a restarted run (which logs to a new
    version) still resumes with ``--ckpt_path last``; with ``save_last`` it also writes ``last.ckpt``
    when training ends between two ``every_n_train_steps`` saves. Takes every ModelCheckpoint argument."""

    @staticmethod
    def experiment_dir(trainer: pl.Trainer) -> str:
        if trainer.loggers and trainer.loggers[0].save_dir is not None:
            logger = trainer.loggers[0]
            return os.path.join(logger.save_dir, str(logger.name or ""), "checkpoints")
        return os.path.join(trainer.default_root_dir, "checkpoints")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = self.experiment_dir(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: pl.Trainer) -> set[str]:
        if self.dirpath is None:  # ``--ckpt_path last`` is resolved before setup()
            self.dirpath = self.experiment_dir(trainer)
        return super()._find_last_checkpoints(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and trainer.global_step > 0 and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
