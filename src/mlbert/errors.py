"""The errors a user can cause, kept apart from our own bugs.

The CLI turns any MlbertError into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class MlbertError(Exception):
    """A problem the user can fix: the message says where, what, and what to do."""


class DataError(MlbertError):
    """Input data that cannot be read or is not valid multi-label data."""


class ConfigError(MlbertError):
    """A setting, flag or model folder that cannot be used."""


class NotFittedError(MlbertError):
    """A classifier used before `fit` or `load`."""


class OutputError(MlbertError):
    """A result that cannot be written: the disk is full, the place is read-only or not a folder."""
