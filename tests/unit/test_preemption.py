"""Priorities and preemption in the engine, against the real SQLite store and
local federation: a higher-priority intent that fits nowhere preempts running
intents of lower priority that allow it, which are queued again with the
reason in their history and run again when capacity returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from controlplane.clock import utc_now
from controlplane.engine import IntentEngine
from controlplane.federation.local import LocalFederation, offers_from_document
from controlplane.intents import lifecycle
from controlplane.store.sqlite import SqliteStore
from flare.v1 import intent_pb2
from tests.intents import gpu_job
from tests.unit.test_engine import ONE_NODE, settle

TWO_NODES: dict[str, Any] = {
    "providers": [
        {
            **ONE_NODE["providers"][0],
            "nodes": [
                {"name": "n", "gpu_model": "nvidia-a100", "gpus": 4, "price_per_gpu_hour": 1},
                {"name": "m", "gpu_model": "nvidia-a100", "gpus": 4, "price_per_gpu_hour": 3},
            ],
        }
    ]
}
Engines = Callable[[dict[str, Any]], Awaitable[IntentEngine]]
LOW, NORMAL, HIGH = intent_pb2.PRIORITY_LOW, intent_pb2.PRIORITY_NORMAL, intent_pb2.PRIORITY_HIGH


@pytest.fixture
async def engines(store: SqliteStore) -> AsyncIterator[Engines]:
    started: list[IntentEngine] = []

    async def start(document: dict[str, Any]) -> IntentEngine:
        engine = IntentEngine(store, LocalFederation(offers_from_document(document)), workers=4)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        await engine.stop()


async def submit(
    store: SqliteStore,
    name: str,
    count: int,
    priority: int,
    *,
    preemptible: bool | None = None,
    max_interruption: str = "",
) -> str:
    intent = gpu_job(name, count=count)
    intent.name = f"tenants/t/intents/{name}"
    intent.priority = priority  # type: ignore[assignment]
    if preemptible is not None:
        intent.sla.preemptible = preemptible
    if max_interruption:
        intent.sla.max_interruption_time.FromJsonString(max_interruption)
    stored, _ = await store.create(
        lifecycle.created(intent, now=utc_now()), tenant="t", request_id=""
    )
    return stored.name


async def until(
    store: SqliteStore, name: str, done: Callable[[intent_pb2.Intent], bool]
) -> intent_pb2.Intent:
    for _ in range(500):
        intent = await store.get(name)
        if intent is not None and done(intent):
            return intent
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name}: {intent}")


def waiting(state: int) -> bool:
    return state in (lifecycle.RUNNING, lifecycle.QUEUED)


def reasons(intent: intent_pb2.Intent) -> list[str]:
    return [t.reason for t in intent.history]


async def test_a_high_priority_intent_preempts_a_low_one_which_runs_again_later(
    store: SqliteStore, engines: Engines
) -> None:
    await engines(ONE_NODE)
    low = await submit(store, "batch", 4, LOW)
    await settle(store, [low], lambda s: s == lifecycle.RUNNING)
    high = await submit(store, "urgent", 2, HIGH)

    urgent, batch = await settle(store, [high, low], waiting)

    assert urgent.state == lifecycle.RUNNING
    assert batch.state == lifecycle.QUEUED
    assert reasons(batch)[-1] in ("Preempted", "NoMatchingOffer")
    preempted = next(t for t in batch.history if t.reason == "Preempted")
    assert preempted.message == f"preempted by {high} (priority HIGH); waiting for capacity"
    assert "Preempting" in reasons(urgent)

    def finish(current: intent_pb2.Intent) -> intent_pb2.Intent:
        return lifecycle.transition(
            current, lifecycle.CANCELLING, reason="Cancelled", message="", now=utc_now()
        )

    await store.update(high, finish)
    (again,) = await settle(store, [low], lambda s: s == lifecycle.RUNNING)
    assert reasons(again)[-1] == "Running"


async def test_who_may_be_preempted(store: SqliteStore, engines: Engines) -> None:
    await engines(ONE_NODE)
    normal = await submit(store, "steady", 2, NORMAL)  # not preemptible: unset and not LOW
    willing = await submit(store, "willing", 2, NORMAL, preemptible=True)
    await settle(store, [normal, willing], lambda s: s == lifecycle.RUNNING)
    low = await submit(store, "low", 2, LOW)  # LOW cannot preempt anyone
    high = await submit(store, "high", 2, HIGH)

    steady, yielded, queued_low, urgent = await settle(store, [normal, willing, low, high], waiting)

    assert steady.state == lifecycle.RUNNING
    assert yielded.state == lifecycle.QUEUED and "Preempted" in reasons(yielded)
    assert queued_low.state == lifecycle.QUEUED and "Preempting" not in reasons(queued_low)
    assert urgent.state == lifecycle.RUNNING


async def test_an_intent_with_a_max_interruption_that_cannot_move_is_not_preempted(
    store: SqliteStore, engines: Engines
) -> None:
    await engines(TWO_NODES)
    mover = await submit(store, "mover", 4, LOW, max_interruption="60s")  # all of n
    await settle(store, [mover], lambda s: s == lifecycle.RUNNING)
    filler = await submit(store, "filler", 2, NORMAL)  # half of m
    await settle(store, [filler], lambda s: s == lifecycle.RUNNING)
    big = await submit(store, "big", 4, HIGH)

    kept, _, urgent = await settle(store, [mover, filler, big], waiting)

    assert urgent.state == lifecycle.QUEUED  # mover could go nowhere within its SLA
    assert kept.state == lifecycle.RUNNING and "Preempted" not in reasons(kept)


async def test_an_intent_with_a_max_interruption_is_preempted_when_it_can_move(
    store: SqliteStore, engines: Engines
) -> None:
    await engines(TWO_NODES)
    mover = await submit(store, "mover", 2, LOW, max_interruption="60s")
    batch = await submit(store, "batch", 2, LOW)
    await settle(store, [mover, batch], lambda s: s == lifecycle.RUNNING)  # both on n
    filler = await submit(store, "filler", 2, NORMAL)  # half of m
    await settle(store, [filler], lambda s: s == lifecycle.RUNNING)
    big = await submit(store, "big", 4, HIGH)

    # The mover goes through QUEUED ("waiting for capacity") on its way to m: wait for where
    # it ends, not for the first moment every intent is RUNNING or QUEUED.
    moved = await until(
        store,
        mover,
        lambda i: i.state == lifecycle.RUNNING and i.placement.offer.endswith("/m"),
    )
    urgent, queued = await settle(store, [big, batch], waiting)

    assert urgent.state == lifecycle.RUNNING and urgent.placement.offer.endswith("/n")
    assert moved.state == lifecycle.RUNNING and moved.placement.offer.endswith("/m")
    assert "Preempted" in reasons(moved) and reasons(moved)[-1] == "Running"
    assert queued.state == lifecycle.QUEUED and "Preempted" in reasons(queued)
