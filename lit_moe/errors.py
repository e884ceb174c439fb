"""The one exception type for bad user input: ``cli.py`` prints its message and exits with code 2."""


class UserInputError(ValueError):
    """A problem with the user's config or data, with a message that says what to do."""
