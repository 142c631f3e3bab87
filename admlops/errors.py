"""Errors that reach users: each names the file (and line) that is wrong and what was expected."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
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
