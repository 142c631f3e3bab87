"""The product's errors: one base class that carries the exit code, so the CLI maps them in one place.

Each error names what is wrong (the file and line, the store and object, the host) and what was expected;
``admlops`` prints ``admlops: error: <message>`` and exits with the class's code, never with a traceback.
Exit 1 is left to the unexpected (a bug or the environment), which keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path


class AdmlopsError(Exception):
    """Base of every error a user can act on; ``exit_code`` is what ``admlops`` exits with."""

    exit_code = 1


class UsageError(AdmlopsError, ValueError):
    """A command line or a parameter that parses but cannot be used: an unknown name, a bad value (exit 2)."""

    exit_code = 2


class InputError(AdmlopsError):
    """Bad user input: a missing file, a malformed line, an unknown class.

    The CLI prints it as ``path:line: message`` and exits with code 3.
    """

    exit_code = 3

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keeps it picklable, so it crosses multiprocessing pools intact
        return type(self), (self.path, self.message, self.line)


class StepFailed(AdmlopsError):
    """A pipeline task (local or on the cluster) or a quality gate failed; its log or report says why (exit 4)."""

    exit_code = 4


class ServiceError(AdmlopsError):
    """A remote service (the KFP API, Kubernetes) refused a request or could not be reached (exit 6)."""

    exit_code = 6
