"""Failover and repair through FLUIDOS on real API servers: a provider whose
peering is lost after the workload runs (its Allocation turns to Error), a pod
its provider failed, or its virtual node NotReady → the intent moves to another
provider, the failed one blocked; the workload deleted by hand → deployed again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.federation.fluidos import workload
from flare.v1 import intent_pb2
from tests.controlplane_fixtures import Running
from tests.federation.test_fluidos_allocation import cancel, create, get, leftovers, until_state
from tests.federation.world import World
from tests.harness.gpu_nodes import KWOK_ANNOTATION
from tests.intents import gpu_job

pytestmark = pytest.mark.k8s
FAILOVER_TARGET_SECONDS = 10.0


async def test_a_lost_provider_moves_its_intent_to_another(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    name = await create(fluidos_plane, gpu_job("failover", model="nvidia-a100", count=2))
    first = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    assert first.placement.provider == "provider-2"  # the cheapest

    fluidos_world.fake.lost.add("provider-2")
    lost_at = time.monotonic()
    try:
        while (await get(fluidos_plane, name)).placement.provider == "provider-2":
            assert time.monotonic() - lost_at < 60, "the intent never left provider-2"
            await asyncio.sleep(0.05)
        moved = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
        failover_seconds = time.monotonic() - lost_at
    finally:
        fluidos_world.fake.lost.clear()

    reasons = [t.reason for t in moved.history]
    failover = moved.history[reasons.index("Failover")]
    assert moved.name == first.name and moved.uid == first.uid
    assert moved.placement.provider == "provider-3"  # next cheapest; provider-2 is blocked
    assert failover.message.startswith("AllocationError: the allocation")
    assert "lost the peering with provider-2" in failover.message
    assert reasons[-1] == "Running" and "running again on provider-3" in moved.state_message
    # Detection (the check every 0.5 s) plus moving: the old namespace deleted, the new
    # reservation, allocation, offloading and pods.
    assert failover_seconds <= FAILOVER_TARGET_SECONDS, failover_seconds
    print(f"failover after the provider was lost: {failover_seconds:.2f} s")
    live = [p for p in pods(fluidos_world, name) if p.metadata.deletion_timestamp is None]
    assert [p.spec.node_name for p in live] == ["liqo-provider-3"]
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def test_a_workload_deleted_by_hand_comes_back(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    service = gpu_job("repaired", model="nvidia-a100", count=1)
    service.workload.type = intent_pb2.WORKLOAD_TYPE_SERVICE
    name = await create(fluidos_plane, service)
    await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    apps = client.AppsV1Api(fluidos_world.consumer)
    namespace = workload.resource_name(name)
    deployment: Any
    (deployment,) = apps.list_namespaced_deployment(namespace).items

    apps.delete_namespaced_deployment(deployment.metadata.name, namespace)
    deadline = time.monotonic() + 30
    while True:
        try:
            apps.read_namespaced_deployment(deployment.metadata.name, namespace)
            intent = await get(fluidos_plane, name)
            if "Repaired" in [t.reason for t in intent.history]:
                break
        except ApiException as error:
            assert error.status == 404
        assert time.monotonic() < deadline, "the deployment did not come back"
        await asyncio.sleep(0.1)

    repaired = next(t for t in intent.history if t.reason == "Repaired")
    assert f"Deployment {deployment.metadata.name} is gone" in repaired.message
    assert intent.state == intent_pb2.STATE_RUNNING
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def moved_from(plane: Running, name: str, provider: str) -> intent_pb2.Intent:
    deadline = time.monotonic() + 60
    while (await get(plane, name)).placement.provider == provider:
        assert time.monotonic() < deadline, f"the intent never left {provider}"
        await asyncio.sleep(0.05)
    return await until_state(plane, name, intent_pb2.STATE_RUNNING)


async def test_a_pod_its_provider_evicted_moves_the_intent(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    from kubernetes import client

    name = await create(fluidos_plane, gpu_job("evicted", model="nvidia-a100", count=1))
    first = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    (pod,) = pods(fluidos_world, name)
    client.CoreV1Api(fluidos_world.consumer).patch_namespaced_pod_status(
        pod.metadata.name,
        pod.metadata.namespace,
        {
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: ephemeral-storage.",
            }
        },
    )

    moved = await moved_from(fluidos_plane, name, first.placement.provider)
    failover = next(t for t in moved.history if t.reason == "Failover")
    assert failover.message.startswith(
        f"PodFailed: pod {pod.metadata.name} failed on {pod.spec.node_name}: Evicted: "
        "The node was low on resource"
    )
    assert moved.placement.provider != first.placement.provider
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


async def test_a_virtual_node_not_ready_for_long_moves_the_intent(
    fluidos_world: World, fluidos_plane: Running
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = await create(fluidos_plane, gpu_job("unready", model="nvidia-a100", count=1))
    first = await until_state(fluidos_plane, name, intent_pb2.STATE_RUNNING)
    node_name = f"liqo-{first.placement.provider}"
    core = client.CoreV1Api(fluidos_world.consumer)
    # What Liqo does when the peering's link is down: the virtual node NotReady (kwok
    # stops managing it first, so it does not mark it Ready again).
    core.patch_node(node_name, {"metadata": {"annotations": {KWOK_ANNOTATION[0]: None}}})
    since = (datetime.now(UTC) - timedelta(seconds=45)).isoformat()
    # A strategic merge patch: conditions merge by type, only Ready changes.
    not_ready = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastTransitionTime": since,
        "lastHeartbeatTime": since,
    }
    try:
        core.patch_node_status(node_name, {"status": {"conditions": [not_ready]}})
        moved = await moved_from(fluidos_plane, name, first.placement.provider)
    finally:
        # Back to kwok, unless the fake removed it with the last GPU held there.
        with contextlib.suppress(ApiException):
            annotations = {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]}
            core.patch_node(node_name, {"metadata": {"annotations": annotations}})
    failover = next(t for t in moved.history if t.reason == "Failover")
    assert failover.message.startswith(f"ProviderNotReady: node {node_name} has not been ready")
    assert "Kubelet stopped posting node status." in failover.message
    await cancel(fluidos_plane, name)
    assert leftovers(fluidos_world, name) == []


def pods(world: World, name: str) -> list[Any]:
    from tests.federation.test_fluidos_allocation import pods as pods_of

    return pods_of(world, name)
