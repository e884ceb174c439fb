"""Re-export: ``PreemptionCheckpoint`` lives in :mod:`lit_core.checkpointing.preemption`."""

from lit_core.checkpointing.preemption import PreemptionCheckpoint

__all__ = ["PreemptionCheckpoint"]
