"""Trainer-side plug-ins: atomic checkpoint writing and preemption handling."""

from lit_moe.training.checkpoint_io import AtomicCheckpointIO
from lit_moe.training.experiment_checkpoint import ExperimentCheckpoint
from lit_moe.training.preemption import PreemptionCheckpoint

__all__ = ["AtomicCheckpointIO", "ExperimentCheckpoint", "PreemptionCheckpoint"]
