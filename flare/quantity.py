"""Kubernetes resource quantities ("500m", "16Gi", "1.5G", "2e3"), parsed exactly."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_PATTERN = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Decimal:
    """Return the value of a quantity in base units (bytes, cores, ...).

    >>> parse_quantity("16Gi")
    Decimal('17179869184')
    >>> parse_quantity("500m")
    Decimal('0.500')
    """
    match = _PATTERN.match(text.strip())
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi, 1.5G)")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            return value * (Decimal(10) ** int(exponent[1:]))
    except InvalidOperation as error:  # pragma: no cover - the regex admits only numbers
        raise QuantityError(f"{text!r} is not a number") from error
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix or ""]


def is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def format_bytes_gi(value: int | Decimal) -> str:
    """Bytes as a whole or fractional number of Gi, the annotation convention: "80Gi"."""
    gib = Decimal(value) / _BINARY["Gi"]
    text = f"{gib.normalize():f}" if gib != gib.to_integral_value() else str(int(gib))
    return f"{text}Gi"
