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
        vectors = {i: layer.default_vectors_ED.clone() for i, layer in pl_module.model.moe_layers().items()}
        torch.save(vectors, self.path)


class SaveRouterStateAtEnd(pl.Callback):
    """Saves each rank's default vectors and balancing biases when training ends.

    Args:
        prefix: Files are ``{prefix}.rank{global_rank}.pt``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_train_end(self, trainer, pl_module) -> None:
        state = {}
        for i, layer in pl_module.model.moe_layers().items():
            state[f"{i}.default"] = layer.default_vectors_ED.detach().cpu().clone()
            state[f"{i}.bias"] = layer.router.expert_bias_E.detach().cpu().clone()
        torch.save(state, f"{self.prefix}.rank{trainer.global_rank}.pt")


class KillAtStep(pl.Callback):
    """SIGKILLs its own process once ``global_step`` reaches ``step`` (a crash with no cleanup).

    Args:
        step: Global step after which to die.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


class TouchAtStep(pl.Callback):
    """Creates ``path`` once ``global_step`` reaches ``step`` and slows steps down afterwards, so a
    test can send a signal while training is still running.

    Args:
        path: Marker file.
        step: Global step.
    """

    def __init__(self, path: str, step: int) -> None:
        self.path, self.step = path, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            import pathlib
            import time

            pathlib.Path(self.path).touch()
            time.sleep(0.2)
