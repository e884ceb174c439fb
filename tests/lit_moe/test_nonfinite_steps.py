"""Non-finite-step skipping keeps Lightning's closure contract: under a GradScaler-backed 16-mixed
precision plugin the model trains, and a NaN step is still skipped (no update, counted)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lit_moe.model import MoETransformerConfig
from tests.lit_moe.fault_injection import NaNInjectingModule
from tests.lit_moe.user_datamodule import CountingDataModule


def _fit(nan_batches, steps):
    torch.manual_seed(0)
    module = NaNInjectingModule(nan_batches=nan_batches, config=MoETransformerConfig(
        vocab_size=50, d_model=32, n_layers=1, n_heads=2, num_experts=4, top_k=2, d_expert=32, max_seq_len=32,
        router="default"), learning_rate=1e-2, warmup_steps=0)
    plugin = MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8))
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, plugins=[plugin], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    snapshots = {}

    class Snapshot(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snapshots[batch_idx] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    trainer.callbacks.append(Snapshot())
    trainer.fit(module, CountingDataModule(vocab_size=50, seq_len=32, batch_size=8))
    snapshots[steps] = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    return module, snapshots, plugin


def _changed(before, after):
    return [k for k in before if not torch.equal(before[k], after[k])]


def test_16_mixed_with_grad_scaler_trains():
    module, snapshots, plugin = _fit(nan_batches=[], steps=3)
    assert plugin.scaler is not None
    assert "blocks.0.attn.qkv.weight" in _changed(snapshots[0], snapshots[3])
    assert module.skipped_steps == 0


def test_nan_step_is_skipped_under_16_mixed():
    module, snapshots, _ = _fit(nan_batches=[1], steps=3)
    assert module.skipped_steps == 1
    weights = [k for k in snapshots[1] if "weight" in k]
    assert _changed({k: snapshots[1][k] for k in weights}, {k: snapshots[2][k] for k in weights}) == []
    defaults = "blocks.0.mlp.default_vectors_ED"
    assert torch.equal(snapshots[1][defaults], snapshots[2][defaults])  # no EMA from the skipped step
    assert _changed(snapshots[2], snapshots[3])  # training resumes after the skip
