"""Re-export: ``ExperimentCheckpoint`` lives in :mod:`lit_core.checkpointing.experiment_checkpoint`."""

from lit_core.checkpointing.experiment_checkpoint import ExperimentCheckpoint

__all__ = ["ExperimentCheckpoint"]
