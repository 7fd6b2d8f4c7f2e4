"""RelayTelemetry and flare-relay: many agents' streams over one connection, each
with the rules of a direct stream (acknowledged once durable, duplicates dropped,
superseded by a newer stream), ended one by one, and nothing lost when the
control plane is killed behind a relay."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2

from agent.probe.sim import SimProbe
from agent.relay import MAX_BATCH, MAX_BATCH_BYTES, Relay, add_to_server, batches
from agent.runner import Agent
from agent.stream import Backoff, TelemetryStreamer
from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc, token_service_pb2
from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.controlplane_process import ControlPlaneProcess, free_port
from tests.telemetry.test_agent_stream import (
    agent_report,
    instance_of,
    instance_of_or_none,
    journaled_sequences,
)
from tests.telemetry_support import (
    FAST,
    Agents,
    eventually,
    hello,
    inventory,
    provider_config,
    samples,
)


def relayed(*messages: tuple[int, pb.StreamTelemetryRequest | bytes]) -> pb.RelayTelemetryRequest:
    return pb.RelayTelemetryRequest(
        messages=[
            pb.RelayedMessage(
                stream=number,
                request=body if isinstance(body, bytes) else body.SerializeToString(),
            )
            for number, body in messages
        ]
    )


class Answers:
    """The relay's side of a RelayTelemetry call: answers gathered by agent stream."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.acked: dict[int, int] = {}
        self.ended: dict[int, Any] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            for answer in response.answers:
                if answer.HasField("ended"):
                    self.ended[answer.stream] = answer.ended
                else:
                    message = pb.StreamTelemetryResponse.FromString(answer.response)
                    self.acked[answer.stream] = message.acked_sequence


async def open_relay(control_plane: Running, token: str | None = None) -> Answers:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    return Answers(stub.RelayTelemetry(metadata=control_plane.metadata(token)))


async def test_agents_over_one_relay_stream_are_acknowledged_each_on_its_own(
    control_plane: Running,
) -> None:
    relay = await open_relay(control_plane)
    a, b = inventory("relayed-a"), inventory("relayed-b")
    await relay.call.write(relayed((1, hello(a, "ia")), (2, hello(b, "ib"))))
    await eventually(lambda: relay.acked == {1: 0, 2: 0})
    await relay.call.write(
        relayed(
            (1, samples(1, a, instance="ia")),
            (1, samples(2, a, instance="ia")),
            (2, samples(1, b, instance="ib")),
        )
    )
    await eventually(lambda: relay.acked == {1: 2, 2: 1}, timeout=5)
    hub = control_plane.plane.hub
    assert hub.nodes["lab/lab/relayed-a"].sequence == 2
    assert hub.nodes["lab/lab/relayed-b"].samples == len(b.gpus)
    await relay.call.write(relayed((1, samples(2, a, instance="ia"))))  # a resend
    await relay.call.write(relayed((1, samples(3, a, instance="ia"))))
    await eventually(lambda: relay.acked[1] == 3, timeout=5)
    assert hub.duplicates == 1 and hub.missing == 0
    assert relay.ended == {}
    relay.call.cancel()


async def test_one_bad_agent_stream_ends_alone_and_its_number_stays_closed(
    control_plane: Running,
) -> None:
    relay = await open_relay(control_plane)
    good = inventory("relayed-good")
    await relay.call.write(relayed((1, hello(good, "ig")), (2, b"\xff\xffnot protobuf")))
    await eventually(lambda: 2 in relay.ended)
    assert relay.ended[2].code == code_pb2.INVALID_ARGUMENT
    await relay.call.write(relayed((3, pb.StreamTelemetryRequest(sequence=5, agent_instance="x"))))
    await eventually(lambda: 3 in relay.ended)
    assert relay.ended[3].code == code_pb2.INVALID_ARGUMENT and "sequence" in relay.ended[3].message
    # A late message of the ended stream 2 opens nothing: its number is spent.
    await relay.call.write(
        relayed((2, hello(inventory("late"), "il")), (1, samples(1, good, instance="ig")))
    )
    await eventually(lambda: relay.acked.get(1) == 1, timeout=5)
    assert "lab/lab/late" not in control_plane.plane.hub.nodes
    assert 1 not in relay.ended
    relay.call.cancel()


async def test_a_newer_stream_of_the_node_supersedes_the_relayed_one(
    control_plane: Running,
) -> None:
    relay = await open_relay(control_plane)
    node = inventory("moving")
    await relay.call.write(relayed((1, hello(node, "i1"))))
    await eventually(lambda: relay.acked == {1: 0})
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    direct: Any = stub.StreamTelemetry(metadata=control_plane.metadata())
    await direct.write(hello(node, "i1"))
    assert (await direct.read()).acked_sequence == 0
    await relay.call.write(relayed((1, samples(1, node, instance="i1"))))
    await eventually(lambda: 1 in relay.ended)
    assert relay.ended[1].code == code_pb2.FAILED_PRECONDITION
    direct.cancel()
    relay.call.cancel()


async def test_a_relay_going_away_ends_the_streams_it_carried(control_plane: Running) -> None:
    relay = await open_relay(control_plane)
    await relay.call.write(
        relayed(*((n, hello(inventory(f"gone-{n}"), f"i{n}")) for n in (1, 2, 3)))
    )
    await eventually(lambda: len(relay.acked) == 3)
    assert control_plane.plane.ingest.streams == 3
    relay.call.cancel()
    await eventually(lambda: control_plane.plane.ingest.streams == 0, timeout=5)


async def test_a_relay_needs_the_telemetry_scope(control_plane: Running) -> None:
    token = await control_plane.tokens.CreateToken(
        token_service_pb2.CreateTokenRequest(
            token=token_service_pb2.Token(scopes=["intents:read"])
        ),
        metadata=control_plane.metadata(),
    )
    relay = await open_relay(control_plane, token.secret)
    await relay.call.write(relayed((1, hello(inventory(), "i"))))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await relay.reader
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_relay_cuts_batches_by_count_and_bytes_keeping_the_order() -> None:
    small = [pb.RelayedMessage(stream=n, request=b"x" * 100) for n in range(1500)]
    cut = batches(small)
    assert [len(b) for b in cut] == [MAX_BATCH, MAX_BATCH, 1500 - 2 * MAX_BATCH]
    assert [m.stream for b in cut for m in b] == list(range(1500))
    big = [pb.RelayedMessage(stream=n, request=b"x" * (MAX_BATCH_BYTES * 2 // 5)) for n in range(5)]
    assert [len(b) for b in batches(big)] == [2, 2, 1]  # a third would pass MAX_BATCH_BYTES
    huge = pb.RelayedMessage(stream=9, request=b"x" * (MAX_BATCH_BYTES * 2))
    assert [len(b) for b in batches([small[0], huge, small[1]])] == [1, 1, 1]


@pytest.fixture
async def relay_server(control_plane: Running) -> AsyncIterator[tuple[Relay, str]]:
    """flare-relay's Relay in front of the in-process control plane."""
    relay = Relay(
        f"127.0.0.1:{control_plane.plane.grpc_port}", control_plane.admin_token, backoff=FAST
    )
    server = grpc.aio.server()
    add_to_server(relay, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    upstream = asyncio.create_task(relay.run(stop))
    await asyncio.wait_for(relay.up.wait(), 10)
    yield relay, f"127.0.0.1:{port}"
    await server.stop(1.0)
    stop.set()
    await upstream


def agent_via(address: str, token: str, node: str) -> tuple[asyncio.Event, asyncio.Task[Any]]:
    agent = Agent(
        SimProbe("h100", 2),
        provider_config(),
        node,
        interval=0.02,
        streamer_factory=lambda outbox, say_hello: TelemetryStreamer(
            address, token, outbox, say_hello, backoff=FAST
        ),
        grace_seconds=5.0,
    )
    stop = asyncio.Event()
    return stop, asyncio.create_task(agent.run(stop))


async def test_agents_through_flare_relay_are_taken_in_and_acknowledged_in_batches(
    control_plane: Running, relay_server: tuple[Relay, str], agents: Agents
) -> None:
    relay, address = relay_server
    for n in range(3):
        agents.append(agent_via(address, control_plane.admin_token, f"via-relay-{n}"))
    hub = control_plane.plane.hub
    await eventually(
        lambda: all(
            hub.nodes.get(f"lab/lab/via-relay-{n}")
            and hub.nodes[f"lab/lab/via-relay-{n}"].sequence >= 20
            for n in range(3)
        ),
        timeout=10,
    )
    for stop, _ in agents:
        stop.set()
    reports = [await task for _, task in agents]
    agents.clear()
    assert all(r.unacked == 0 and r.dropped == 0 for r in reports), reports
    assert relay.stats.forwarded >= 60
    assert relay.stats.batches < relay.stats.forwarded / 2  # messages travelled together
    assert hub.missing == 0 and hub.duplicates == 0
    await eventually(lambda: relay.stats.agent_streams == 0, timeout=5)


async def test_agents_are_answered_whichever_of_them_speaks_first(
    control_plane: Running, relay_server: tuple[Relay, str]
) -> None:
    # The stream opened first sends its hello last: numbering streams as they opened
    # would have given the control plane a number below one it had already seen.
    _, address = relay_server
    metadata = control_plane.metadata()
    async with (
        grpc.aio.insecure_channel(address) as first_channel,
        grpc.aio.insecure_channel(address, options=[("flare.test", 2)]) as second_channel,
    ):
        first: Any = telemetry_service_pb2_grpc.TelemetryServiceStub(first_channel)
        second: Any = telemetry_service_pb2_grpc.TelemetryServiceStub(second_channel)
        early = first.StreamTelemetry(metadata=metadata)
        await early.wait_for_connection()
        late = second.StreamTelemetry(metadata=metadata)
        await late.write(hello(inventory("spoke-first"), "i2"))
        assert (await asyncio.wait_for(late.read(), 5)).acked_sequence == 0
        await early.write(hello(inventory("spoke-last"), "i1"))
        assert (await asyncio.wait_for(early.read(), 5)).acked_sequence == 0
        early.cancel()
        late.cancel()


async def test_an_agent_without_the_relays_token_is_refused(
    relay_server: tuple[Relay, str],
) -> None:
    _, address = relay_server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = telemetry_service_pb2_grpc.TelemetryServiceStub(channel)
        call = stub.StreamTelemetry(metadata=(("authorization", "Bearer wrong"),))
        # Refused as the stream opens, before any message (see the direct stream's test).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_relay_without_its_control_plane_refuses_agents_as_unavailable() -> None:
    # Nothing listens there; the agent's stream is held for a while, then refused.
    relay = Relay(f"127.0.0.1:{free_port()}", "t", backoff=FAST, hold_seconds=0.5)
    server = grpc.aio.server()
    add_to_server(relay, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    upstream = asyncio.create_task(relay.run(stop))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = telemetry_service_pb2_grpc.TelemetryServiceStub(channel)
            call = stub.StreamTelemetry(metadata=(("authorization", "Bearer t"),))
            await call.write(hello(inventory(), "i"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop.set()
        await upstream
        await server.stop(0)


async def test_an_agent_held_while_the_relay_reconnects_goes_on_once_the_control_plane_is_up(
    tmp_path: Path, federation_file: Path
) -> None:
    """The control plane is away when the agent connects: the relay holds its stream
    instead of refusing it (each refusal would grow the agent's backoff), and the
    agent's hello is answered as soon as the control plane serves."""
    port = free_port()
    settings = plane_settings(
        tmp_path / "data", listen=f"127.0.0.1:{port}", federation_file=federation_file
    )
    async with serving(settings) as first_run:  # its admin token, for the relay
        token = first_run.admin_token
    relay = Relay(f"127.0.0.1:{port}", token, backoff=FAST)
    server = grpc.aio.server()
    add_to_server(relay, server)
    relay_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    upstream = asyncio.create_task(relay.run(stop))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}") as channel:
            stub: Any = telemetry_service_pb2_grpc.TelemetryServiceStub(channel)
            call = stub.StreamTelemetry(metadata=(("authorization", f"Bearer {token}"),))
            await call.write(hello(inventory("held"), "i"))
            answer = asyncio.ensure_future(call.read())
            await asyncio.sleep(1.0)
            assert not answer.done() and not relay.up.is_set()  # held, not refused
            async with serving(settings):
                first = await asyncio.wait_for(answer, 10)
                assert first.acked_sequence == 0
                call.cancel()
    finally:
        stop.set()
        await upstream
        await server.stop(0)


@pytest.mark.slow
def test_a_control_plane_killed_behind_a_relay_loses_nothing_and_takes_nothing_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "cp"
    server = ControlPlaneProcess(data, free_port())
    server.start()
    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token)
    relay_address = f"127.0.0.1:{free_port()}"
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("relay", "agent")}
    relay = subprocess.Popen(
        [
            sys.executable, "-m", "agent.relay", "--listen", relay_address,
            "--control-plane", server.address, "--token-file", str(token_file),
        ],
        stdout=logs["relay"], stderr=logs["relay"],
    )  # fmt: skip
    agent = subprocess.Popen(
        [
            sys.executable, "-m", "agent.main",
            "--backend", "sim", "--sim-count", "8",
            "--node-name", "behind-relay", "--provider", "lab",
            "--control-plane", relay_address, "--token-file", str(token_file),
            "--interval", "0.05", "--kubernetes", "off",
        ],
        stdout=logs["agent"], stderr=logs["agent"],
    )  # fmt: skip
    agent_log = tmp_path / "agent.log"
    try:
        deadline = time.monotonic() + 30
        while sum(journaled_sequences(data, instance_of_or_none(data)).values()) < 100:
            assert time.monotonic() < deadline, agent_log.read_text()[-2000:]
            time.sleep(0.1)
        server.kill()  # mid-stream; the relay ends the agent's stream, which waits it out
        time.sleep(1.0)
        server.start()
        deadline = time.monotonic() + 30
        before = sum(journaled_sequences(data, instance_of(data)).values())
        while sum(journaled_sequences(data, instance_of(data)).values()) < before + 100:
            assert time.monotonic() < deadline, (tmp_path / "relay.log").read_text()[-2000:]
            time.sleep(0.1)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
        server.stop()
        for handle in logs.values():
            handle.close()
    report = agent_report(agent_log)
    assert report["dropped"] == 0 and report["unacked"] == 0, report
    assert isinstance(report["connects"], int) and report["connects"] >= 2, report
    last = report["last_sequence"]
    assert isinstance(last, int) and last > 150
    seen = journaled_sequences(data, instance_of(data))
    assert sorted(seen) == list(range(1, last + 1)), "a message is missing"
    assert set(seen.values()) == {1}, "a message was taken twice"


class RelayAt:
    """flare-relay's Relay serving agents on a fixed port, so that it can be stopped (as
    if killed: its streams cut, nothing handed over) and another started in its place."""

    def __init__(self, control_plane: Running, port: int) -> None:
        self.target = f"127.0.0.1:{control_plane.plane.grpc_port}"
        self.token = control_plane.admin_token
        self.port = port
        self.server: grpc.aio.Server | None = None
        self.stop_upstream = asyncio.Event()
        self.upstream: asyncio.Task[None] | None = None

    async def start(self) -> Relay:
        relay = Relay(self.target, self.token, backoff=FAST)
        self.server = grpc.aio.server()
        add_to_server(relay, self.server)
        assert self.server.add_insecure_port(f"127.0.0.1:{self.port}") == self.port
        await self.server.start()
        self.stop_upstream = asyncio.Event()
        self.upstream = asyncio.create_task(relay.run(self.stop_upstream))
        await asyncio.wait_for(relay.up.wait(), 10)
        return relay

    async def kill(self) -> None:
        assert self.server is not None and self.upstream is not None
        await self.server.stop(0)
        self.stop_upstream.set()
        await self.upstream


@pytest.mark.slow
async def test_a_relayed_stream_broken_twice_journals_each_message_once_and_acks_all(
    control_plane: Running,
) -> None:
    """The relay in front of an agent dies twice, the second time soon after the agent
    came back, so that the agent's backoff has grown past its grace period; then the
    agent is stopped. Every message it sent is in the journal exactly once, and every
    one is acknowledged before it exits: its last reconnect does not wait out the
    backoff."""
    relays = RelayAt(control_plane, free_port())
    await relays.start()
    # The longest waits the backoff allows (no jitter): 1, 2, 4, 8 s after failures in a row.
    backoff = Backoff(base=0.5, cap=30.0, rand=lambda: 1.0)
    agent = Agent(
        SimProbe("h100", 2),
        provider_config(),
        "broken-twice",
        interval=0.02,
        streamer_factory=lambda outbox, say_hello: TelemetryStreamer(
            f"127.0.0.1:{relays.port}",
            control_plane.admin_token,
            outbox,
            say_hello,
            backoff=backoff,
        ),
        grace_seconds=5.0,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    streamer = agent.streamer
    assert streamer is not None
    hub = control_plane.plane.hub
    key = "lab/lab/broken-twice"
    try:
        await eventually(lambda: key in hub.nodes and hub.nodes[key].durable >= 20)

        await relays.kill()  # the first break: the agent retries after 1, 2 and 4 s
        await asyncio.sleep(5.0)
        await relays.start()
        connects = streamer.stats.connects
        await eventually(lambda: streamer.stats.connects > connects, timeout=10)
        acked = agent.outbox.acked
        await eventually(lambda: agent.outbox.acked > acked + 10)

        await relays.kill()  # the second: not 10 s after the last, so its backoff is 8 s
        await relays.start()
        stop.set()
        report = await asyncio.wait_for(running, 30)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(running), 30)
        await relays.kill()

    assert report.dropped == 0 and report.unacked == 0, report
    assert streamer.stats.connects >= 3, streamer.stats
    data = control_plane.plane.settings.data_dir
    seen = journaled_sequences(data, instance_of(data))
    assert sorted(seen) == list(range(1, report.last_sequence + 1)), "a message is missing"
    assert set(seen.values()) == {1}, "a message was journaled twice"
