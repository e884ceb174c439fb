"""Re-export of :mod:`lit_core.errors` (the errors moved there so ``lit_video`` needs no ``lit_moe``)."""

from lit_core.errors import FrameworkError, TrainingAbortedError, UserInputError

__all__ = ["FrameworkError", "TrainingAbortedError", "UserInputError"]
