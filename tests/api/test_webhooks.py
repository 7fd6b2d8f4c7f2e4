"""Webhooks against a real HTTP receiver: every state change of an intent is
POSTed to its notification_url and to its tenant's webhook, signed, in order,
and retried until the receiver takes it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web

from controlplane.webhooks import SIGNATURE_HEADER, parse_webhooks, verify
from flare.v1 import intent_pb2, intent_service_pb2
from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.intents import gpu_job
from tests.telemetry_support import eventually

SECRET = "webhook-test-secret"


class Receiver:
    """An HTTP endpoint that refuses the first `refuse` deliveries of each path with 500."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.seen: dict[str, list[tuple[dict[str, Any], bool]]] = {}
        self.refused: dict[str, int] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        if self.refused.get(path, 0) < self.refuse:
            self.refused[path] = self.refused.get(path, 0) + 1
            return web.Response(status=500)
        signed = verify(
            SECRET.encode(), request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()
        )
        self.seen.setdefault(path, []).append((json.loads(body), signed))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver(refuse=2)
    app = web.Application()
    app.router.add_post("/{path:.*}", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    got.url = f"http://127.0.0.1:{port}"
    yield got
    await runner.cleanup()


@pytest.fixture
async def plane(
    tmp_path: Path, federation_file: Path, receiver: Receiver
) -> AsyncIterator[Running]:
    settings = plane_settings(
        tmp_path / "data",
        federation_file=federation_file,
        webhooks={"default": f"{receiver.url}/tenant"},
        webhook_secret=SECRET,
    )
    async with serving(settings) as running:
        yield running


async def test_state_changes_reach_both_urls_signed_in_order_despite_failures(
    plane: Running, receiver: Receiver
) -> None:
    intent = gpu_job("hooked", count=1)
    intent.notification_url = f"{receiver.url}/intent"
    reply = await plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=intent), metadata=plane.metadata()
    )
    expected = ["PENDING", "PLANNING", "RESERVING", "DEPLOYING", "RUNNING"]

    def arrived() -> bool:
        return all(len(receiver.seen.get(p, [])) == len(expected) for p in ("/intent", "/tenant"))

    await eventually(arrived, timeout=20)

    for path in ("/intent", "/tenant"):
        deliveries = receiver.seen[path]
        assert [d["state"] for d, _ in deliveries] == expected  # in order, once each
        assert all(signed for _, signed in deliveries)
        assert receiver.refused[path] == 2  # the first delivery was retried twice
        first = deliveries[0][0]
        assert first["intent"] == reply.intent.name
        assert first["id"] == f"{reply.intent.uid}/{first['revision']}"
        assert [d["revision"] for d, _ in deliveries] == sorted(
            d["revision"] for d, _ in deliveries
        )
    body = json.dumps(receiver.seen["/intent"][0][0]).encode()
    assert not verify(b"another secret", "t=1,v1=00", body, now=time.time())


async def test_a_bad_notification_url_is_refused(plane: Running) -> None:
    intent = gpu_job("badhook", count=1)
    intent.notification_url = "ftp://example.org/x"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plane.intents.CreateIntent(
            intent_service_pb2.CreateIntentRequest(intent=intent), metadata=plane.metadata()
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "intent.notification_url" in (refused.value.details() or "")


def test_webhook_settings_parse() -> None:
    assert parse_webhooks("acme=https://h.example/a; globex = http://h.example/b") == {
        "acme": "https://h.example/a",
        "globex": "http://h.example/b",
    }
    with pytest.raises(ValueError, match="is not an http"):
        parse_webhooks("acme=h.example")


async def test_notices_owed_at_a_stop_are_delivered_after_the_restart(
    tmp_path: Path, federation_file: Path, receiver: Receiver
) -> None:
    receiver.refuse = 10**9  # down for the whole first run
    settings = plane_settings(
        tmp_path / "data",
        federation_file=federation_file,
        webhooks={"default": f"{receiver.url}/tenant"},
        webhook_secret=SECRET,
    )
    intent = gpu_job("owed", count=1)
    intent.notification_url = f"{receiver.url}/intent"
    async with serving(settings) as first:
        reply = await first.intents.CreateIntent(
            intent_service_pb2.CreateIntentRequest(intent=intent), metadata=first.metadata()
        )

        async def running() -> bool:
            got = await first.intents.GetIntent(
                intent_service_pb2.GetIntentRequest(name=reply.intent.name),
                metadata=first.metadata(),
            )
            return got.intent.state == intent_pb2.STATE_RUNNING

        await eventually(running, timeout=20)
    assert receiver.seen == {}

    receiver.refuse = 0  # back up; the control plane restarts
    expected = ["PENDING", "PLANNING", "RESERVING", "DEPLOYING", "RUNNING"]
    async with serving(settings):

        def arrived() -> bool:
            return all(
                len(receiver.seen.get(p, [])) >= len(expected) for p in ("/intent", "/tenant")
            )

        await eventually(arrived, timeout=20)
    for path in ("/intent", "/tenant"):
        assert [d["state"] for d, _ in receiver.seen[path]] == expected, path
        assert all(signed for _, signed in receiver.seen[path])
