"""The cluster-mode store against a real kube-apiserver: intents and tokens as
FlareIntent and FlareToken objects, shared by replicas (two stores on one
namespace stand for two control-plane replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from controlplane import auth
from controlplane.cluster import resources
from controlplane.errors import AlreadyExists, NotFound, OutOfRange
from controlplane.intents import lifecycle
from controlplane.store.base import IntentEvent
from controlplane.store.kubernetes import KubernetesStore
from flare.v1 import intent_pb2
from tests.intents import SEED_INFERENCE, gpu_job, intent_from

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

Replica = Callable[[], Awaitable[KubernetesStore]]


@pytest.fixture
async def replica(api: ApiClient, namespace: str) -> AsyncIterator[Replica]:
    started: list[KubernetesStore] = []

    async def start() -> KubernetesStore:
        store = KubernetesStore(api, namespace)
        await store.start()
        started.append(store)
        return store

    yield start
    for store in started:
        store.close()


def new_intent(intent_id: str, tenant: str = "acme", *, request_id: str = "") -> intent_pb2.Intent:
    intent = gpu_job(intent_id)
    intent.name = f"tenants/{tenant}/intents/{intent_id}"
    intent.uid = f"uid-{intent_id}"
    intent.request_id = request_id
    return lifecycle.created(intent, now=NOW)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def planned(intent: intent_pb2.Intent) -> intent_pb2.Intent:
    return lifecycle.transition(
        intent, lifecycle.PLANNING, reason="Planning", message="choosing", now=NOW
    )


async def test_every_field_of_an_intent_survives_the_api_server(replica: Replica) -> None:
    """The CRD's schema is built from the protos: nothing is pruned on the way."""
    store = await replica()
    intent = intent_from(SEED_INFERENCE)
    intent.name = "tenants/acme/intents/inference"
    intent.uid = "8d3c"
    intent.request_id = "req-1"
    intent = lifecycle.created(intent, now=NOW)
    intent = lifecycle.transition(
        intent, lifecycle.PLANNING, reason="Planning", message="choosing", now=NOW
    )
    intent.placement.provider = "provider-2"
    intent.placement.gpu_model = "nvidia-a100"
    node = intent.placement.nodes.add()
    node.gpu_count = 1
    intent.endpoint = "https://llm-api.mycompany.com"

    stored, created = await store.create(intent, tenant="acme", request_id="req-1")
    read = await store.get(intent.name)

    assert created and read is not None
    assert read == stored
    expected = intent_pb2.Intent()
    expected.CopyFrom(intent)
    resources.stamped(expected, stored.revision)
    assert read == expected
    assert stored.revision > 0 and all(t.revision == stored.revision for t in read.history)


async def test_history_revisions_are_those_of_the_writes_that_made_them(
    replica: Replica,
) -> None:
    store = await replica()
    created, _ = await store.create(new_intent("job-1"), tenant="acme", request_id="")
    moved = await store.update(created.name, planned)
    later = await store.update(
        created.name,
        lambda i: lifecycle.transition(
            i, lifecycle.QUEUED, reason="NoMatchingOffer", message="none", now=NOW
        ),
    )

    assert [t.revision for t in later.history] == [
        created.revision,
        moved.revision,
        later.revision,
    ]
    assert created.revision < moved.revision < later.revision


async def test_concurrent_updates_from_two_replicas_lose_nothing(replica: Replica) -> None:
    """Optimistic concurrency on resourceVersion: a conflict re-reads and re-applies."""
    first, second = await replica(), await replica()
    created, _ = await first.create(new_intent("job-2"), tenant="acme", request_id="")

    def note(index: int) -> Callable[[intent_pb2.Intent], intent_pb2.Intent]:
        return lambda i: lifecycle.noted(i, reason="Note", message=str(index), now=NOW)

    await asyncio.gather(
        *((first if index % 2 else second).update(created.name, note(index)) for index in range(24))
    )
    final = await first.get(created.name)

    assert final is not None
    assert sorted(int(t.message) for t in final.history if t.reason == "Note") == list(range(24))
    assert len({t.revision for t in final.history}) == 25


async def test_a_retried_create_on_another_replica_returns_the_first(replica: Replica) -> None:
    first, second = await replica(), await replica()
    intent = new_intent("job-3", request_id="r-3")

    stored, created = await first.create(intent, tenant="acme", request_id="r-3")
    again, created_again = await second.create(intent, tenant="acme", request_id="r-3")

    assert created and not created_again
    assert again.uid == stored.uid and again.name == stored.name
    with pytest.raises(AlreadyExists):
        await second.create(new_intent("job-3"), tenant="acme", request_id="")


async def test_updating_an_unknown_intent_is_not_found(replica: Replica) -> None:
    store = await replica()
    with pytest.raises(NotFound):
        await store.update("tenants/acme/intents/nothing", planned)
    assert await store.get("tenants/acme/intents/nothing") is None


async def test_a_replica_sees_the_other_replicas_changes_in_revision_order(
    replica: Replica,
) -> None:
    first, second = await replica(), await replica()
    subscription = second.subscribe()
    seen: list[IntentEvent] = []

    async def collect(count: int) -> None:
        while len(seen) < count:
            event = await subscription.next()
            assert event is not None
            seen.append(event)

    created, _ = await first.create(new_intent("job-4"), tenant="acme", request_id="")
    other, _ = await first.create(new_intent("job-5", "globex"), tenant="globex", request_id="")
    moved = await first.update(created.name, planned)
    await asyncio.wait_for(collect(3), 10)
    subscription.close()

    assert [e.revision for e in seen] == [created.revision, other.revision, moved.revision]
    assert seen[2].intent == moved
    assert second.revision >= moved.revision
    assert [e.revision for e in await second.events_since(created.revision, tenant="acme")] == [
        moved.revision
    ]
    assert [
        e.intent.name for e in await second.events_since(created.revision, tenant="globex")
    ] == [other.name]
    assert await second.events_since(moved.revision, tenant="acme", name=created.name) == []


async def test_a_revision_older_than_the_replicas_log_is_out_of_range(
    replica: Replica,
) -> None:
    first = await replica()
    created, _ = await first.create(new_intent("job-6"), tenant="acme", request_id="")
    late = await replica()  # started after the create: its log begins later

    with pytest.raises(OutOfRange, match="Watch again from revision 0"):
        await late.events_since(created.revision - 1, tenant="acme")


async def test_lists_are_per_tenant_newest_first_and_page_through(replica: Replica) -> None:
    store = await replica()
    for index in range(5):
        intent = new_intent(f"job-l{index}")
        intent.create_time.FromDatetime(NOW + timedelta(seconds=index))
        await store.create(intent, tenant="acme", request_id="")
    await store.create(new_intent("job-g", "globex"), tenant="globex", request_id="")
    other = await replica()  # a replica that learned them from its informer alone

    pages, cursor = [], None
    while True:
        page = await other.list_intents(tenant="acme", states=[], limit=2, cursor=cursor)
        pages.append([i.name.rsplit("/", 1)[1] for i in page.intents])
        cursor = page.next_cursor
        if cursor is None:
            break

    assert pages == [["job-l4", "job-l3"], ["job-l2", "job-l1"], ["job-l0"]]
    queued = await other.list_intents(
        tenant="acme", states=[lifecycle.QUEUED], limit=10, cursor=None
    )
    assert queued.intents == []
    assert {i.name for i in await other.live()} >= {"tenants/globex/intents/job-g"}


async def test_tokens_are_kept_as_hashes_and_revoked_once(replica: Replica) -> None:
    store = await replica()
    token, secret = await auth.create_token(
        store,
        tenant="acme",
        display_name="ci",
        scopes=[auth.INTENTS_READ],
        ttl=timedelta(hours=1),
        creator="tests",
        now=NOW,
        token_id="ci",
    )
    authenticator = auth.Authenticator(store, clock=lambda: NOW)

    principal = await authenticator.authenticate(f"Bearer {secret}")
    revoked = await store.revoke_token(token.name, 1_800_000_000)
    again = await store.revoke_token(token.name, 1_900_000_000)
    listed = await store.tokens(tenant="acme", limit=10, cursor="")

    assert principal.tenant == "acme" and principal.scopes == {auth.INTENTS_READ}
    assert revoked is not None and again is not None
    assert again.token.revoke_time.seconds == 1_800_000_000
    assert [r.token.name for r in listed] == [token.name]
    assert listed[0].secret_hash == auth.hash_secret(secret)
    assert secret not in str(listed[0].token)
    with pytest.raises(AlreadyExists):
        await store.add_token(listed[0])


async def test_ended_since_gives_the_intents_that_ended_from_then(replica: Replica) -> None:
    store = await replica()
    for name, hour in (("early", 10), ("late", 14), ("live", 0)):
        await store.create(new_intent(name), tenant="acme", request_id="")
        if hour:
            at = NOW.replace(hour=hour)

            def cancel(intent: intent_pb2.Intent, at: datetime = at) -> intent_pb2.Intent:
                return lifecycle.transition(
                    intent, lifecycle.CANCELLED, reason="C", message="", now=at
                )

            await store.update(f"tenants/acme/intents/{name}", cancel)
    await until(lambda: len(store._cache) >= 3)
    ended = await store.ended_since(NOW.replace(hour=12))
    assert [i.name for i in ended] == ["tenants/acme/intents/late"]


async def test_state_is_kept_in_a_configmap_and_replaced(replica: Replica) -> None:
    store = await replica()
    assert await store.load_state("webhooks") is None
    await store.save_state("webhooks", b'{"watermark": 1}')
    await store.save_state("webhooks", b'{"watermark": 2}')
    again = await replica()  # another replica, the next leader, reads it
    assert await again.load_state("webhooks") == b'{"watermark": 2}'
