"""The project's exception family. Imports nothing.

The CLI catches ``NlclfError`` at the edge and maps each kind to an exit code;
anything else escaping is a bug.
"""


class NlclfError(Exception):
    """A problem the user can fix: the message says what and where."""

    exit_code = 1


class ConfigError(NlclfError):
    """A config file or a ``--set`` override breaks a rule."""

    exit_code = 2


class DataError(NlclfError):
    """A data file is missing, unreadable or malformed."""

    exit_code = 3


class CheckpointError(NlclfError):
    """A model folder is missing, damaged, or of an unknown format."""

    exit_code = 4


class OutputError(NlclfError):
    """An output location cannot be written, or would be overwritten."""

    exit_code = 5


class TrainingDiverged(NlclfError):
    """The loss or a weight became NaN or infinite."""

    exit_code = 6


class Interrupted(NlclfError):
    """Training was stopped by the user (Ctrl-C); its state was saved for --resume."""

    exit_code = 130
