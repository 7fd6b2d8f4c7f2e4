"""Exit codes and the one exception type that every command turns into a
message on stderr and an exit code."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    UNAVAILABLE = 5
    FAILED_PRECONDITION = 6


EXIT_CODE_HELP: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "success"),
    (ExitCode.ERROR, "any other error"),
    (
        ExitCode.USAGE,
        "bad usage or invalid input: INVALID_ARGUMENT, an unreadable or malformed file",
    ),
    (ExitCode.NOT_FOUND, "the intent or token does not exist (NOT_FOUND)"),
    (ExitCode.AUTH, "missing, unknown or revoked token, or a missing scope"),
    (ExitCode.UNAVAILABLE, "the control plane cannot be reached or did not answer in time"),
    (ExitCode.FAILED_PRECONDITION, "the intent is in a state that forbids the request"),
)


class CliError(Exception):
    """A failure to report to the user: a headline and detail lines."""

    def __init__(
        self, headline: str, details: Sequence[str] = (), exit_code: int = ExitCode.ERROR
    ) -> None:
        super().__init__(headline)
        self.headline = headline
        self.details = tuple(details)
        self.exit_code = exit_code

    def lines(self) -> list[str]:
        """What goes to stderr: `error: <headline>`, then one indented line per detail."""
        return [f"error: {self.headline}", *(f"  {detail}" for detail in self.details)]


class InputError(CliError):
    """Bad local input: a file that cannot be read or parsed, a bad option value."""

    def __init__(self, source: str, problem: str, details: Sequence[str] = ()) -> None:
        super().__init__(f"{source}: {problem}", details, ExitCode.USAGE)
        self.source = source
