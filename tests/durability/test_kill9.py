"""kill -9 the control plane while clients create intents: every acknowledged
intent is there after a restart, and none is there twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flare.v1 import intent_service_pb2 as svc
from flare.v1 import intent_service_pb2_grpc
from tests.intents import gpu_job

pytestmark = pytest.mark.slow
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane.main",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--http-listen",
            "off",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(200):
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(address)


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
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = start(tmp_path, port)
    acknowledged: set[str] = set()
    sent: set[str] = set()
    try:
        await wait_serving(address)
        md = (("authorization", f"Bearer {(tmp_path / 'admin-token').read_text().strip()}"),)

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

        async with grpc.aio.insecure_channel(address) as channel:
            clients = [asyncio.create_task(client(n, channel)) for n in range(CLIENTS)]
            while len(acknowledged) < 300:
                await asyncio.sleep(0.01)
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
            await asyncio.gather(*clients)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    restarted = start(tmp_path, port)
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
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
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=15) == 0
