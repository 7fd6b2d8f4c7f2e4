"""Leader election on a real coordination.k8s.io Lease: one leader at a time, a
follower takes over when the leader dies, at once when it steps down, and a
leader that loses the Lease knows it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from controlplane.cluster.lease import LeaderElection, LeadershipLost, Timing

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s
FAST = Timing(lease_seconds=3.0, renew_seconds=2.0, retry_seconds=0.25)

Elect = Callable[[str], tuple[LeaderElection, asyncio.Task[None], asyncio.Event]]


@pytest.fixture
async def elect(api: ApiClient, namespace: str) -> AsyncIterator[Elect]:
    tasks: list[asyncio.Task[None]] = []

    def start(identity: str) -> tuple[LeaderElection, asyncio.Task[None], asyncio.Event]:
        election = LeaderElection(api, namespace, "flare-controlplane", identity, timing=FAST)
        leading = asyncio.Event()

        async def lead() -> None:
            leading.set()

        task = asyncio.create_task(election.run(lead))
        tasks.append(task)
        return election, task, leading

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await task


def holder(api: ApiClient, namespace: str) -> str:
    from kubernetes import client

    lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(
        "flare-controlplane", namespace
    )
    return str(lease.spec.holder_identity or "")


async def test_one_leader_and_a_takeover_when_it_dies(
    elect: Elect, api: ApiClient, namespace: str
) -> None:
    first, first_task, first_leads = elect("replica-a")
    await asyncio.wait_for(first_leads.wait(), 10)
    second, _, second_leads = elect("replica-b")
    await asyncio.sleep(FAST.lease_seconds * 1.5)  # well past a lease: renewals keep it

    assert first.leading and not second.leading and not second_leads.is_set()
    assert holder(api, namespace) == "replica-a"

    first_task.cancel()  # dies without handing the Lease back, like kill -9
    died = time.monotonic()
    await asyncio.wait_for(second_leads.wait(), 15)
    takeover = time.monotonic() - died

    assert holder(api, namespace) == "replica-b"
    assert FAST.lease_seconds * 0.9 <= takeover <= FAST.lease_seconds + 2 * FAST.retry_seconds + 1


async def test_a_leader_that_steps_down_hands_over_at_once(
    elect: Elect, api: ApiClient, namespace: str
) -> None:
    first, first_task, first_leads = elect("replica-a")
    await asyncio.wait_for(first_leads.wait(), 10)
    _, _, second_leads = elect("replica-b")
    await asyncio.sleep(FAST.retry_seconds * 2)

    first_task.cancel()
    await first.release()
    released = time.monotonic()
    await asyncio.wait_for(second_leads.wait(), 10)

    assert time.monotonic() - released < FAST.lease_seconds / 2
    assert holder(api, namespace) == "replica-b"


async def test_a_leader_whose_lease_was_taken_stops_leading(
    elect: Elect, api: ApiClient, namespace: str
) -> None:
    from kubernetes import client

    first, first_task, first_leads = elect("replica-a")
    await asyncio.wait_for(first_leads.wait(), 10)
    leases = client.CoordinationV1Api(api)
    lease: Any = leases.read_namespaced_lease("flare-controlplane", namespace)
    lease.spec.holder_identity = "usurper"
    leases.replace_namespaced_lease("flare-controlplane", namespace, lease)

    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(first_task, FAST.renew_seconds + 5)
    assert not first.leading


async def test_a_leader_renews_in_time_while_every_shared_thread_is_busy(
    elect: Elect, api: ApiClient, namespace: str
) -> None:
    """Slow work the leader runs on threads (long watches, blocking calls) takes every
    thread of the event loop's default pool: the Lease, on a thread of its own, is
    renewed on time all the same, so no follower takes over a leader that still works."""
    from kubernetes import client

    first, _, first_leads = elect("replica-a")
    await asyncio.wait_for(first_leads.wait(), 10)
    busy = [asyncio.to_thread(time.sleep, FAST.lease_seconds * 2) for _ in range(64)]
    blocked = asyncio.gather(*busy)
    leases = client.CoordinationV1Api(api)
    renewals: list[float] = []
    deadline = time.monotonic() + FAST.lease_seconds * 2
    while time.monotonic() < deadline:
        lease: Any = leases.read_namespaced_lease("flare-controlplane", namespace)
        renewed = lease.spec.renew_time.timestamp()
        if not renewals or renewed != renewals[-1]:
            renewals.append(renewed)
        await asyncio.sleep(FAST.retry_seconds / 2)
    await blocked

    assert first.leading and holder(api, namespace) == "replica-a"
    gaps = [later - earlier for earlier, later in itertools.pairwise(renewals)]
    assert len(renewals) >= 4 and max(gaps) < FAST.renew_seconds, renewals


def test_timing_must_leave_room_to_renew() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        Timing(lease_seconds=3, renew_seconds=3, retry_seconds=1)
