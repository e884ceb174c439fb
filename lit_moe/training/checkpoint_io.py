"""Re-export: ``AtomicCheckpointIO`` lives in :mod:`lit_core.checkpointing.checkpoint_io`."""

from lit_core.checkpointing.checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
