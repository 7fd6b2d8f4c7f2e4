"""GPUs claimed the DRA way on real API servers: where the consumer cluster, which
schedules the workload's pods, has NVIDIA's DeviceClass and a ResourceSlice of the
provider's virtual node, FLARE deploys a ResourceClaimTemplate instead of GPU limits; the
real kube-scheduler allocates each claim only GPUs its selector fits; a claim that fits no
free GPU leaves its pod pending, which FLARE reports; cancel takes the claims away and frees
their GPUs for the next."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.federation.fluidos import workload
from flare.v1 import intent_pb2
from tests.controlplane_fixtures import Running
from tests.federation.test_fluidos_allocation import cancel, create, get, pods, until_state
from tests.federation.world import World
from tests.harness import dra as published
from tests.intents import gpu_job

pytestmark = pytest.mark.k8s

VIRTUAL_NODE = "liqo-provider-2"  # the cheapest A100s: where cost-minimising intents go
BIG = [published.PublishedGpu(f"GPU-80-{i}", "NVIDIA A100-SXM4-80GB", "80Gi") for i in range(4)]
SMALL = [published.PublishedGpu(f"GPU-40-{i}", "NVIDIA A100-SXM4-40GB", "40Gi") for i in range(4)]
BIG_DEVICES = {f"gpu-{i}" for i in range(len(BIG))}  # the slice names devices in order


@pytest.fixture
def dra_consumer(fluidos_world: World) -> Iterator[None]:
    """NVIDIA's DeviceClass in the consumer cluster and the GPUs of provider-2's virtual
    node published for it: four 80 GB A100s, then four 40 GB ones."""
    objects = [published.device_class(), published.resource_slice(VIRTUAL_NODE, BIG + SMALL)]
    for manifest in objects:
        published.create(fluidos_world.consumer, manifest)
    yield
    for manifest in reversed(objects):
        published.delete(fluidos_world.consumer, manifest)


def big_a100s(name: str, count: int) -> intent_pb2.Intent:
    intent = gpu_job(name, model="nvidia-a100", count=count)
    intent.workload.resources.gpu.memory_min = "80Gi"
    return intent


def intent_claims(world: World, name: str) -> list[dict[str, Any]]:
    _, intent_id = workload.ids(name)
    return published.claims(world.consumer, f"{workload.INTENT_LABEL}={intent_id}")


async def until_told(
    plane: Running, name: str, reason: str, containing: str, timeout: float = 60
) -> intent_pb2.StateTransition:
    """The history entry `reason` whose message contains `containing` (the scheduler may
    first say something else: that the pod's claim is not made yet)."""
    deadline = time.monotonic() + timeout
    while True:
        intent = await get(plane, name)
        found = [t for t in intent.history if t.reason == reason and containing in t.message]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, [(t.reason, t.message) for t in intent.history]
        await asyncio.sleep(0.2)


async def test_claims_get_only_fitting_gpus_an_over_ask_waits_reported_and_cancel_frees(
    fluidos_world: World, fluidos_plane: Running, dra_consumer: None
) -> None:
    first = await create(fluidos_plane, big_a100s("first", 4))
    running = await until_state(fluidos_plane, first, intent_pb2.STATE_RUNNING)
    assert running.placement.provider == "provider-2"
    access = running.gpu_access
    assert access.method == intent_pb2.GPU_ACCESS_METHOD_RESOURCE_CLAIM
    assert (access.device_class, access.gpus_per_pod) == ("gpu.nvidia.com", 4)
    assert "NVIDIA A100-SXM4-40GB" in access.selectors[1]  # both A100s are the model...
    assert 'quantity("77824Mi")' in access.selectors[2]  # ...but only 80 GB ones fit
    said = next(t for t in running.history if t.reason == "GpuAccess")
    assert f"claimed through DRA from ResourceClaimTemplate {access.claim_template}" in said.message
    [pod] = [p for p in pods(fluidos_world, first) if p.status.phase == "Running"]
    assert pod.spec.node_name == VIRTUAL_NODE
    assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})
    [claim] = intent_claims(fluidos_world, first)
    assert set(published.allocated_devices(claim)) == BIG_DEVICES  # never a 40 GB one

    # provider-2 still sells four GPUs (its Flavor counts eight), but no 80 GB one is free.
    second = await create(fluidos_plane, big_a100s("second", 2))
    pending = await until_told(fluidos_plane, second, "PodsPending", "cannot allocate all claims")
    assert pending.message.startswith("pod second-"), pending.message
    waiting = await get(fluidos_plane, second)
    assert waiting.state == intent_pb2.STATE_DEPLOYING
    assert waiting.placement.provider == "provider-2"
    assert [p.spec.node_name for p in pods(fluidos_world, second)] == [None]
    [unallocated] = intent_claims(fluidos_world, second)
    assert published.allocated_devices(unallocated) == []

    # Cancelling the first takes its claim away; the scheduler gives its GPUs to the second.
    await cancel(fluidos_plane, first)
    assert intent_claims(fluidos_world, first) == []
    moved_on = await until_state(fluidos_plane, second, intent_pb2.STATE_RUNNING)
    assert moved_on.placement.provider == "provider-2"
    [claim] = intent_claims(fluidos_world, second)
    assert len(published.allocated_devices(claim)) == 2
    assert set(published.allocated_devices(claim)) <= BIG_DEVICES
    await cancel(fluidos_plane, second)
    assert intent_claims(fluidos_world, second) == []
