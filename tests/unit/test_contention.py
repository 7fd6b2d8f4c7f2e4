"""Who gets scarce GPUs (controlplane/contention.py): the rule's order — priority,
bid, fair share, age —, GPUs freed together shared out by weight, the
second-price rule for bids, and decayed GPU-hours. Then the engine under
contention for hours of fake time: tenants' GPU-hours follow their weights."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from controlplane import contention
from controlplane.contention import Contender, allot, decayed_gpu_hours
from controlplane.engine import IntentEngine
from controlplane.federation.local import LocalFederation, offers_from_document
from controlplane.intents import lifecycle
from controlplane.placement import planner, requirements, table
from controlplane.placement.planner import PlanResult
from controlplane.placement.requirements import money_of
from controlplane.placement.table import OfferTable
from controlplane.store.sqlite import SqliteStore
from flare.money import DEFAULT_RATES_PER_EUR, Money
from flare.v1 import intent_pb2
from tests.intents import gpu_job
from tests.unit.test_engine import ONE_NODE

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LOW, NORMAL, HIGH = intent_pb2.PRIORITY_LOW, intent_pb2.PRIORITY_NORMAL, intent_pb2.PRIORITY_HIGH


def a100s() -> OfferTable:
    """One node of 4 A100s at 1 EUR per GPU-hour."""
    return table.build(offers_from_document(ONE_NODE), DEFAULT_RATES_PER_EUR)


def queued(
    name: str,
    *,
    tenant: str = "t",
    count: int = 4,
    priority: int = NORMAL,
    bid: str = "",
    minute: int = 0,
    model: str = "nvidia-a100",
) -> Contender:
    constraints = {"max_hourly_cost": bid, "bid": True} if bid else {}
    intent = lifecycle.created(
        gpu_job(name, count=count, model=model, **constraints),
        now=T0 + timedelta(minutes=minute),
    )
    intent.name = f"tenants/{tenant}/intents/{name}"
    intent.priority = priority  # type: ignore[assignment]
    needs = requirements.from_intent(intent, now=T0)
    return contention.contender(intent, needs, a100s())


def plan(c: Contender, free: OfferTable) -> PlanResult:
    return planner.plan(c.needs, free, c.intent.objective, alternatives=False)


def winners(
    contenders: list[Contender],
    used: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[str]:
    awards = allot(contenders, a100s(), plan, used or {}, weights or {})
    return sorted(name.rsplit("/", 1)[1] for name in awards)


def test_priority_comes_before_a_bid() -> None:
    assert winners([queued("bidder", bid="40 EUR"), queued("urgent", priority=HIGH)]) == ["urgent"]


def test_a_bid_comes_before_fair_share_and_age() -> None:
    contenders = [
        queued("early", tenant="frugal", minute=0),
        queued("bidder", tenant="busy", bid="8 EUR", minute=5),
    ]
    assert winners(contenders, used={"busy": 100.0}) == ["bidder"]


def test_fair_share_comes_before_age() -> None:
    contenders = [queued("early", tenant="busy"), queued("late", tenant="idle", minute=30)]
    assert winners(contenders, used={"busy": 10.0, "idle": 2.0}) == ["late"]
    # The same use counts for less against a larger weight.
    weights = {"busy": 10.0}
    assert winners(contenders, used={"busy": 10.0, "idle": 2.0}, weights=weights) == ["early"]


def test_the_oldest_goes_first_when_all_else_is_equal() -> None:
    assert winners([queued("second", minute=1), queued("first", minute=0)]) == ["first"]


def test_gpus_freed_together_are_shared_out_by_weight() -> None:
    contenders = [
        queued(f"{tenant}{i}", tenant=tenant, count=1, minute=i)
        for tenant in ("a", "b")
        for i in range(4)
    ]
    won = winners(contenders, weights={"a": 3.0, "b": 1.0})
    assert sum(n.startswith("a") for n in won) == 3
    assert sum(n.startswith("b") for n in won) == 1


def test_a_small_intent_starts_beside_a_large_one_that_waits() -> None:
    contenders = [queued("large", count=8, minute=0), queued("small", count=2, minute=1)]
    assert winners(contenders) == ["small"]


def test_a_winning_bid_pays_the_highest_bid_left_waiting() -> None:
    first = queued("first", bid="20 EUR")  # 5 EUR per GPU-hour for 4 GPUs
    second = queued("second", bid="12 EUR")  # 3 EUR per GPU-hour
    awards = allot([first, second, queued("patient")], a100s(), plan, {}, {})

    assert set(awards) == {first.name}
    award = awards[first.name]
    assert award.price == Money(Decimal("12.0"), "EUR")  # 3 EUR x 4 GPUs, not 20
    assert award.outbid == (second.name,)


def test_an_uncontested_bid_pays_the_offers_price() -> None:
    # Rivals that do not bid, bid at another priority, or could not use the offer
    # anyway (another GPU model) raise nothing.
    bidder = queued("bidder", bid="20 EUR")
    rivals = [
        queued("patient"),
        queued("lower", priority=LOW, bid="40 EUR"),
        queued("h100", bid="40 EUR", model="nvidia-h100"),
    ]
    award = allot([bidder, *rivals], a100s(), plan, {}, {})[bidder.name]
    assert award.price is None
    assert award.outbid == ()


def test_a_bid_never_pays_more_than_itself() -> None:
    # A rival bidding more that still lost (it needs more GPUs than are free)
    # raises the price only up to the winner's own bid.
    winner = queued("winner", bid="8 EUR", count=2, minute=1)  # 4 EUR per GPU-hour
    rival = queued("rival", bid="100 EUR", count=8, minute=0)  # 12.5, but 8 GPUs
    award = allot([winner, rival], a100s(), plan, {}, {})[winner.name]
    assert award.price == Money(Decimal("8.0"), "EUR")
    assert award.outbid == (rival.name,)


def ran(
    hours: float, *, ended_hours_ago: float, gpus: int = 2
) -> tuple[intent_pb2.Intent, datetime]:
    """An intent that held `gpus` GPUs for `hours`, ending `ended_hours_ago`; and now."""
    began = T0
    intent = lifecycle.created(gpu_job(count=gpus), now=began)
    for target in (lifecycle.PLANNING, lifecycle.RESERVING, lifecycle.DEPLOYING):
        intent = lifecycle.transition(intent, target, reason="Step", message="", now=began)
    intent = lifecycle.transition(
        intent, lifecycle.RUNNING, reason="Running", message="", now=began
    )
    ended = began + timedelta(hours=hours)
    intent = lifecycle.transition(intent, lifecycle.CANCELLING, reason="C", message="", now=ended)
    intent = lifecycle.transition(intent, lifecycle.CANCELLED, reason="R", message="", now=ended)
    return intent, ended + timedelta(hours=ended_hours_ago)


def test_gpu_hours_decay_by_half_each_half_life() -> None:
    recent, now = ran(0.1, ended_hours_ago=0)
    old, later = ran(0.1, ended_hours_ago=6)
    assert decayed_gpu_hours(recent, now, 6.0) == pytest.approx(0.2, rel=0.01)
    assert decayed_gpu_hours(old, later, 6.0) == pytest.approx(0.1, rel=0.01)


def test_usage_counts_the_ended_decayed_and_the_held_ahead() -> None:
    usage = contention.Usage(half_life_hours=6.0)
    done, now = ran(0.1, ended_hours_ago=0)
    done.name = "tenants/a/intents/done"
    usage.ended(done, now)
    holding = lifecycle.created(gpu_job(count=3), now=now)
    holding.name = "tenants/b/intents/holding"
    holding = lifecycle.transition(holding, lifecycle.PLANNING, reason="P", message="", now=now)

    assert usage.by_tenant([holding], now)["a"] == pytest.approx(0.2, rel=0.01)
    assert usage.by_tenant([holding], now).get("b", 0.0) == 0.0
    assert usage.by_tenant([holding], now, allotted={holding.name})["b"] == 3.0
    assert usage.by_tenant([], now + timedelta(hours=12))["a"] == pytest.approx(0.05, rel=0.01)


def test_shares_parse_and_refuse_what_is_wrong() -> None:
    assert contention.parse_shares("acme=2, globex=0.5") == {"acme": 2.0, "globex": 0.5}
    for bad in ("acme=0", "acme=x", "Not A Tenant=1", "acme=-1", "acme=inf"):
        with pytest.raises(ValueError, match="fair share"):
            contention.parse_shares(bad)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize(("weight_of_a", "share_of_a"), [(2.0, 2 / 3), (1.0, 1 / 2)])
async def test_under_contention_tenants_gpu_hours_follow_their_weights(
    store: SqliteStore, clock: FakeClock, weight_of_a: float, share_of_a: float
) -> None:
    # Both tenants keep a backlog of one-GPU jobs on a 4-GPU federation; every hour
    # the running jobs end and the freed GPUs are contended for.
    federation = LocalFederation(offers_from_document(ONE_NODE))
    engine = IntentEngine(store, federation, clock=clock, workers=4, shares={"a": weight_of_a})
    names = []
    for i in range(30):
        for tenant in ("b", "a"):  # b's jobs are older: fair share, not age, decides
            intent = gpu_job(f"{tenant}{i}", count=1)
            intent.name = f"tenants/{tenant}/intents/{tenant}{i}"
            stored, _ = await store.create(
                lifecycle.created(intent, now=clock()), tenant=tenant, request_id=""
            )
            names.append(stored.name)
    await engine.start()
    try:
        hours = {"a": 0, "b": 0}
        for _ in range(12):
            running = await running_when_settled(store, names, 4)
            clock.now += timedelta(hours=1)
            for name in running:
                hours[name.split("/")[1]] += 1
                await store.update(name, ended_at(clock()))
    finally:
        await engine.stop()

    # 48 GPU-hours in whole GPUs per hour: a's part within 3 GPU-hours of its share.
    assert hours["a"] + hours["b"] == 48
    assert abs(hours["a"] - 48 * share_of_a) <= 3, hours


async def running_when_settled(store: SqliteStore, names: list[str], count: int) -> list[str]:
    """The running intents, once `count` run and the rest are queued or ended."""
    resting = {lifecycle.RUNNING, lifecycle.QUEUED, *lifecycle.TERMINAL}
    for _ in range(500):
        intents = [i for i in [await store.get(n) for n in names] if i is not None]
        running = [i.name for i in intents if i.state == lifecycle.RUNNING]
        if len(running) == count and all(i.state in resting for i in intents):
            return running
        await asyncio.sleep(0.01)
    raise AssertionError(sorted(lifecycle.name(i.state) for i in intents))


def ended_at(now: datetime) -> Callable[[intent_pb2.Intent], intent_pb2.Intent]:
    def end(current: intent_pb2.Intent) -> intent_pb2.Intent:
        return lifecycle.transition(
            current, lifecycle.CANCELLING, reason="Finished", message="", now=now
        )

    return end


async def test_the_engine_places_the_highest_bid_first_at_the_second_price(
    store: SqliteStore, clock: FakeClock
) -> None:
    engine = IntentEngine(store, LocalFederation(offers_from_document(ONE_NODE)), clock=clock)
    await engine.start()
    try:
        first = await create(store, clock, gpu_job("first", count=4))
        await running_when_settled(store, [first], 1)
        patient = await create(store, clock, gpu_job("patient", count=4))
        low = await create(
            store, clock, gpu_job("low", count=4, max_hourly_cost="12 EUR", bid=True)
        )
        high = await create(
            store, clock, gpu_job("high", count=4, max_hourly_cost="20 EUR", bid=True)
        )
        await running_when_settled(store, [first, patient, low, high], 1)

        await store.update(first, ended_at(clock()))
        (running,) = await running_when_settled(store, [first, patient, low, high], 1)
    finally:
        await engine.stop()

    assert running == high
    won = await store.get(high)
    assert won is not None
    assert money_of(won.placement.hourly_cost) == Money(Decimal(12), "EUR")  # listed: 4 EUR
    placed = next(t for t in reversed(won.history) if t.reason == "Placed")
    assert placed.message == (
        f"chose nvidia-a100 x4 at p (eu-west-1) for 4.00 EUR/h; outbid {low} and pays 12.00 EUR/h"
    )


async def create(store: SqliteStore, clock: FakeClock, intent: intent_pb2.Intent) -> str:
    intent.name = f"tenants/t/intents/{intent.workload.name}"
    stored, _ = await store.create(
        lifecycle.created(intent, now=clock()), tenant="t", request_id=""
    )
    return stored.name
