"""Quota parsing and the usage rule, without a server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from controlplane.errors import ResourceExhausted
from controlplane.intents import lifecycle
from controlplane.quotas import Quota, Quotas, parse_quotas, spend_of
from flare.money import DEFAULT_RATES_PER_EUR, Money
from flare.v1 import intent_pb2
from tests.intents import gpu_job


def intent(name: str, gpus: int, **constraints: str) -> intent_pb2.Intent:
    made = gpu_job(name, count=gpus, **constraints)
    made.name = name
    return made


def test_quotas_parse_per_tenant() -> None:
    assert parse_quotas("acme=gpus:8,spend:20 EUR; globex=gpus:2") == {
        "acme": Quota(8, Money(Decimal(20), "EUR")),
        "globex": Quota(2, None),
    }
    assert parse_quotas("") == {}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("Acme=gpus:1", "not a tenant id"),
        ("acme=gpus:many", "is not gpus:<count>"),
        ("acme=spend:20 XYZ", "currency"),
        ("acme=cpus:4", "is not gpus:<count>"),
    ],
)
def test_bad_quotas_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_quotas(text)


def test_usage_counts_live_intents_of_the_tenant_only() -> None:
    quotas = Quotas({"acme": Quota(gpus=4)}, DEFAULT_RATES_PER_EUR)
    mine = intent("tenants/acme/intents/a", 3)
    theirs = intent("tenants/globex/intents/b", 8)

    quotas.admit(intent("tenants/acme/intents/c", 1), [mine, theirs])
    quotas.admit(intent("tenants/globex/intents/d", 64), [mine, theirs])  # no quota
    quotas.admit(mine, [mine])  # a retried create does not count itself twice
    with pytest.raises(ResourceExhausted) as refused:
        quotas.admit(intent("tenants/acme/intents/e", 2), [mine, theirs])
    assert refused.value.quota == "tenants/acme/quotas/gpus"


def test_spend_is_the_placement_cost_or_the_stated_limit() -> None:
    placed = intent("tenants/acme/intents/a", 1)
    placed.state = lifecycle.RUNNING
    placed.placement.hourly_cost.amount = "2.30"
    placed.placement.hourly_cost.currency_code = "USD"
    limited = intent("tenants/acme/intents/b", 1, max_hourly_cost="4 EUR")
    unbounded = intent("tenants/acme/intents/c", 1)

    assert spend_of(placed, DEFAULT_RATES_PER_EUR) == Decimal("2.30") / Decimal("1.152")
    assert spend_of(limited, DEFAULT_RATES_PER_EUR) == 4
    assert spend_of(unbounded, DEFAULT_RATES_PER_EUR) == 0
