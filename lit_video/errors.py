"""The one exception type for bad user input in ``lit_video``.

It is a ``lit_core.errors.UserInputError`` (the framework's shared error type), so ``cli.py`` prints
its message as one ``error: ...`` line and exits with code 2.
"""

from lit_core.errors import UserInputError


class VideoInputError(UserInputError):
    """A problem with the user's video, prompt or config, with a message that says what to do."""
