"""A leader that stops at an exact step, and the leader after it, on the FLUIDOS world.

The state a stopped leader leaves is made as it would have left it (the store's records
and the consumer cluster's FLUIDOS objects), then a control plane starts on it as the new
leader does: it restores the holds the federation confirmed and takes up every live
intent. Each test names the step the old leader stopped at."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from controlplane.clock import utc_now
from controlplane.federation.fluidos import adapter, workload
from controlplane.intents import lifecycle
from controlplane.placement.offers import Offer
from flare.v1 import intent_pb2
from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.federation.service_account import as_service_account, remove_service_account
from tests.federation.test_fluidos_allocation import cancel, get, leftovers, until_state
from tests.federation.world import OFFERINGS, World
from tests.harness.waiting import wait_until
from tests.intents import gpu_job

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.fixture
def service_account(fluidos_world: World, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig of the control plane's ServiceAccount, with the RBAC of deploy/."""
    try:
        yield as_service_account(fluidos_world, tmp_path)
    finally:
        remove_service_account(fluidos_world)


@contextlib.asynccontextmanager
async def leader(data: Path, kubeconfig: Path) -> AsyncIterator[Running]:
    """A control plane on the consumer cluster as its ServiceAccount, its engine started,
    every offer seen. The periodic check of running intents is off: the records made here
    have no workloads, and it would move them."""
    settings = plane_settings(data, kubeconfig=kubeconfig, check_seconds=3600.0)
    async with serving(settings) as running:
        federation = running.plane.federation
        deadline = asyncio.get_running_loop().time() + 60
        while {o.provider for o in (await federation.offers()).offers} < set(OFFERINGS):
            assert asyncio.get_running_loop().time() < deadline, "discovery did not finish"
            await asyncio.sleep(0.1)
        yield running


def placed_on(offer: Offer, gpus: int) -> intent_pb2.Placement:
    placement = intent_pb2.Placement(
        offer=offer.name, provider=offer.provider, region=offer.region, gpu_model=offer.gpu_model
    )
    placement.nodes.add(node=offer.node, gpu_count=gpus, offer=offer.name)
    return placement


async def record(
    running: Running, name: str, gpus: int, steps: Sequence[tuple[int, str]], placement: Any = None
) -> intent_pb2.Intent:
    """An intent written to the store as a leader's steps would have left it, each
    transition in its history; the engine is not told (a stopped leader's work)."""
    store = running.plane.store
    intent = gpu_job(name.rsplit("/", 1)[-1], model="nvidia-a100", count=gpus)
    intent.name = name
    await store.create(lifecycle.created(intent, now=utc_now()), tenant="default", request_id="")

    def step(target: int, reason: str) -> Callable[[intent_pb2.Intent], intent_pb2.Intent]:
        def change(current: intent_pb2.Intent) -> intent_pb2.Intent:
            moved = lifecycle.transition(current, target, reason=reason, message="", now=utc_now())
            if placement is not None and target == lifecycle.RESERVING:
                moved.placement.CopyFrom(placement)
            return moved

        return change

    for target, reason in steps:
        await store.update(name, step(target, reason))
    stored = await store.get(name)
    assert stored is not None
    return stored


TO_RESERVING = [
    (lifecycle.PLANNING, "Planning"),
    (lifecycle.RESERVING, "Placed"),
]
TO_DEPLOYING = [*TO_RESERVING, (lifecycle.DEPLOYING, "Reserved")]
TO_RUNNING = [*TO_DEPLOYING, (lifecycle.RUNNING, "Running")]


def reserve_as_the_old_leader(
    world: World, running: Running, intent: intent_pb2.Intent, offer: Offer
) -> str:
    """The Reservation the old leader's reserve step made before it stopped, solved by
    FLUIDOS with a Contract; returns the Contract's name."""
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(world.consumer)
    federation = running.plane.fluidos
    assert federation is not None
    candidate = custom.get_namespaced_custom_object(
        "advertisement.fluidos.eu",
        "v1alpha1",
        "fluidos",
        "peeringcandidates",
        adapter._candidate_of(offer.name),
    )
    body = federation.reservation_of(intent, candidate)
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object(
        "reservation.fluidos.eu", "v1alpha1", "fluidos", "reservations", body
    )

    def contract() -> str:
        reservation = custom.get_namespaced_custom_object(
            "reservation.fluidos.eu", "v1alpha1", "fluidos", "reservations", name
        )
        return str(((reservation.get("status") or {}).get("contract") or {}).get("name", ""))

    return str(wait_until(contract, timeout=30, what=f"the reservation {name} solved"))


async def reserved_by_the_old_leader(
    world: World, running: Running, name: str
) -> tuple[intent_pb2.Intent, str]:
    """An intent of one GPU the old leader reserved on the cheapest provider and moved to
    DEPLOYING before it stopped; returns it and its Contract's name."""
    offers = (await running.plane.federation.offers()).offers
    cheapest = next(o for o in offers if o.provider == "provider-2")
    intent = await record(running, name, 1, TO_DEPLOYING, placed_on(cheapest, 1))
    return intent, reserve_as_the_old_leader(world, running, intent, cheapest)


async def test_a_leader_stopped_mid_reserve_leaves_nothing_held_by_an_intent_that_must_queue(
    fluidos_world: World, service_account: Path, tmp_path: Path
) -> None:
    """The old leader stopped in X's reserve step, after its Reservation was solved (a
    Contract bought) and before X was DEPLOYING. By the time the new leader takes X up
    the GPUs are held by running intents, so X's reserve is refused and X queues: what
    the old leader bought for it must be released, not left behind a queued intent."""
    from kubernetes import client

    data = tmp_path / "data"
    async with leader(data, service_account) as first:
        offers = (await first.plane.federation.offers()).offers
        by_provider = {o.provider: o for o in offers}
        holders = [
            await record(
                first,
                f"tenants/default/intents/holder-{p}",
                o.gpus_free,
                TO_RUNNING,
                placed_on(o, o.gpus_free),
            )
            for p, o in sorted(by_provider.items())
        ]
        assert sum(h.placement.nodes[0].gpu_count for h in holders) == 20
        nearest = by_provider["provider-3"]
        stopped = await record(
            first, "tenants/default/intents/stopped", 1, TO_RESERVING, placed_on(nearest, 1)
        )
        contract = reserve_as_the_old_leader(fluidos_world, first, stopped, nearest)
    # The new leader: the holders' GPUs are restored as held, the stopped intent taken up.
    async with leader(data, service_account) as second:
        queued = await until_state(second, stopped.name, intent_pb2.STATE_QUEUED, timeout=60)
        assert [t.reason for t in queued.history][-2:] == ["ReservationFailed", "NoMatchingOffer"]
        await asyncio.sleep(1.0)  # a release still under way would show now
        assert leftovers(fluidos_world, stopped.name) == []
        custom: Any = client.CustomObjectsApi(fluidos_world.consumer)
        contracts = custom.list_namespaced_custom_object(
            "reservation.fluidos.eu", "v1alpha1", "fluidos", "contracts"
        )["items"]
        assert contract not in {c["metadata"]["name"] for c in contracts}
        for holder in holders:
            assert (await get(second, holder.name)).state == intent_pb2.STATE_RUNNING


async def test_a_step_that_fails_on_the_new_leader_is_taken_up_again(
    fluidos_world: World, service_account: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old leader stopped with X DEPLOYING (reserved, its Contract bought). The new
    leader's first attempt at X's deploy meets the API server failing a request (a 500,
    as under load): the intent must not stay DEPLOYING; its deploy is tried again."""
    from kubernetes.client.exceptions import ApiException

    data = tmp_path / "data"
    async with leader(data, service_account) as first:
        reserving, _ = await reserved_by_the_old_leader(
            fluidos_world, first, "tenants/default/intents/deploying"
        )

    failures: list[str] = []
    real_apply = adapter.FluidosFederation._apply_core

    async def failing_once(self: adapter.FluidosFederation, manifest: dict[str, Any]) -> None:
        if not failures:
            failures.append(manifest["kind"])
            raise ApiException(status=500, reason="etcdserver: request timed out")
        await real_apply(self, manifest)

    monkeypatch.setattr(adapter.FluidosFederation, "_apply_core", failing_once)
    async with leader(data, service_account) as second:
        running = await until_state(second, reserving.name, intent_pb2.STATE_RUNNING, timeout=90)
        assert failures == ["Namespace"]
        told = [t for t in running.history if t.reason == "StepFailed"]
        assert len(told) == 1 and "etcdserver: request timed out" in told[0].message
        await cancel(second, running.name)
    assert leftovers(fluidos_world, reserving.name) == []


async def test_a_leader_stopped_mid_deploy_after_its_allocation_is_followed_through(
    fluidos_world: World, service_account: Path, tmp_path: Path
) -> None:
    """The old leader stopped in X's deploy step after it had made the Allocation of X's
    Contract (FLUIDOS has made it Active). The new leader's deploy finds the Allocation
    there and reads it to see whose it is: X runs, on the provider it was reserved on."""
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(fluidos_world.consumer)
    data = tmp_path / "data"
    async with leader(data, service_account) as first:
        reserving, contract = await reserved_by_the_old_leader(
            fluidos_world, first, "tenants/default/intents/allocated"
        )
        name = workload.resource_name(reserving.name)
        custom.create_namespaced_custom_object(
            "nodecore.fluidos.eu",
            "v1alpha1",
            "fluidos",
            "allocations",
            {
                "apiVersion": "nodecore.fluidos.eu/v1alpha1",
                "kind": "Allocation",
                "metadata": {"name": name},
                "spec": {"contract": {"name": contract, "namespace": "fluidos"}},
            },
        )

        def active() -> bool:
            allocation = custom.get_namespaced_custom_object(
                "nodecore.fluidos.eu", "v1alpha1", "fluidos", "allocations", name
            )
            return bool((allocation.get("status") or {}).get("status") == "Active")

        wait_until(active, timeout=30, what=f"the allocation {name} active")
    async with leader(data, service_account) as second:
        running = await until_state(second, reserving.name, intent_pb2.STATE_RUNNING, timeout=90)
        assert running.placement.provider == "provider-2"
        assert [t for t in running.history if t.reason == "StepFailed"] == []
        await cancel(second, running.name)
    assert leftovers(fluidos_world, reserving.name) == []
