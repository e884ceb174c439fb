"""ModelCheckpoint that writes into its run's own version folder and finds the experiment's latest
run for ``--ckpt_path last``."""

from __future__ import annotations

import os

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_core.checkpointing.resume import experiment_root, last_checkpoints


class ExperimentCheckpoint(ModelCheckpoint):
    """Like ``ModelCheckpoint``: without ``dirpath`` it saves to ``<save_dir>/<name>/version_N/checkpoints``
    of the first logger, so two runs of one experiment never write the same file. ``--ckpt_path last``
    resumes the newest ``last.ckpt`` of any version (the CLI then logs the resumed run into that
    version, see ``lit_core.checkpointing.resume``). With ``save_last`` it also writes ``last.ckpt``
    when training ends between two ``every_n_train_steps`` saves. Takes every ModelCheckpoint argument."""

    def _find_last_checkpoints(self, trainer: pl.Trainer) -> set[str]:
        """``trainer.fit(ckpt_path="last")`` without the CLI: the last checkpoint of every version."""
        root = experiment_root(trainer.loggers[0]) if trainer.loggers else None
        if self.dirpath is not None or root is None:
            return super()._find_last_checkpoints(trainer)
        return {os.path.normpath(p) for p in last_checkpoints(root)}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and trainer.global_step > 0 and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
