"""Flora's two exception families: what a user can act on (`FloraError`), and a stop someone asked for (`Cancelled`).

`FloraError` (mlflow's `MlflowException` with its error codes is the model): its message says what happened, and its
kind says what to do about it (`what_to_do`) and what the CLI exits with. Every exception Flora raises for a person to
read derives from one of the kinds below, keeping the built-in base callers already catch (`ValueError`, `KeyError`,
...) as a second base. Anything else that reaches the CLI is a bug: it shows its traceback and exits with `EXIT_BUG`.

`Cancelled` (fastai's `CancelFitException` family): every stop on request (a Stop button, a stop flag, SIGTERM, a
cancelled import or decode) derives from it. Work raises it where it notices the request; the job's boundary (the run,
the task, the sweep, the fetch) catches `Cancelled` once and records the job as stopped, with no translation between.
"""

from __future__ import annotations

EXIT_FAILED = 1  # a FloraError or a stop: the message on stderr says why
EXIT_BUG = 70  # anything else (sysexits' EX_SOFTWARE): a bug in Flora, its traceback on stderr
EXIT_TEMPFAIL = 75  # Busy (sysexits' EX_TEMPFAIL): the same command may work in a moment


class FloraError(Exception):
    """Something a person can act on: the message says what happened and, where it can, what to change."""

    what_to_do = "the message says what to change"
    exit_code = EXIT_FAILED

    def __str__(self) -> str:  # a KeyError's own str() would quote the message
        return " ".join(str(arg) for arg in self.args) if self.args else self.what_to_do


class InvalidInput(FloraError, ValueError):
    """A value Flora cannot use: an argument, a setting, a file's contents, a dataset."""

    what_to_do = "change the value the message names (`python -m core COMMAND --help` lists what each takes)"


class NotFound(FloraError, KeyError):
    """What was asked for is not there: a run, a sweep, an alias, a class, a stored result."""

    what_to_do = "check the name (`python -m core runs`, `sweeps` or `alias` lists what there is)"


class Conflict(FloraError, RuntimeError):
    """What was asked for cannot happen in the present state: a run still active, a port in use, a server running."""

    what_to_do = "wait for the other work to end, or stop it first"


class Busy(FloraError, RuntimeError):
    """Flora is at a limit for now: a full queue, a spent quota, a pause after failed sign-ins."""

    what_to_do = "try again in a moment"
    exit_code = EXIT_TEMPFAIL


class Unavailable(FloraError, RuntimeError):
    """Something Flora needs cannot be had here: a model not yet trained, a conversion that failed, a download."""

    what_to_do = "the message says what is missing and how to get it"


class NotAllowed(FloraError):
    """Someone else's to change: another person's run, label or feedback."""

    what_to_do = "ask its owner or an admin"


class Cancelled(Exception):
    """A stop someone asked for: not a failure. The job boundary records the job as stopped, with this message."""

    exit_code = EXIT_FAILED
