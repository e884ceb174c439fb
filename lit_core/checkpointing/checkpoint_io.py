"""Crash-safe checkpoint files: streamed into a temporary file in the same folder, fsynced, renamed.

A process killed at any moment (SIGKILL, OOM, node loss) leaves either the previous complete
checkpoint or the new complete one under the final name, never a torn file. ``torch.save`` writes
straight into the temporary file, so saving needs no second in-memory copy of the checkpoint. When a
file is overwritten (``last.ckpt`` at every save), the previous one is kept beside it as
``last.prev.ckpt``, so a checkpoint damaged later (disk, copy) can still be resumed from its
predecessor (see ``lit_core.checkpointing.resume``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lit_core.io import atomic_write


def previous_path(path: str | Path) -> Path:
    """Where the previous version of a checkpoint is kept: ``last.ckpt`` -> ``last.prev.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic and streamed
    (``trainer.plugins: [lit_core.checkpointing.AtomicCheckpointIO]``).

    Args:
        keep_previous: When a save overwrites a checkpoint, keep the old one as ``<name>.prev.ckpt``
            (one extra checkpoint on disk for ``last.ckpt``; files saved once are unaffected).
    """

    def __init__(self, keep_previous: bool = True) -> None:
        super().__init__()
        self.keep_previous = keep_previous

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        previous = previous_path(path) if self.keep_previous else None
        atomic_write(path, lambda handle: self._write(handle, checkpoint), previous=previous)

    def _write(self, handle: BinaryIO, checkpoint: dict[str, Any]) -> None:
        torch.save(checkpoint, handle)
