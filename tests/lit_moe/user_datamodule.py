"""A user's own datamodule, plugged in by class_path (not part of the framework)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class CountingDataModule(pl.LightningDataModule):
    """Sequences that count upward modulo ``vocab_size``: trivially learnable next tokens.

    Args:
        vocab_size: Number of distinct tokens.
        seq_len: Tokens per sequence.
        num_sequences: Training sequences.
        batch_size: Sequences per batch.
    """

    def __init__(self, vocab_size: int = 50, seq_len: int = 32, num_sequences: int = 64, batch_size: int = 8) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        starts = torch.randint(0, vocab_size, (num_sequences, 1), generator=torch.Generator().manual_seed(0))
        tokens = (starts + torch.arange(seq_len + 1)) % vocab_size
        self.dataset = TensorDataset(tokens[:, :-1], tokens[:, 1:])
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)
