"""Errors that name the file and line, so the CLI can print them without a traceback."""

from __future__ import annotations


class CurateError(Exception):
    """A problem the user can fix: bad input, a bad option, a missing dataset."""


class InputError(CurateError):
    """Bad input at a known place."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message
