"""The intent engine against the real SQLite store and local federation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane import engine as engine_module
from controlplane.clock import utc_now
from controlplane.engine import IntentEngine
from controlplane.federation.local import LocalFederation, offers_from_document
from controlplane.federation.port import Deployed
from controlplane.intents import lifecycle
from controlplane.store.sqlite import SqliteStore
from flare.v1 import intent_pb2
from tests.intents import gpu_job

ONE_NODE = {
    "providers": [
        {
            "name": "p",
            "region": "eu-west-1",
            "country": "IE",
            "currency": "EUR",
            "latency_ms": 10,
            "availability": 99.9,
            "nodes": [
                {"name": "n", "gpu_model": "nvidia-a100", "gpus": 4, "price_per_gpu_hour": 1}
            ],
        }
    ]
}


class GatedFederation(LocalFederation):
    """A fake federation: the local one, except that reserve waits for a gate,
    so a test can act while a reservation is in flight."""

    def __init__(self) -> None:
        super().__init__(offers_from_document(ONE_NODE))
        self.gate = asyncio.Event()
        self.reserving = asyncio.Event()

    async def reserve(self, intent: intent_pb2.Intent) -> str:
        self.reserving.set()
        await self.gate.wait()
        return await super().reserve(intent)


async def submit(store: SqliteStore, engine: IntentEngine, name: str, count: int) -> str:
    intent = gpu_job(name, count=count)
    intent.name = f"tenants/t/intents/{name}"
    stored, _ = await store.create(
        lifecycle.created(intent, now=utc_now()), tenant="t", request_id=""
    )
    engine.kick(stored.name)
    return stored.name


async def settle(
    store: SqliteStore, names: list[str], done: Callable[[int], bool]
) -> list[intent_pb2.Intent]:
    for _ in range(500):
        intents = [await store.get(n) for n in names]
        if all(i is not None and done(i.state) for i in intents):
            return [i for i in intents if i is not None]
        await asyncio.sleep(0.01)
    raise AssertionError([lifecycle.name(i.state) for i in intents if i])


async def test_a_cancel_during_a_reservation_leaks_nothing(store: SqliteStore) -> None:
    federation = GatedFederation()
    engine = IntentEngine(store, federation, workers=4)
    await engine.start()
    try:
        name = await submit(store, engine, "racer", 2)
        await asyncio.wait_for(federation.reserving.wait(), 5)

        def cancel(current: intent_pb2.Intent) -> intent_pb2.Intent | None:
            target = lifecycle.cancel_target(current.state)
            assert target == lifecycle.CANCELLING
            return lifecycle.transition(
                current, target, reason="Cancelled", message="", now=utc_now()
            )

        await store.update(name, cancel)
        engine.kick(name)
        # Time enough for an engine that let two workers at one intent to
        # finish the cancel before this reservation lands.
        await asyncio.sleep(0.2)
        federation.gate.set()
        (final,) = await settle(store, [name], lambda s: s == lifecycle.CANCELLED)
        assert federation.held_by(name) is None
        assert (await federation.offers()).gpus_free.tolist() == [4]
        assert "Running" not in [h.reason for h in final.history]
    finally:
        await engine.stop()


async def test_concurrent_placements_never_double_book(store: SqliteStore) -> None:
    federation = LocalFederation(offers_from_document(ONE_NODE))
    engine = IntentEngine(store, federation, workers=16)
    await engine.start()
    try:
        names = [await submit(store, engine, f"i{n}", 3) for n in range(20)]
        final = await settle(store, names, lambda s: s in (lifecycle.RUNNING, lifecycle.QUEUED))
        running = [i for i in final if i.state == lifecycle.RUNNING]
        assert len(running) == 1
        assert (await federation.offers()).gpus_free.tolist() == [1]
        # Cancel the holder: exactly one queued intent takes its place.
        await store.update(
            running[0].name,
            lambda i: lifecycle.transition(
                i, lifecycle.CANCELLING, reason="Cancelled", message="", now=utc_now()
            ),
        )
        engine.kick(running[0].name)
        rest = [n for n in names if n != running[0].name]
        await settle(store, [running[0].name], lambda s: s == lifecycle.CANCELLED)
        final = await settle(store, rest, lambda s: s in (lifecycle.RUNNING, lifecycle.QUEUED))
        assert sum(i.state == lifecycle.RUNNING for i in final) == 1
    finally:
        await engine.stop()


async def test_a_restart_resumes_live_intents_and_rebuilds_capacity(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db")
    first.open()
    federation = LocalFederation(offers_from_document(ONE_NODE))
    engine = IntentEngine(first, federation)
    await engine.start()
    held = await submit(first, engine, "held", 4)
    await settle(first, [held], lambda s: s == lifecycle.RUNNING)
    await engine.stop()
    pending = intent_pb2.Intent()
    pending.CopyFrom(gpu_job("later", count=1))
    pending.name = "tenants/t/intents/later"
    await first.create(lifecycle.created(pending, now=utc_now()), tenant="t", request_id="")
    first.close()

    second = SqliteStore(tmp_path / "db")
    second.open()
    try:
        restored = LocalFederation(offers_from_document(ONE_NODE))
        restored.restore(i for i in await second.live() if i.state in lifecycle.RESERVED)
        engine = IntentEngine(second, restored)
        await engine.start()
        (later,) = await settle(second, [pending.name], lambda s: s == lifecycle.QUEUED)
        assert {r.reason for r in later.last_plan.rejections} == {"capacity"}
        await engine.stop()
    finally:
        second.close()


async def test_intents_stopped_before_their_reserve_do_not_oversell_after_a_restart(
    store: SqliteStore,
) -> None:
    """Three 2-GPU intents placed on one 4-GPU node, all RESERVING when the engine
    stops, none holding yet (each planned before the others held: the reserve is what
    decides). After the restart only confirmed holds are restored, so the reserves run
    again, checked: two run, the third waits."""
    gated = GatedFederation()
    engine = IntentEngine(store, gated, workers=4)
    await engine.start()
    names = [await submit(store, engine, f"racer-{i}", 2) for i in range(3)]
    await settle(store, names, lambda s: s == lifecycle.RESERVING)
    await engine.stop()

    federation = LocalFederation(offers_from_document(ONE_NODE))
    federation.restore(i for i in await store.live() if i.state in lifecycle.RESERVED)
    engine = IntentEngine(store, federation, workers=4)
    await engine.start()
    try:
        final = await settle(store, names, lambda s: s in (lifecycle.RUNNING, lifecycle.QUEUED))
    finally:
        await engine.stop()
    assert sorted(lifecycle.name(i.state) for i in final) == ["QUEUED", "RUNNING", "RUNNING"]


async def test_a_gang_reserves_and_releases_every_node(store: SqliteStore) -> None:
    two_nodes = {
        "providers": [
            {
                **ONE_NODE["providers"][0],
                "nodes": [
                    {
                        "name": f"n{i}",
                        "gpu_model": "nvidia-a100",
                        "gpus": 4,
                        "price_per_gpu_hour": 1,
                    }
                    for i in range(2)
                ],
            }
        ]
    }
    federation = LocalFederation(offers_from_document(two_nodes))
    engine = IntentEngine(store, federation)
    await engine.start()
    try:
        name = await submit(store, engine, "gang", 6)
        (running,) = await settle(store, [name], lambda s: s == lifecycle.RUNNING)
        assert sorted((n.node, n.gpu_count) for n in running.placement.nodes) == [
            ("n0", 4),
            ("n1", 2),
        ]
        assert sorted((await federation.offers()).gpus_free.tolist()) == [0, 2]
        await store.update(
            name,
            lambda i: lifecycle.transition(
                i, lifecycle.CANCELLING, reason="Cancelled", message="", now=utc_now()
            ),
        )
        engine.kick(name)
        await settle(store, [name], lambda s: s == lifecycle.CANCELLED)
        assert (await federation.offers()).gpus_free.tolist() == [4, 4]
    finally:
        await engine.stop()


class FlakyFederation(LocalFederation):
    """A fake federation: the local one, except that its first `failures` deploys raise
    what a busy API server makes the kubernetes client raise (not a FlareError)."""

    def __init__(self, failures: int) -> None:
        super().__init__(offers_from_document(ONE_NODE))
        self.failures = failures
        self.deploys = 0

    async def deploy(self, intent: intent_pb2.Intent) -> Deployed:
        self.deploys += 1
        if self.deploys <= self.failures:
            raise ConnectionResetError("the API server went away mid-deploy")
        return await super().deploy(intent)


async def test_a_step_that_raised_is_taken_up_again_until_it_succeeds(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "RETRY_SECONDS", 0.01)
    federation = FlakyFederation(failures=3)
    engine = IntentEngine(store, federation)
    await engine.start()
    try:
        name = await submit(store, engine, "flaky", 2)
        (running,) = await settle(store, [name], lambda s: s == lifecycle.RUNNING)
    finally:
        await engine.stop()
    assert federation.deploys == 4
    assert federation.held_by(name) is not None
    failed = [t for t in running.history if t.reason == "StepFailed"]
    # Told once, on the first failure of the run, with what failed.
    assert len(failed) == 1
    assert "ConnectionResetError: the API server went away mid-deploy" in failed[0].message
    assert failed[0].to_state == lifecycle.DEPLOYING


async def test_retries_back_off_and_stop_with_the_engine(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "RETRY_SECONDS", 0.05)
    federation = FlakyFederation(failures=1_000)
    engine = IntentEngine(store, federation)
    await engine.start()
    name = await submit(store, engine, "down", 1)
    await asyncio.sleep(1.0)
    await engine.stop()
    tries = federation.deploys
    # 0.05 s doubling (halved at most by jitter): about five tries in a second, not dozens.
    assert 3 <= tries <= 8, tries
    await asyncio.sleep(0.5)
    assert federation.deploys == tries  # a stopped engine takes nothing up again
    intent = await store.get(name)
    assert intent is not None and intent.state == lifecycle.DEPLOYING
