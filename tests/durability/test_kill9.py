"""kill -9 the control plane while clients create intents: every acknowledged
intent is there after a restart, and none is there twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest

from flare.v1 import intent_service_pb2 as svc
from flare.v1 import intent_service_pb2_grpc
from tests.controlplane_process import ControlPlaneProcess
from tests.intents import gpu_job

pytestmark = pytest.mark.slow
CLIENTS = 8


async def all_intents(
    stub: intent_service_pb2_grpc.IntentServiceAsyncStub, md: tuple[tuple[str, str], ...]
) -> list[str]:
    ids, token = [], ""
    while True:
        page = await stub.ListIntents(
            svc.ListIntentsRequest(page_size=1000, page_token=token), metadata=md
        )
        ids += [i.request_id for i in page.intents]
        token = page.next_page_token
        if not token:
            return ids


async def test_acknowledged_intents_survive_kill_9(tmp_path: Path) -> None:
    server = ControlPlaneProcess(tmp_path)
    server.start()
    acknowledged: set[str] = set()
    sent: set[str] = set()
    md = (("authorization", f"Bearer {server.admin_token}"),)
    try:

        async def client(number: int, channel: grpc.aio.Channel) -> None:
            stub = intent_service_pb2_grpc.IntentServiceStub(channel)
            for index in range(10_000):
                request_id = f"c{number}-{index}"
                sent.add(request_id)
                try:
                    await stub.CreateIntent(
                        svc.CreateIntentRequest(
                            intent=gpu_job(f"c{number}"), request_id=request_id
                        ),
                        metadata=md,
                        timeout=5,
                    )
                except grpc.aio.AioRpcError:
                    return
                acknowledged.add(request_id)

        async with grpc.aio.insecure_channel(server.address) as channel:
            clients = [asyncio.create_task(client(n, channel)) for n in range(CLIENTS)]
            while len(acknowledged) < 300:
                await asyncio.sleep(0.01)
            server.kill()
            await asyncio.gather(*clients)
    finally:
        server.kill()

    server.start()  # the same data directory and port
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = intent_service_pb2_grpc.IntentServiceStub(channel)
            stored = Counter(await all_intents(stub, md))
            assert acknowledged <= set(stored), f"lost: {sorted(acknowledged - set(stored))[:5]}"
            assert max(stored.values()) == 1
            assert set(stored) <= sent
            # Clients retry what was in flight: the request ids keep it exactly-once.
            for request_id in sorted(sent):
                number = request_id.split("-")[0][1:]
                await stub.CreateIntent(
                    svc.CreateIntentRequest(intent=gpu_job(f"c{number}"), request_id=request_id),
                    metadata=md,
                )
            after = Counter(await all_intents(stub, md))
            assert set(after) == sent and max(after.values()) == 1
    finally:
        assert server.stop() == 0
