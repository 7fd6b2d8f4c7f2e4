"""Opaque page tokens: a cursor bound to the filter it was issued for."""

from __future__ import annotations

import base64
import hashlib
import json

from controlplane.errors import InvalidArgument
from flare.violation import FieldViolation

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def encode(cursor: str | int, query: str) -> str:
    raw = json.dumps({"c": cursor, "q": _fingerprint(query)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, query: str) -> str | int | None:
    """The cursor in a page token; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        cursor, fingerprint = data["c"], data["q"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from this API")]
        ) from error
    if fingerprint != _fingerprint(query) or not isinstance(cursor, str | int):
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token", "was issued for a different query; start from the first page"
                )
            ]
        )
    return cursor
