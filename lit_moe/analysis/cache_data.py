"""Batches of paired activations read from an ``ActivationCache`` (no model runs during training).

Shape legend: B batch (tokens), M sites (models), D width.
"""

from __future__ import annotations

from typing import Iterator, Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_moe.analysis.activation_cache import ActivationCache, open_cache
from lit_moe.errors import UserInputError


class RowBatches(Dataset):
    """``dataset[index_B]`` -> (activations [B, M, D] fp32, global cache rows [B])."""

    def __init__(self, cache: ActivationCache, sites: list[str], rows_T: torch.Tensor) -> None:
        self.cache, self.sites, self.rows_T = cache, sites, rows_T

    def __len__(self) -> int:
        return self.rows_T.numel()

    def __getitem__(self, index_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows_B = self.rows_T[index_B]
        return self.cache.activations(rows_B, self.sites), rows_B


class BatchIndices(Sampler):
    """Index batches of ``batch_size``: a fresh deterministic shuffle per epoch, or in order."""

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool) -> None:
        self.size, self.batch_size, self.shuffle, self.seed, self.drop_last = size, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size]


class ActivationCacheDataModule(pl.LightningDataModule):
    """Paired activations of two (or more) models from a harvested cache, split by sequence.

    Args:
        cache_dir: Folder written by ``lit_moe.analysis.ActivationHarvestModule``.
        sites: Cache sites, one per model, e.g. ``[dense/resid_post.2, moe/resid_post.2]`` (model A, model B).
        batch_size: Tokens per training batch.
        val_fraction: Share of sequences (every n-th one) held out for the validation metrics.
        seed: Shuffling seed (a fresh order every epoch).
        num_workers: DataLoader workers (reads are memory-mapped; 0 is usually enough).
    """

    def __init__(self, cache_dir: str, sites: list[str], batch_size: int = 4096, val_fraction: float = 0.1,
                 seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        if len(sites) < 2:
            raise UserInputError(f"sites={sites}: a crosscoder needs one site per model, at least two")
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.cache_dir, self.sites, self.batch_size = cache_dir, list(sites), batch_size
        self.val_fraction, self.seed, self.num_workers = val_fraction, seed, num_workers
        self.cache: Optional[ActivationCache] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.cache is not None:
            return
        self.cache = open_cache(self.cache_dir)
        for site in self.sites:
            self.cache.site(site)
        meta = self.cache.meta
        every = max(2, round(1 / self.val_fraction))
        is_val_N = torch.arange(meta.num_sequences) % every == every - 1
        positions_S = torch.arange(meta.seq_len)
        rows_NS = torch.arange(meta.num_sequences).unsqueeze(1) * meta.seq_len + positions_S
        self.train_rows, self.val_rows = rows_NS[~is_val_N].reshape(-1), rows_NS[is_val_N].reshape(-1)
        if self.val_rows.numel() == 0:
            raise UserInputError(f"the cache has {meta.num_sequences} sequences, too few to hold out every {every}-th "
                                 "for validation: harvest more tokens or raise val_fraction")
        if self.train_rows.numel() < self.batch_size:
            raise UserInputError(f"the cache has {self.train_rows.numel()} training tokens, fewer than one batch of "
                                 f"{self.batch_size}: harvest more tokens or lower batch_size")

    @property
    def width(self) -> int:
        return self.cache.site(self.sites[0]).width

    def _loader(self, rows_T: torch.Tensor, shuffle: bool) -> DataLoader:
        sampler = BatchIndices(rows_T.numel(), self.batch_size, shuffle, self.seed, drop_last=shuffle)
        return DataLoader(RowBatches(self.cache, self.sites, rows_T), sampler=sampler, batch_size=None,
                          num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, shuffle=False)
