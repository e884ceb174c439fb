"""A data-parallel sampler that can resume mid-epoch, so a restarted run sees exactly the batches
an uninterrupted run would have seen next."""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (deterministic order from ``seed`` and the epoch, sharded over ranks)
    that skips the first ``start_index`` samples of its shard once, for the epoch given to
    ``fast_forward``. Lightning leaves DistributedSampler subclasses in place and calls
    ``set_epoch`` at every epoch start."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self._resume_epoch = -1
        self._resume_index = 0

    def fast_forward(self, epoch: int, samples: int) -> None:
        """Start epoch ``epoch`` at this rank's ``samples``-th sample."""
        self.set_epoch(epoch)
        self._resume_epoch, self._resume_index = epoch, samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start = self._resume_index if self.epoch == self._resume_epoch else 0
        self._resume_epoch, self._resume_index = -1, 0
        return iter(indices[start:])
