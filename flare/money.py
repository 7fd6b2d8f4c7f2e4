"""Money: an exact decimal amount in one ISO-4217 currency.

Conversion between currencies uses a rate table that the operator configures;
the default table and its date are documented in docs/api.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO-4217 codes FLARE accepts. A closed list keeps typos ("EURO") from becoming
# a currency that no offer can ever match.
CURRENCIES = frozenset(
    {
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "JPY",
        "CNY",
        "INR",
        "CAD",
        "AUD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "SGD",
        "KRW",
        "BRL",
    }
)
_AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,6})?$")
_SHORTHAND = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]{3})\s*$|^\s*([A-Za-z]{3})\s*(\d+(?:\.\d+)?)\s*$"
)


class MoneyError(ValueError):
    """A malformed amount or an unknown currency."""


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount:.2f} {self.currency}"


def parse_amount(text: str) -> Decimal:
    if not _AMOUNT.match(text):
        raise MoneyError(f"amount {text!r} must be a non-negative decimal such as 4.25")
    try:
        return Decimal(text)
    except InvalidOperation as error:  # pragma: no cover - guarded by the regex
        raise MoneyError(f"amount {text!r} is not a number") from error


def check_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise MoneyError(f"currency {code!r} is not one of {', '.join(sorted(CURRENCIES))}")
    return code


def parse_shorthand(text: str) -> tuple[str, str]:
    """Split the seeds' "5 EUR" (or "EUR 5") into (amount, currency code)."""
    match = _SHORTHAND.match(text)
    if not match:
        raise MoneyError(f"{text!r} is not an amount with a currency, such as '5 EUR'")
    amount = match.group(1) or match.group(4)
    code = (match.group(2) or match.group(3)).upper()
    return amount, code


# Units of each currency per 1 EUR. Approximate euro reference rates of late
# 2025, for demos; operators set their own with --exchange-rates.
DEFAULT_RATES_PER_EUR: Mapping[str, Decimal] = {
    "EUR": Decimal(1),
    "USD": Decimal("1.152"),
    "GBP": Decimal("0.879"),
    "CHF": Decimal("0.931"),
}


def parse_rates(text: str) -> dict[str, Decimal]:
    """ "USD=1.15,CHF=0.93" (units per 1 EUR) merged over the defaults."""
    rates = dict(DEFAULT_RATES_PER_EUR)
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, _, value = part.partition("=")
        code = check_currency(code.strip().upper())
        try:
            rate = Decimal(value.strip())
        except InvalidOperation as error:
            raise MoneyError(f"rate {value!r} of {code} is not a number") from error
        if rate <= 0:
            raise MoneyError(f"rate of {code} must be positive")
        rates[code] = rate
    return rates


def convert(money: Money, currency: str, rates: Mapping[str, Decimal]) -> Money:
    """Convert through the rate table; MoneyError when a rate is missing."""
    if money.currency == currency:
        return money
    try:
        eur = money.amount / rates[money.currency]
        return Money(eur * rates[currency], currency)
    except KeyError as error:
        raise MoneyError(f"no exchange rate for {error.args[0]}") from error
