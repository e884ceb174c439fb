"""The default progress bar counts optimizer steps for step-bounded runs (no ``Epoch 0/-2``)."""

from __future__ import annotations

import io

import lightning.pytorch as pl
import torch

from lit_core.progress import StepProgressBar
from tests.lit_moe.user_datamodule import CountingDataModule


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 50)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return torch.nn.functional.cross_entropy(self.embed(inputs).flatten(0, 1), targets.flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_step_bar_spans_epochs_and_shows_steps(monkeypatch):
    stream = io.StringIO()
    bar = StepProgressBar()
    monkeypatch.setattr(bar, "init_train_tqdm", lambda: _tqdm(bar, stream))
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[bar], limit_val_batches=0)
    trainer.fit(_Tiny(), CountingDataModule(num_sequences=40, batch_size=8))  # 5 batches an epoch: 3 epochs
    assert bar.train_progress_bar.total == 12 and bar.train_progress_bar.n == 12
    text = stream.getvalue()
    assert "12/12" in text and "-2" not in text and "epoch 2" in text


def _tqdm(bar, stream):
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    return Tqdm(desc="Training", position=0, disable=False, leave=True, dynamic_ncols=False, ncols=100, file=stream)
