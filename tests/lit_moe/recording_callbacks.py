"""Test callbacks plugged in from the command line."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class SaveDefaultVectorsAtStart(pl.Callback):
    """Saves every MoE layer's default vectors when training (re)starts.

    Args:
        path: Where to torch.save the {layer index: tensor} dict.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        torch.save({i: layer.default_vectors_ED.clone() for i, layer in pl_module.model.moe_layers().items()}, self.path)
