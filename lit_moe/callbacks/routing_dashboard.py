"""Routing dashboards: per-layer load-balance scalars every logging step, a layers x experts load
heatmap image every N steps, and a TensorBoard custom-scalars layout that overlays all layers.

Reads the step's routing statistics the LightningModule summed over micro-batches and ranks
(``LanguageModelingModule.step_router_stats``), so every rank shows the same numbers.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from lit_moe.callbacks.writing import log_at_step, tensorboard_writer
from lit_moe.metrics.routing import routing_load_metrics

# Charts of the custom-scalars layout: one chart per metric, every layer overlaid.
OVERLAID_METRICS = ("max_load", "cv", "dead_experts", "load_entropy", "router_entropy", "grad_fidelity_cos",
                    "grad_norm_ratio")


def load_heatmap(load_LE: np.ndarray, layer_names: list[str], title: str) -> np.ndarray:
    """RGB image [H, W, 3] (uint8) of N * f_i per layer and expert (1 = perfect balance), with a colour bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (optional, heavy import)
    from matplotlib.figure import Figure  # noqa: PLC0415

    num_layers, num_experts = load_LE.shape
    figure = Figure(figsize=(max(4.0, 0.35 * num_experts + 2.0), max(2.2, 0.45 * num_layers + 1.4)), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(load_LE, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(2.0, float(load_LE.max())),
                        interpolation="nearest")
    axes.set_xlabel("expert")
    axes.set_ylabel("MoE layer")
    axes.set_xticks(range(num_experts))
    axes.set_yticks(range(num_layers), labels=layer_names)
    axes.tick_params(axis="x", labelsize=7 if num_experts > 16 else 9)
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="load  N·f (1 = balanced)")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def custom_scalars_layout(layer_indices: list[int]) -> dict:
    """TensorBoard custom-scalars layout: for each metric one multiline chart over every layer."""
    charts = {f"{name} (all layers)": ["Multiline", [rf"moe/layer\d+/{name}$"]] for name in OVERLAID_METRICS}
    return {"MoE routing": charts}


class RoutingDashboard(pl.Callback):
    """Per MoE layer: ``moe/layer{i}/{max_load,cv,load_entropy,dead_experts,concentration,router_entropy}``,
    ``aux_loss`` / ``z_loss`` when their coefficient is non-zero, ``default_norm`` for Default MoE; the
    image ``moe/expert_load_heatmap``; the custom-scalars layout.

    Args:
        heatmap_every_n_steps: Write the layers x experts load heatmap on optimizer steps 0, N, 2N, ...
            (0 disables it). Scalars follow the trainer's ``log_every_n_steps``.
    """

    def __init__(self, heatmap_every_n_steps: int = 50) -> None:
        self.heatmap_every_n_steps = heatmap_every_n_steps
        self._step_written = -1

    def on_fit_start(self, trainer, pl_module) -> None:
        writer = tensorboard_writer(trainer)
        if writer is not None and pl_module.model is not None:
            writer.add_custom_scalars(custom_scalars_layout(list(pl_module.model.moe_layers())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stats_by_layer = getattr(pl_module, "step_router_stats", None)
        step = trainer.global_step - 1  # the optimizer step that just ran
        if not stats_by_layer or step == self._step_written:
            return
        self._step_written = step
        if step % max(1, trainer.log_every_n_steps) == 0:
            log_at_step(trainer, self._scalars(pl_module, stats_by_layer), step)
        if self.heatmap_every_n_steps and step % self.heatmap_every_n_steps == 0:
            self._write_heatmap(trainer, stats_by_layer, step)

    def _scalars(self, pl_module, stats_by_layer) -> dict[str, float]:
        config, layers = pl_module.config, pl_module.model.moe_layers()
        metrics = {}
        for index, stats in stats_by_layer.items():
            prefix = f"moe/layer{index}"
            for name, value in routing_load_metrics(stats.load_counts_E).items():
                metrics[f"{prefix}/{name}"] = value
            metrics[f"{prefix}/router_entropy"] = float(stats.router_entropy_sum) / max(stats.num_tokens, 1)
            if config.aux_loss_coef > 0:
                metrics[f"{prefix}/aux_loss"] = float(stats.aux_loss)
            if config.z_loss_coef > 0:
                metrics[f"{prefix}/z_loss"] = float(stats.z_loss)
            layer = layers[index]
            if layer.rule.uses_default_vectors:
                metrics[f"{prefix}/default_norm"] = float(layer.default_vectors_ED.norm(dim=-1).mean())
        return metrics

    def _write_heatmap(self, trainer, stats_by_layer, step: int) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        indices = sorted(stats_by_layer)
        counts_LE = torch.stack([stats_by_layer[i].load_counts_E.double().cpu() for i in indices])
        load_LE = (counts_LE.shape[1] * counts_LE / counts_LE.sum(-1, keepdim=True).clamp_min(1)).numpy()
        image = load_heatmap(load_LE, [str(i) for i in indices], f"expert load at step {step}")
        writer.add_image("moe/expert_load_heatmap", image, global_step=step, dataformats="HWC")
