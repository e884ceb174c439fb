"""A test callback: every rank saves its LoRA weights (and the step) when fit ends."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch


class SaveRankLoRA(pl.Callback):
    """Writes ``<folder>/rank<r>.pt`` with the module's trainable (LoRA) tensors on every rank.

    Args:
        folder: Where the per-rank files go.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters() if p.requires_grad}
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        torch.save({"state": state, "step": trainer.global_step, "world_size": trainer.world_size},
                   Path(self.folder) / f"rank{trainer.global_rank}.pt")
