"""A markdown run summary in TensorBoard's Text tab, and ``hp_metric`` = the best validation loss."""

from __future__ import annotations

import math
import os
from typing import Optional

import lightning.pytorch as pl
import yaml

from lit_moe.callbacks.writing import log_at_step, tensorboard_writer


def tokens_per_step(trainer: pl.Trainer) -> Optional[int]:
    """Tokens per optimizer step from the datamodule (batch_size x seq_len) x accumulation x world size."""
    datamodule = getattr(trainer, "datamodule", None)
    batch, seq = getattr(datamodule, "batch_size", None), getattr(datamodule, "seq_len", None)
    if not isinstance(batch, int) or not isinstance(seq, int):
        return None
    return batch * seq * trainer.accumulate_grad_batches * trainer.world_size


def summary_markdown(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    config = pl_module.config
    counts = config.num_parameters()
    tokens = tokens_per_step(trainer)
    rows = [("router", f"`{config.router}` (scores `{config.score_function}`, normalize_topk "
                       f"`{config.normalize_topk}`, backend `{config.backend}`)"),
            ("experts", f"{config.num_experts} routed, top-{config.top_k}, width {config.d_expert}, "
                        f"{config.num_shared_experts} shared"),
            ("parameters", f"{counts['total']:,} total, {counts['active']:,} active per token"),
            ("tokens / optimizer step", f"{tokens:,}" if tokens else "unknown"),
            ("devices", f"{trainer.world_size} ({trainer.strategy.__class__.__name__}, precision "
                        f"{trainer.precision})"),
            ("max_steps", str(trainer.max_steps))]
    lines = ["| | |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    resolved = _resolved_config(trainer) or yaml.safe_dump(dict(pl_module.hparams), sort_keys=False)
    # TensorBoard renders markdown; indenting by four spaces keeps the YAML verbatim.
    return "\n".join(lines) + "\n\n**Resolved config**\n\n" + "\n".join("    " + line for line in resolved.splitlines())


def _resolved_config(trainer: pl.Trainer) -> Optional[str]:
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger is not None else None
    path = os.path.join(log_dir, "config.yaml") if log_dir else None
    if path and os.path.isfile(path):
        with open(path) as handle:
            return handle.read()
    return None


class RunSummary(pl.Callback):
    """Writes ``run/summary`` (markdown: router, parameter counts, tokens/step, resolved config) at the
    start of training, and ``hp_metric`` = the best ``val/loss`` so far after every validation (the
    HParams tab then ranks runs by it).

    Args:
        monitor: The validation metric whose best (lowest) value becomes ``hp_metric``.
    """

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.best: float = math.inf
        self._registered = False

    def on_train_start(self, trainer, pl_module) -> None:
        writer = tensorboard_writer(trainer)
        if writer is not None and hasattr(pl_module, "config"):
            writer.add_text("run/summary", summary_markdown(trainer, pl_module), global_step=trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.best = min(self.best, float(trainer.callback_metrics[self.monitor]))
        if not self._registered and trainer.logger is not None:
            trainer.logger.log_hyperparams(dict(pl_module.hparams), {"hp_metric": self.best})
            self._registered = True
        log_at_step(trainer, {"hp_metric": self.best}, trainer.global_step)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best", math.inf)
