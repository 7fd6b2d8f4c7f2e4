"""The agent's side of the stream, without a network: the outbox's sequence
and acknowledgement rules, the backoff, and the probe data on the wire."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest

from agent import wire
from agent.config import ProviderConfig
from agent.outbox import Outbox
from agent.probe.base import Health, Reading
from agent.probe.sim import SimProbe
from agent.stream import Backoff, TelemetryStreamer
from flare.money import Money
from flare.v1 import telemetry_service_pb2 as pb
from tests.telemetry_support import provider_config

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def batch() -> pb.SampleBatch:
    return pb.SampleBatch(samples=[pb.GpuSample(uuid="GPU-1")])


def test_outbox_numbers_messages_from_one_and_keeps_them_until_acknowledged() -> None:
    box = Outbox(capacity=10, instance="i-1")
    sent = [box.put(batch()) for _ in range(5)]
    assert [m.sequence for m in sent] == [1, 2, 3, 4, 5]
    assert all(m.agent_instance == "i-1" for m in sent)
    assert box.acknowledge(3) == 3
    assert [m.sequence for m in box.after(0)] == [4, 5]
    assert [m.sequence for m in box.after(4)] == [5]
    assert box.after(5) == []
    assert box.acknowledge(2) == 0 and box.acked == 3  # an older ack changes nothing


def test_outbox_drops_the_oldest_when_full_and_counts_them() -> None:
    box = Outbox(capacity=3)
    for _ in range(7):
        box.put(batch())
    assert [m.sequence for m in box.after(0)] == [5, 6, 7]
    assert box.dropped == 4
    assert box.last_sequence == 7


def test_outbox_refuses_an_acknowledgement_of_what_it_never_sent() -> None:
    box = Outbox(capacity=3)
    box.put(batch())
    with pytest.raises(ValueError, match="beyond"):
        box.acknowledge(2)


def test_hello_has_sequence_zero_and_carries_the_inventory() -> None:
    box = Outbox(capacity=3, instance="i-9")
    hello = box.hello(pb.NodeInventory(node="n"))
    assert hello.sequence == 0 and hello.inventory.node == "n"
    assert box.last_sequence == 0  # the hello is not a numbered message


def test_inventory_messages_are_numbered_like_samples() -> None:
    box = Outbox(capacity=3)
    box.put(batch())
    message = box.put(pb.NodeInventory(node="n"))
    assert message.sequence == 2 and message.WhichOneof("payload") == "inventory"


@pytest.mark.parametrize("attempt", [0, 1, 3, 10, 100])
def test_backoff_waits_at_most_the_exponential_bound_and_the_cap(attempt: int) -> None:
    highest = Backoff(base=0.5, cap=30.0, rand=lambda: 1.0).delay(attempt)
    assert highest == min(30.0, 0.5 * 2**attempt)
    assert Backoff(base=0.5, cap=30.0, rand=lambda: 0.0).delay(attempt) == 0.0


def test_backoff_jitter_spreads_agents_apart() -> None:
    delays = {round(Backoff().delay(5), 6) for _ in range(50)}
    assert len(delays) > 40


def test_unsupported_readings_stay_absent_on_the_wire() -> None:
    reading = Reading(uuid="GPU-1", time=NOW, health=Health.HEALTHY, temperature_celsius=41.0)
    sample = wire.sample(reading)
    assert sample.HasField("temperature_celsius") and sample.temperature_celsius == 41.0
    for name in ("gpu_utilization_percent", "power_watts", "memory_used_bytes"):
        assert not sample.HasField(name), name
    assert sample.health == pb.GPU_HEALTH_HEALTHY


def test_a_zero_reading_is_sent_as_zero_not_dropped() -> None:
    reading = Reading(uuid="GPU-1", time=NOW, health=Health.HEALTHY, gpu_utilization_percent=0.0)
    sample = wire.sample(reading)
    assert sample.HasField("gpu_utilization_percent") and sample.gpu_utilization_percent == 0.0


def test_inventory_on_the_wire_carries_the_gpus_links_and_provider_terms() -> None:
    probe = SimProbe("h100", 2)
    config: ProviderConfig = provider_config(
        hourly_rate=Money(Decimal("2.10"), "EUR"), availability_percent=99.9, country="DE"
    )
    message = wire.inventory(probe.inventory(), config, "gpu-1", NOW)
    assert message.node == "gpu-1" and message.provider == config.provider_name
    assert [g.model for g in message.gpus] == ["nvidia-h100"] * 2
    assert message.links[0].link_type == "nvlink"
    assert message.terms.hourly_rate.amount == "2.10"
    assert message.terms.availability_percent == 99.9
    assert message.terms.country == "DE"
    assert not message.terms.HasField("network_latency_ms")


class FakeEndedCall:
    """A fake stream call that the other side ended before the agent wrote: grpc's
    write then raises InvalidStateError ("RPC already finished")."""

    def __init__(self) -> None:
        self.cancelled = False

    async def write(self, message: pb.StreamTelemetryRequest) -> None:
        raise asyncio.InvalidStateError("RPC already finished.")

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    async def details(self) -> str:
        return "the relay cannot reach the control plane"

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeStub:
    def __init__(self, call: FakeEndedCall) -> None:
        self.call = call

    def StreamTelemetry(self, metadata: object) -> FakeEndedCall:  # noqa: N802 - gRPC name
        return self.call


async def test_a_stream_ended_before_the_agent_wrote_is_a_stream_down_not_a_crash() -> None:
    # The relay refused the stream before the hello went out: the streamer must take it as
    # any other lost stream (and back off), not die of grpc's InvalidStateError.
    call = FakeEndedCall()
    streamer = TelemetryStreamer(
        "unused", "", Outbox(capacity=3), lambda: pb.NodeInventory(node="n")
    )
    with pytest.raises(ConnectionError, match="UNAVAILABLE: the relay cannot reach"):
        await streamer._session(FakeStub(call), asyncio.Event())
    assert call.cancelled
