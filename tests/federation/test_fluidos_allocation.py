"""From a placed intent to a running GPU workload through FLUIDOS, on real API
servers: FLARE's choice by objective (not the first candidate) reserved,
contracted and allocated; the pods scheduled by the real kube-scheduler on the
provider's virtual node with their GPU limits; a request that fits nowhere
queued; a refused reservation planned again elsewhere; cancel leaving nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from controlplane.federation.fluidos import workload
from flare.v1 import intent_pb2, intent_service_pb2
from tests.controlplane_fixtures import Running
from tests.federation.world import World
from tests.harness.waiting import wait_until
from tests.intents import SEED_INFERENCE, SEED_TRAINING, gpu_job, intent_from

pytestmark = pytest.mark.k8s

FLUIDOS_KINDS = (
    ("nodecore.fluidos.eu", "solvers"),
    ("reservation.fluidos.eu", "reservations"),
    ("reservation.fluidos.eu", "contracts"),
    ("nodecore.fluidos.eu", "allocations"),
)


async def create(plane: Running, intent: intent_pb2.Intent) -> str:
    reply = await plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=intent), metadata=plane.metadata()
    )
    return reply.intent.name


async def get(plane: Running, name: str) -> intent_pb2.Intent:
    reply = await plane.intents.GetIntent(
        intent_service_pb2.GetIntentRequest(name=name), metadata=plane.metadata()
    )
    return reply.intent


async def until_state(
    plane: Running, name: str, *states: int, timeout: float = 120
) -> intent_pb2.Intent:
    deadline = time.monotonic() + timeout
    while True:
        intent = await get(plane, name)
        if intent.state in states:
            return intent
        assert time.monotonic() < deadline, (
            f"{name} is {intent_pb2.State.Name(intent.state)}: {intent.state_message}; "
            + "; ".join(f"{t.reason}: {t.message}" for t in intent.history[-5:])
        )
        await asyncio.sleep(0.2)


async def cancel(plane: Running, name: str) -> None:
    await plane.intents.CancelIntent(
        intent_service_pb2.CancelIntentRequest(name=name), metadata=plane.metadata()
    )
    await until_state(plane, name, intent_pb2.STATE_CANCELLED)


def pods(world: World, name: str) -> list[Any]:
    from kubernetes import client

    listed = client.CoreV1Api(world.consumer).list_namespaced_pod(workload.resource_name(name))
    return list(listed.items)


def leftovers(world: World, name: str) -> list[str]:
    """Every object of the intent that still exists, by kind."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    resource = workload.resource_name(name)
    custom: Any = client.CustomObjectsApi(world.consumer)
    found = []
    for group, plural in FLUIDOS_KINDS:
        for item in custom.list_namespaced_custom_object(group, "v1alpha1", "fluidos", plural)[
            "items"
        ]:
            if resource in item["metadata"]["name"]:
                found.append(f"{plural}/{item['metadata']['name']}")
    try:
        client.CoreV1Api(world.consumer).read_namespace(resource)
        found.append(f"namespaces/{resource}")
    except ApiException as error:
        assert error.status == 404
    offloadings = custom.list_cluster_custom_object(
        "offloading.liqo.io", "v1beta1", "namespaceoffloadings"
    )["items"]
    found += [
        f"namespaceoffloadings/{o['metadata']['namespace']}"
        for o in offloadings
        if o["metadata"]["namespace"] == resource
    ]
    return found


async def test_the_seeds_intents_run_where_their_objectives_say(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    training = await create(fluidos_plane, intent_from(SEED_TRAINING))
    inference = await create(fluidos_plane, intent_from(SEED_INFERENCE))
    placed_training = await until_state(fluidos_plane, training, intent_pb2.STATE_RUNNING)
    placed_inference = await until_state(fluidos_plane, inference, intent_pb2.STATE_RUNNING)
    # Cheapest A100s: provider-2 (the first candidate, provider-1, costs 2.00).
    assert placed_training.placement.provider == "provider-2"
    # Nearest: provider-3 (5 ms).
    assert placed_inference.placement.provider == "provider-3"
    assert placed_inference.endpoint == "https://llm-api.mycompany.com"
    reasons = [change.reason for change in placed_training.history]
    assert reasons[-6:] == [
        "Placed",
        "Reserved",
        "AllocationActive",
        "Offloaded",
        "GpuAccess",
        "Running",
    ]
    # No DeviceClass in the consumer cluster: the pods set GPU limits, and the intent says so.
    access = placed_training.gpu_access
    assert access.method == intent_pb2.GPU_ACCESS_METHOD_DEVICE_PLUGIN
    assert (access.resource, access.gpus_per_pod) == ("nvidia.com/gpu", 4)
    assert access.reason == "no DeviceClass selects gpu.nvidia.com devices"
    reserved = next(c for c in placed_training.history if c.reason == "Reserved")
    assert "contract contract-" in reserved.message and "peeringcandidate-" in reserved.message
    for name, provider, gpus in ((training, "provider-2", "4"), (inference, "provider-3", "1")):
        [pod] = [p for p in pods(fluidos_world, name) if p.status.phase == "Running"]
        assert pod.spec.node_name == f"liqo-{provider}"  # placed by the real scheduler
        limits = pod.spec.containers[0].resources.limits
        assert limits["nvidia.com/gpu"] == gpus  # the GPU limits the earlier FLARE forgot
    for name in (training, inference):
        await cancel(fluidos_plane, name)
        assert leftovers(fluidos_world, name) == []


async def test_a_request_that_fits_nowhere_stays_queued(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    name = await create(fluidos_plane, gpu_job("too-big", model="nvidia-a100", count=16))
    queued = await until_state(fluidos_plane, name, intent_pb2.STATE_QUEUED)
    assert "no offer fits" in queued.state_message
    await asyncio.sleep(1)
    assert (await get(fluidos_plane, name)).state == intent_pb2.STATE_QUEUED
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def test_a_refused_reservation_plans_again_on_the_next_candidate(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    fluidos_world.fake.refusing.add("provider-2")
    try:
        name = await create(fluidos_plane, gpu_job("refused", model="nvidia-a100", count=2))
        running = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    finally:
        fluidos_world.fake.refusing.clear()
    assert running.placement.provider == "provider-3"  # the next cheapest
    reasons = [change.reason for change in running.history]
    assert "ReservationFailed" in reasons
    failed = next(c for c in running.history if c.reason == "ReservationFailed")
    assert "refused" in failed.message
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def test_a_failed_peering_releases_everything_and_plans_again(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    fluidos_world.fake.unpeerable.add("provider-2")
    try:
        name = await create(fluidos_plane, gpu_job("unpeered", model="nvidia-a100", count=2))
        running = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    finally:
        fluidos_world.fake.unpeerable.clear()
    assert running.placement.provider == "provider-3"
    failed = next(c for c in running.history if c.reason == "DeployFailed")
    assert "peering with provider-2 failed" in failed.message
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def test_a_stale_reservation_under_the_intents_name_is_replaced(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    """A Reservation for another candidate left under the name the intent's objects
    take (an earlier intent of the same request, a restore): FLARE deletes it and
    its Contract and reserves its own choice."""
    from kubernetes import client

    from controlplane.api.intents import generated_id

    name = f"tenants/default/intents/{generated_id('stale', 'default', 'stale-1')}"
    resource = workload.resource_name(name)
    custom: Any = client.CustomObjectsApi(fluidos_world.consumer)
    candidates = custom.list_namespaced_custom_object(
        "advertisement.fluidos.eu", "v1alpha1", "fluidos", "peeringcandidates"
    )["items"]
    elsewhere = next(c for c in candidates if "provider-3" in json.dumps(c["spec"]["flavor"]))
    custom.create_namespaced_custom_object(
        "reservation.fluidos.eu",
        "v1alpha1",
        "fluidos",
        "reservations",
        {
            "apiVersion": "reservation.fluidos.eu/v1alpha1",
            "kind": "Reservation",
            "metadata": {"name": resource},
            "spec": {
                "solverID": resource,
                "buyer": {"nodeID": "someone-else", "domain": "old.example", "ip": ""},
                "seller": elsewhere["spec"]["flavor"]["spec"]["owner"],
                "peeringCandidate": {"name": elsewhere["metadata"]["name"], "namespace": "fluidos"},
                "reserve": True,
                "purchase": True,
            },
        },
    )

    def stale_contract() -> str:
        reservation = custom.get_namespaced_custom_object(
            "reservation.fluidos.eu", "v1alpha1", "fluidos", "reservations", resource
        )
        return str(((reservation.get("status") or {}).get("contract") or {}).get("name", ""))

    old_contract = wait_until(stale_contract, timeout=30, what="the stale reservation solved")

    reply = await fluidos_plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(
            intent=gpu_job("stale", model="nvidia-a100", count=1), request_id="stale-1"
        ),
        metadata=fluidos_plane.metadata(),
    )
    assert reply.intent.name == name
    running = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)

    assert running.placement.provider == "provider-2"  # its own choice, the cheapest
    assert [p.spec.node_name for p in pods(fluidos_world, name)] == ["liqo-provider-2"]
    contracts = custom.list_namespaced_custom_object(
        "reservation.fluidos.eu", "v1alpha1", "fluidos", "contracts"
    )["items"]
    assert old_contract not in {c["metadata"]["name"] for c in contracts}
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


def test_flare_keeps_a_discovery_solver_for_the_candidates(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(fluidos_world.consumer)
    solver = custom.get_namespaced_custom_object(
        "nodecore.fluidos.eu", "v1alpha1", "fluidos", "solvers", "flare-discovery"
    )
    assert solver["spec"]["findCandidate"] is True
    assert solver["spec"]["reserveAndBuy"] is False
    assert solver["status"]["findCandidate"] == "Solved"


def test_the_control_plane_command_runs_against_the_consumer_cluster(
    fluidos_world: World, tmp_path: Path
) -> None:
    import grpc

    from flare.v1 import offer_service_pb2, offer_service_pb2_grpc
    from tests.controlplane_process import running

    kubeconfig = str(fluidos_world.federation.consumer.kubeconfig)
    with (
        running(tmp_path / "cp", "--kubeconfig", kubeconfig) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        reply = offer_service_pb2_grpc.OfferServiceStub(channel).ListOffers(
            offer_service_pb2.ListOffersRequest(),
            metadata=(("authorization", f"Bearer {server.admin_token}"),),
            timeout=30,
        )
    assert {o.provider for o in reply.offers} == {"provider-1", "provider-2", "provider-3"}
    assert all(
        o.name.startswith(f"providers/{o.provider}/offers/peeringcandidate-") for o in reply.offers
    )
