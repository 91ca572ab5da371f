"""Errors raised for bad user input. The CLI prints them on one line and exits 2."""

from __future__ import annotations


class FleetschedError(Exception):
    """Base class of every error fleetsched raises on purpose."""


class InputError(FleetschedError, ValueError):
    """Bad user input: a trace, a scenario file, an option or an HTTP body.

    ``where`` names the place (``file:line`` or a field path); the message says what is wrong.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


def at_line(path: object, line: int) -> str:
    """Format a ``file:line`` location."""
    return f"{path}:{line}"
