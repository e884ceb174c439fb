"""Crash-safe checkpoint files: write to a temporary file in the same folder, fsync, then rename.

A process killed at any moment (SIGKILL, OOM, node loss) leaves either the previous complete
checkpoint or the new complete one under the final name, never a torn file.
"""

from __future__ import annotations

import io
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lit_core.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic (``trainer.plugins: [lit_core.checkpointing.AtomicCheckpointIO]``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda handle: self._write(handle, buffer.getbuffer()))

    def _write(self, handle, data: memoryview) -> None:
        handle.write(data)
