"""Faults injected from the command line by the fault-tolerance tests."""

from __future__ import annotations

import pathlib
import time
from typing import Optional

import torch

from lit_core.checkpointing import AtomicCheckpointIO
from lit_moe.module import LanguageModelingModule


class NaNInjectingModule(LanguageModelingModule):
    """LanguageModelingModule whose loss is NaN on the given training batches (counted from 0).

    Args:
        nan_batches: Batch counts (over the whole run) whose loss becomes NaN.
        **kwargs: LanguageModelingModule arguments.
    """

    def __init__(self, nan_batches: Optional[list[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_batches = set(nan_batches or [])
        self.batches_seen = 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        poisoned = self.batches_seen in self.nan_batches
        self.batches_seen += 1
        if poisoned:
            loss = loss * float("nan")
            self._last_loss = loss.detach()
        return loss


class StallingCheckpointIO(AtomicCheckpointIO):
    """Writes the first ``healthy_saves`` checkpoints normally; the next one streams ``stall_after``
    bytes into its temporary file, creates ``marker`` and stalls, so the test can kill the process in
    the middle of a save.

    Args:
        marker: File created once the stalled write is part done.
        healthy_saves: Saves that complete before the stall.
        stall_after: Bytes written before the stall.
    """

    def __init__(self, marker: str, healthy_saves: int = 1, stall_after: int = 65536) -> None:
        super().__init__()
        self.marker = marker
        self.healthy_saves = healthy_saves
        self.stall_after = stall_after
        self.saves = 0

    def _write(self, handle, checkpoint) -> None:
        self.saves += 1
        if self.saves <= self.healthy_saves:
            return super()._write(handle, checkpoint)
        return super()._write(_StallAfter(handle, self.stall_after, self.marker), checkpoint)


class _StallAfter:
    """A binary file that stops (sleeps) once ``limit`` bytes went through."""

    def __init__(self, handle, limit: int, marker: str) -> None:
        self.handle, self.limit, self.marker, self.written = handle, limit, marker, 0

    def write(self, data) -> int:
        written = self.handle.write(data)
        self.written += written
        if self.written >= self.limit:
            self.handle.flush()
            pathlib.Path(self.marker).touch()
            time.sleep(600)
        return written

    def flush(self) -> None:
        self.handle.flush()
