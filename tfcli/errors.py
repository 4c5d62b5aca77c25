"""Errors a user can fix. The CLI turns each into one line on stderr and exit code 1."""


class TfcliError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(TfcliError):
    """A config file or override is invalid; the message names the dotted key."""


class DataError(TfcliError):
    """An input file is missing, unreadable or inconsistent; the message names the file."""


class CheckpointError(TfcliError):
    """A run directory or checkpoint cannot be used."""
