"""Router-gradient fidelity (spec §3) as a callback: forward hooks capture each MoE layer's input and
the real upstream gradient dL/dy of one training step every N steps; the metric is computed before
the optimizer step and written once, at that step."""

from __future__ import annotations

from typing import Optional

import lightning.pytorch as pl
import torch

from lit_moe.callbacks.writing import log_at_step, measured_step
from lit_moe.metrics.gradient_fidelity import gradient_fidelity
from lit_moe.parallelize import unsharded


class _Capture:
    """One layer's router input and upstream gradient from the first forward of a step."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.x_TD: Optional[torch.Tensor] = None
        self.grad_TD: Optional[torch.Tensor] = None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        x_BSD, (y_BSD, _) = inputs[0], output
        self.x_TD = x_BSD.detach().reshape(-1, x_BSD.shape[-1])
        self.handle.remove()  # first forward only: not the activation-checkpointing recompute
        if y_BSD.requires_grad:
            y_BSD.register_hook(self._store_grad)

    def _store_grad(self, grad_BSD: torch.Tensor) -> None:
        self.grad_TD = grad_BSD.detach().reshape(-1, grad_BSD.shape[-1])


class RouterFidelity(pl.Callback):
    """Logs ``moe/layer{i}/grad_fidelity_cos`` and ``grad_norm_ratio``: cosine and norm ratio of the
    router-weight gradient each layer trains with against the dense reference, for the same tokens and
    the real upstream gradient. Costs one dense expert pass per MoE layer on a measured step.

    Args:
        every_n_steps: Measure on optimizer steps 0, N, 2N, ...; 0 disables the callback.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 0:
            raise ValueError(f"RouterFidelity.every_n_steps={every_n_steps} must be >= 0")
        self.every_n_steps = every_n_steps
        self._captures: dict[int, _Capture] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.every_n_steps == 0 or self._captures or trainer.global_step % self.every_n_steps:
            return
        self._captures = {i: _Capture(layer) for i, layer in pl_module.model.moe_layers().items()}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        captures, self._captures = self._captures, {}
        metrics = {}
        for index, capture in captures.items():
            capture.handle.remove()
            if capture.x_TD is None or capture.grad_TD is None or not torch.isfinite(capture.grad_TD).all():
                continue
            layer = pl_module.model.moe_layers()[index]
            with unsharded(pl_module.model.blocks[index]):
                result = gradient_fidelity(layer, capture.x_TD, capture.grad_TD)
            metrics[f"moe/layer{index}/grad_fidelity_cos"] = result.cosine
            metrics[f"moe/layer{index}/grad_norm_ratio"] = result.norm_ratio
        log_at_step(trainer, metrics, measured_step(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        for capture in self._captures.values():
            capture.handle.remove()
        self._captures = {}
