"""Domain errors. They say what went wrong in FLARE's terms; the API layer
(controlplane/api/status.py) is the one place that maps them to gRPC status
codes and google.rpc details."""

from __future__ import annotations

from collections.abc import Sequence

from flare.violation import FieldViolation


class FlareError(Exception):
    """Base of the errors a caller can act on."""

    # Machine-readable reason, UPPER_SNAKE, sent as google.rpc.ErrorInfo.reason.
    reason = "FLARE_ERROR"


class InvalidArgument(FlareError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        fields = list(dict.fromkeys(v.field for v in self.violations))
        more = f" and {len(fields) - 5} more" if len(fields) > 5 else ""
        noun = "field" if len(fields) == 1 else "fields"
        # The descriptions travel in google.rpc.BadRequest; the message names the fields.
        super().__init__(f"invalid request: check {noun} {', '.join(fields[:5])}{more}")


class NotFound(FlareError):
    reason = "NOT_FOUND"


class AlreadyExists(FlareError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(FlareError):
    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, subject: str = "", kind: str = "STATE") -> None:
        self.subject = subject
        self.kind = kind
        super().__init__(message)


class Aborted(FlareError):
    """A concurrent change won; retry."""

    reason = "ABORTED"


class OutOfRange(FlareError):
    reason = "OUT_OF_RANGE"


class Unauthenticated(FlareError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(FlareError):
    reason = "PERMISSION_DENIED"


class ResourceExhausted(FlareError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, quota: str) -> None:
        self.quota = quota
        super().__init__(message)


class Unavailable(FlareError):
    reason = "UNAVAILABLE"
