"""The load generator of benchmarks/telemetry, in its own process: N simulated
agents with 8 GPUs each, every one sending one sample batch a second (phases
spread over the second), plus a few probe agents whose samples carry their send
time and one WatchUtilization watcher on the probes, which measures
agent→watcher latency.

Agents stream straight to the control plane (StreamTelemetry each), or with
--relay-size K through simulated relays of K agents each: a relay, as
flare-relay does, gathers what its agents sent over the last RELAY_FLUSH
seconds into one RelayTelemetry message (the probes go through a relay of
their own, so their latency includes that wait).

The load agents send pre-serialized batches (a protobuf message may be
concatenated: the sequence number is encoded in front of fixed bytes), so the
generator spends its CPU on the wire, not on building messages. Prints one JSON
object with what was sent, acknowledged and measured.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import sys
import time
import uuid
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc as pb_grpc
from tests.telemetry_support import inventory

GPUS = 8
METHOD = "/flare.v1.TelemetryService/StreamTelemetry"
RELAY_METHOD = "/flare.v1.TelemetryService/RelayTelemetry"
RELAY_FLUSH = 0.1  # flare-relay's default --flush-interval
PROBE_PROVIDER = "probe"
OPENS_PER_SECOND = 1000
OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 2**22)]


def batch(node: str, stamp: Timestamp | None = None) -> pb.SampleBatch:
    return pb.SampleBatch(
        samples=[
            pb.GpuSample(
                uuid=f"GPU-{node}-{i}",
                time=stamp,
                gpu_utilization_percent=60.0 + i,
                memory_utilization_percent=30.0,
                memory_used_bytes=40 * 2**30,
                memory_free_bytes=40 * 2**30,
                temperature_celsius=55.0,
                power_watts=400.0,
                sm_clock_mhz=1980,
                ecc_corrected_total=0,
                ecc_uncorrected_total=0,
                xid_counts={48: 0, 79: 0},
                health=pb.GPU_HEALTH_HEALTHY,
            )
            for i in range(GPUS)
        ]
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class LoadAgent:
    """One agent on the wire: hello, then a pre-serialized batch every second."""

    def __init__(self, provider: str, node: str) -> None:
        self.instance = uuid.uuid4().hex
        self.hello = pb.StreamTelemetryRequest(
            sequence=0,
            agent_instance=self.instance,
            inventory=inventory(node, gpus=GPUS, provider=provider),
        ).SerializeToString()
        self.body = pb.StreamTelemetryRequest(
            agent_instance=self.instance, samples=batch(node)
        ).SerializeToString()
        self.sent = 0
        self.acked = 0
        self.failure = ""
        self.open = asyncio.Event()  # the hello was answered
        self.ramp = 0.0
        self.phase = "starting"
        self.lateness: list[float] = []  # seconds behind schedule at each send

    def message(self, sequence: int) -> bytes:
        return b"\x08" + _varint(sequence) + self.body  # field 1 (sequence), then the rest

    async def run(
        self, channel: grpc.aio.Channel, token: str, start: asyncio.Event, seconds: int
    ) -> None:
        await asyncio.sleep(self.ramp)  # agents come up over a few seconds, not at once
        call: Any = channel.stream_stream(METHOD)(metadata=(("authorization", f"Bearer {token}"),))

        async def acks() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for raw in call:
                    self.acked = pb.StreamTelemetryResponse.FromString(raw).acked_sequence
                    self.open.set()

        reader = asyncio.create_task(acks())
        loop = asyncio.get_running_loop()
        try:
            self.phase = "opening"
            await call.write(self.hello)
            await self.open.wait()
            if self.failure or reader.done():
                self.failure = self.failure or "the stream ended before the hello was answered"
                return
            await start.wait()  # every stream is open
            self.phase = "streaming"
            due = loop.time() + random.random()  # spread the agents over the second
            for sequence in range(1, seconds + 1):
                await asyncio.sleep(max(0.0, due - loop.time()))
                self.lateness.append(loop.time() - due)
                await call.write(self.message(sequence))
                self.sent = sequence
                due += 1.0
            deadline = loop.time() + 15
            while self.acked < self.sent and loop.time() < deadline:
                await asyncio.sleep(0.05)
        except grpc.aio.AioRpcError as error:
            self.failure = f"{error.code().name}: {error.details()} ({self.phase})"
        except asyncio.InvalidStateError:  # the call ended before we wrote
            self.failure = f"{(await call.code()).name}: {await call.details()} ({self.phase})"
        finally:
            self.open.set()  # a stream that failed to open counts as done opening
            call.cancel()
            reader.cancel()


class LoadRelay:
    """A relay on the wire: its agents' hellos, then every RELAY_FLUSH seconds one message
    with the batches of the agents whose second came round since the last one."""

    def __init__(self, agents: list[LoadAgent]) -> None:
        self.agents = agents
        # Agents by the tick of the second they send in; stream numbers are list positions + 1.
        ticks = round(1 / RELAY_FLUSH)
        self.slots: list[list[int]] = [[] for _ in range(ticks)]
        for number in range(len(agents)):
            self.slots[random.randrange(ticks)].append(number)
        self.extra: list[pb.RelayedMessage] = []  # messages of probes, sent with the next flush
        self.call: Any = None

    def _answered(self, raw: bytes) -> None:
        for answer in pb.RelayTelemetryResponse.FromString(raw).answers:
            agent = self.agents[answer.stream - 1] if answer.stream <= len(self.agents) else None
            if agent is None:
                continue
            if answer.response:
                agent.acked = pb.StreamTelemetryResponse.FromString(answer.response).acked_sequence
            elif answer.HasField("ended") and answer.ended.code:
                agent.failure = f"code {answer.ended.code}: {answer.ended.message}"
            agent.open.set()

    async def run(
        self, channel: grpc.aio.Channel, token: str, start: asyncio.Event, seconds: int
    ) -> None:
        await asyncio.sleep(self.agents[0].ramp)
        self.call = channel.stream_stream(RELAY_METHOD)(
            metadata=(("authorization", f"Bearer {token}"),)
        )

        async def answers() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for raw in self.call:
                    self._answered(raw)

        reader = asyncio.create_task(answers())
        loop = asyncio.get_running_loop()
        try:
            hellos = [
                pb.RelayedMessage(stream=n + 1, request=agent.hello)
                for n, agent in enumerate(self.agents)
            ]
            await self.call.write(pb.RelayTelemetryRequest(messages=hellos).SerializeToString())
            await asyncio.gather(*(agent.open.wait() for agent in self.agents))
            await start.wait()
            begun = loop.time()
            ticks = len(self.slots)
            for tick in range(seconds * ticks):
                due = begun + tick * RELAY_FLUSH
                await asyncio.sleep(max(0.0, due - loop.time()))
                late = loop.time() - due
                sequence = tick // ticks + 1
                messages = self.extra
                self.extra = []
                for number in self.slots[tick % ticks]:
                    agent = self.agents[number]
                    messages.append(
                        pb.RelayedMessage(stream=number + 1, request=agent.message(sequence))
                    )
                    agent.lateness.append(late)
                    agent.sent = sequence
                await self.call.write(
                    pb.RelayTelemetryRequest(messages=messages).SerializeToString()
                )
            deadline = loop.time() + 15
            while any(a.acked < a.sent for a in self.agents) and loop.time() < deadline:
                await asyncio.sleep(0.05)
        except grpc.aio.AioRpcError as error:
            for agent in self.agents:
                agent.failure = agent.failure or f"{error.code().name}: {error.details()}"
        finally:
            for agent in self.agents:
                agent.open.set()
            self.call.cancel()
            reader.cancel()


async def probe_and_watch(
    target: str, token: str, probes: int, stop: asyncio.Event, *, relayed: bool
) -> dict[str, Any]:
    """Probe agents stamp their samples; a watcher of their provider measures the delay."""
    if probes == 0:
        return {}
    latencies: list[float] = []
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = pb_grpc.TelemetryServiceStub(channel)
        watch = stub.WatchUtilization(
            pb.WatchUtilizationRequest(provider=PROBE_PROVIDER), metadata=metadata
        )

        async def watcher() -> None:
            async for event in watch:
                now = time.time()
                if event.type == pb.WATCH_EVENT_TYPE_UPDATE:
                    for gpu in event.gpus:
                        if gpu.device.index == 0 and gpu.latest.time.seconds:
                            latencies.append(now - gpu.latest.time.ToNanoseconds() / 1e9)

        # Relayed: the probes' messages wait for the relay's next flush, as with flare-relay.
        relay = stub.RelayTelemetry(metadata=metadata) if relayed else None
        pending: list[pb.RelayedMessage] = []

        async def flush() -> None:
            assert relay is not None
            while not stop.is_set():
                await asyncio.sleep(RELAY_FLUSH)
                if pending:
                    request = pb.RelayTelemetryRequest(messages=pending)
                    pending.clear()
                    await relay.write(request)

        async def probe(number: int) -> None:
            node = f"probe-{number}"
            instance = uuid.uuid4().hex
            call = None if relay is not None else stub.StreamTelemetry(metadata=metadata)

            async def send(request: pb.StreamTelemetryRequest) -> None:
                if call is not None:
                    await call.write(request)
                else:
                    message = request.SerializeToString()
                    pending.append(pb.RelayedMessage(stream=number + 1, request=message))

            hello = inventory(node, gpus=GPUS, provider=PROBE_PROVIDER)
            await send(pb.StreamTelemetryRequest(agent_instance=instance, inventory=hello))
            await asyncio.sleep(number / max(probes, 1))
            sequence = 0
            while not stop.is_set():
                sequence += 1
                stamp = Timestamp()
                stamp.GetCurrentTime()
                await send(
                    pb.StreamTelemetryRequest(
                        sequence=sequence, agent_instance=instance, samples=batch(node, stamp)
                    )
                )
                await asyncio.sleep(1.0)
            if call is not None:
                call.cancel()

        watching = asyncio.create_task(watcher())
        flushing = asyncio.create_task(flush()) if relay is not None else None
        await asyncio.gather(*(probe(n) for n in range(probes)))
        watching.cancel()
        if relay is not None and flushing is not None:
            flushing.cancel()
            relay.cancel()
    return {
        "latency_samples": len(latencies),
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p99_s": _percentile(latencies, 0.99),
    }


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * share))], 4)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    start, stop = asyncio.Event(), asyncio.Event()
    seconds = int(args.seconds)
    channels = [
        grpc.aio.insecure_channel(args.target, options=[*OPTIONS, ("flare.bench", i)])
        # Real agents each have their own connection; one per 50 keeps the generator light.
        for i in range(max(1, args.agents // 50))
    ]
    agents = [LoadAgent(f"bench-{n // 100}", f"node-{n}") for n in range(args.agents)]
    for n, agent in enumerate(agents):
        agent.ramp = n / OPENS_PER_SECOND
    senders: list[LoadAgent | LoadRelay] = list(agents)
    if args.relay_size:
        size = args.relay_size
        senders = [LoadRelay(agents[n : n + size]) for n in range(0, len(agents), size)]
    tasks = [
        asyncio.create_task(sender.run(channels[n % len(channels)], args.token, start, seconds))
        for n, sender in enumerate(senders)
    ]
    opening = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(a.open.wait() for a in agents)), 300)
    opened = time.monotonic() - opening
    start.set()
    probing = asyncio.create_task(
        probe_and_watch(args.target, args.token, args.probes, stop, relayed=bool(args.relay_size))
    )
    await asyncio.gather(*tasks)
    stop.set()
    latency = await probing
    for channel in channels:
        await channel.close()
    sent = sum(a.sent for a in agents)
    acked = sum(a.acked for a in agents)
    lateness = [late for a in agents for late in a.lateness]
    return {
        "agents": args.agents,
        "relays": len(senders) if args.relay_size else 0,
        "streams_opened_in_s": round(opened, 1),
        "messages_expected": args.agents * seconds,
        "messages_sent": sent,
        "messages_acked": acked,
        "unacked": sent - acked,
        "stream_failures": dict(collections.Counter(a.failure for a in agents if a.failure)),
        "schedule_lag_p99_s": _percentile(lateness, 0.99),
        "generator_cpu_s": round(sum(os.times()[:2]), 1),
        **latency,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument(
        "--relay-size", type=int, default=0, help="agents per relay; 0: every agent streams itself"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
