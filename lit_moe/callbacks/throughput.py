"""Throughput: tokens/s, model TFLOP/s and MFU per optimizer step, as torchtitan logs them.

Model FLOPs per token (forward + backward) = 6 x active non-embedding parameters + 12 x layers x
d_model x seq_len (attention scores and values; PaLM appendix B, torchtitan's
``get_num_flop_per_token``). MFU divides the achieved FLOP/s per device by the device's peak.
"""

from __future__ import annotations

import time
from typing import Optional

import lightning.pytorch as pl
import torch

from lit_moe.callbacks.writing import log_at_step

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets, matched against
# torch.cuda.get_device_name(); pass ``peak_flops_per_s`` for anything else (CPUs included).
PEAK_BF16_FLOPS = {
    "B200": 2.25e15, "H200": 989e12, "H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 NVL": 835e12,
    "H100 PCIe": 756e12, "H100": 756e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12,
    "RTX 4090": 165e12,
}


def model_flops_per_token(config, seq_len: int) -> float:
    """6 N_active (without embeddings) + 12 L D S."""
    counts = config.num_parameters()
    embeddings = config.vocab_size * config.d_model * (1 if config.tie_embeddings else 2)
    return 6.0 * (counts["active"] - embeddings) + 12.0 * config.n_layers * config.d_model * seq_len


def device_peak_flops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):  # most specific name first
        if key in name:
            return PEAK_BF16_FLOPS[key]
    return None


class Throughput(pl.Callback):
    """Logs ``train/tokens_per_s`` (all ranks), ``train/tflops`` (per device) and ``train/mfu``.

    Args:
        peak_flops_per_s: Peak FLOP/s of one device for MFU; ``None`` looks the GPU up in
            ``PEAK_BF16_FLOPS`` (no MFU on CPUs or unknown devices unless given).
    """

    def __init__(self, peak_flops_per_s: Optional[float] = None) -> None:
        self.peak_flops_per_s = peak_flops_per_s
        self._last_end: Optional[float] = None
        self._last_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step - 1
        if step == self._last_step:  # a micro-batch inside gradient accumulation
            return
        self._last_step = step
        now = time.perf_counter()
        last, self._last_end = self._last_end, now
        if last is None or step % max(1, trainer.log_every_n_steps):
            return
        inputs = batch[0]
        tokens = inputs.numel() * trainer.accumulate_grad_batches * trainer.world_size
        seconds = max(now - last, 1e-9)
        metrics = {"train/tokens_per_s": tokens / seconds}
        config = getattr(pl_module, "config", None)
        if config is not None and hasattr(config, "num_parameters"):
            flops_per_device = model_flops_per_token(config, inputs.shape[-1]) * tokens / seconds / trainer.world_size
            metrics["train/tflops"] = flops_per_device / 1e12
            peak = self.peak_flops_per_s or device_peak_flops(pl_module.device)
            if peak:
                metrics["train/mfu"] = flops_per_device / peak
        log_at_step(trainer, metrics, step)
