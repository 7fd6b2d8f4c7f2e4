from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.errors import AlreadyExists, NotFound, OutOfRange
from controlplane.intents import lifecycle
from controlplane.store.sqlite import SqliteStore
from flare.v1 import intent_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new(name: str) -> intent_pb2.Intent:
    return lifecycle.created(intent_pb2.Intent(name=f"tenants/t/intents/{name}"), now=NOW)


def plan(intent: intent_pb2.Intent) -> intent_pb2.Intent:
    return lifecycle.transition(intent, lifecycle.PLANNING, reason="Planning", message="", now=NOW)


async def test_create_is_idempotent_on_request_id_and_names_are_unique(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.open()
    try:
        first, created = await store.create(new("a"), tenant="t", request_id="r1")
        again, created_again = await store.create(new("b"), tenant="t", request_id="r1")
        assert created and not created_again and again.name == first.name
        with pytest.raises(AlreadyExists):
            await store.create(new("a"), tenant="t", request_id="")
        other_tenant, created_other = await store.create(
            intent_pb2.Intent(name="tenants/u/intents/a"), tenant="u", request_id="r1"
        )
        assert created_other and other_tenant.name == "tenants/u/intents/a"
    finally:
        store.close()


async def test_revisions_log_and_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.open()
    a, _ = await store.create(new("a"), tenant="t", request_id="")
    planned = await store.update(a.name, plan)
    assert planned.revision > a.revision and planned.history[-1].revision == planned.revision
    unchanged = await store.update(a.name, lambda _: None)
    assert unchanged.revision == planned.revision
    with pytest.raises(lifecycle.TransitionError):
        await store.update(a.name, plan)  # PLANNING -> PLANNING is not allowed; nothing stored
    with pytest.raises(NotFound):
        await store.update("tenants/t/intents/none", plan)
    events = await store.events_since(0, tenant="t")
    assert [e.revision for e in events] == [a.revision, planned.revision]
    store.close()

    reopened = SqliteStore(tmp_path / "db")
    reopened.open()
    try:
        got = await reopened.get(a.name)
        assert got == planned
        b, _ = await reopened.create(new("b"), tenant="t", request_id="")
        assert b.revision == planned.revision + 1
        assert [i.name for i in await reopened.live()] == [a.name, b.name]
    finally:
        reopened.close()


async def test_list_pages_newest_first_with_state_filter(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.open()
    try:
        for index in range(5):
            created, _ = await store.create(new(f"i{index}"), tenant="t", request_id="")
            if index % 2:
                await store.update(created.name, plan)
        page = await store.list_intents(tenant="t", states=[], limit=2, cursor=None)
        assert [i.name.rsplit("/", 1)[1] for i in page.intents] == ["i4", "i3"]
        rest = await store.list_intents(tenant="t", states=[], limit=10, cursor=page.next_cursor)
        assert [i.name.rsplit("/", 1)[1] for i in rest.intents] == ["i2", "i1", "i0"]
        assert rest.next_cursor is None
        planning = await store.list_intents(
            tenant="t", states=[lifecycle.PLANNING], limit=10, cursor=None
        )
        assert [i.name.rsplit("/", 1)[1] for i in planning.intents] == ["i3", "i1"]
    finally:
        store.close()


async def test_compacted_revisions_are_out_of_range(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", event_retention=10)
    store.open()
    try:
        for index in range(40):
            await store.create(new(f"i{index}"), tenant="t", request_id="")
        with pytest.raises(OutOfRange):
            await store.events_since(1, tenant="t")
        recent = await store.events_since(store.revision - 3, tenant="t")
        assert len(recent) == 3
    finally:
        store.close()


async def test_subscribers_get_commits_in_order_and_a_marker_when_behind(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.open()
    try:
        subscription = store.subscribe()
        created = [
            (await store.create(new(f"i{i}"), tenant="t", request_id=""))[0] for i in range(3)
        ]
        got = [await subscription.next() for _ in range(3)]
        assert [e.revision for e in got if e] == [c.revision for c in created]
        subscription.close()
    finally:
        store.close()


async def test_ended_since_gives_the_intents_that_ended_from_then(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.open()
    try:
        for name, hour in (("early", 1), ("late", 5), ("live", 0)):
            await store.create(new(name), tenant="t", request_id="")
            if hour:
                at = NOW.replace(hour=hour)
                await store.update(f"tenants/t/intents/{name}", cancelled_at(at))
        ended = await store.ended_since(NOW.replace(hour=3))
    finally:
        store.close()
    assert [i.name for i in ended] == ["tenants/t/intents/late"]


def cancelled_at(at: datetime) -> Callable[[intent_pb2.Intent], intent_pb2.Intent]:
    def cancel(intent: intent_pb2.Intent) -> intent_pb2.Intent:
        return lifecycle.transition(intent, lifecycle.CANCELLED, reason="C", message="", now=at)

    return cancel
