"""Durations written the Go and Kubernetes way: "90s", "2m", "1h30m", "500ms"."""

from __future__ import annotations

import re
from decimal import Decimal

_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


class DurationError(ValueError):
    """Not a duration."""


def parse_seconds(text: str) -> Decimal:
    """Seconds in "1h30m" (5400). Raises DurationError."""
    stripped = text.strip()
    if not stripped:
        raise DurationError("empty duration")
    position, total = 0, Decimal(0)
    for match in _PART.finditer(stripped):
        if match.start() != position:
            break
        total += Decimal(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(stripped):
        raise DurationError(f"{text!r} is not a duration such as 90s, 2m or 1h30m")
    return total


def to_proto_json(text: str) -> str:
    """The protobuf JSON form of a duration: "2m" -> "120s"."""
    seconds = parse_seconds(text)
    return f"{seconds.normalize():f}s"
