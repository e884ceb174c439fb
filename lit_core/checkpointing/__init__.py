"""Trainer-side checkpoint plug-ins: atomic (streamed) checkpoint writing, per-run checkpoint folders
with a kept previous checkpoint, and preemption handling. Chosen by ``class_path`` in YAML."""

from lit_core.checkpointing.checkpoint_io import AtomicCheckpointIO
from lit_core.checkpointing.experiment_checkpoint import ExperimentCheckpoint
from lit_core.checkpointing.preemption import PreemptionCheckpoint

__all__ = ["AtomicCheckpointIO", "ExperimentCheckpoint", "PreemptionCheckpoint"]
