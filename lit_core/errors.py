"""Exceptions that ``lit_core.cli`` (``cli.py``, ``lit``) turns into one ``error: ...`` line and an exit code."""


class FrameworkError(Exception):
    """Base class: a message meant for the user, no traceback needed."""

    exit_code = 1


class UserInputError(FrameworkError, ValueError):
    """A problem with the user's config or data, with a message that says what to do."""

    exit_code = 2


class TrainingAbortedError(FrameworkError, RuntimeError):
    """The run stopped itself (e.g. repeated non-finite losses) after saving a checkpoint."""

    exit_code = 1
