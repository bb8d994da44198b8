"""Exceptions that the CLI turns into one line on stderr and a non-zero exit code."""


class MathkitError(Exception):
    """Base class: the message says what was wrong and what to do."""


class ParamsError(MathkitError):
    """A parameter file or value is invalid (unknown key, wrong type, out of range)."""


class DataError(MathkitError):
    """A data source or input file cannot be used as asked."""


class HubUnavailableError(MathkitError):
    """A Hugging Face hub resource was asked for but the hub cannot be reached."""


class NotebookFailedError(MathkitError):
    """A notebook cell raised while the runner executed it."""
