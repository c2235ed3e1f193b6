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
    """Training was stopped by Ctrl-C or SIGTERM after a batch; its state was saved for --resume.
    The exit code is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class SignalInterrupt(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM) that stops a command at once: it unwinds like Ctrl-C, so
    every ``finally`` runs, and the command exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class GateNotMet(NlclfError):
    """A result is below the bar the user set (``compress --agreement``): not a crash."""

    exit_code = 7
