"""Re-exports of the checkpoint plug-ins, which moved to :mod:`lit_core.checkpointing`; the old class
paths (``lit_moe.training.AtomicCheckpointIO`` ...) keep working in YAML for one release."""

from lit_core.checkpointing import AtomicCheckpointIO, ExperimentCheckpoint, PreemptionCheckpoint

__all__ = ["AtomicCheckpointIO", "ExperimentCheckpoint", "PreemptionCheckpoint"]
