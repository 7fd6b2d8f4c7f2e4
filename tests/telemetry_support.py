"""Shared pieces of the telemetry tests: a provider configuration, inventories
and messages as an agent would send them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from agent.config import ProviderConfig
from agent.probe.sim import SimProbe
from agent.runner import Agent, AgentReport
from agent.stream import Backoff, TelemetryStreamer
from flare.money import Money
from flare.v1 import common_pb2
from flare.v1 import telemetry_service_pb2 as pb
from tests.controlplane_fixtures import Running

BASE = ProviderConfig(
    provider_name="lab",
    region="eu-west-1",
    hourly_rate=Money(Decimal("1.50"), "EUR"),
    country="FR",
    availability_percent=99.5,
)


def provider_config(**changes: Any) -> ProviderConfig:
    return replace(BASE, **changes)


def inventory(
    node: str = "gpu-1",
    *,
    gpus: int = 2,
    model: str = "nvidia-h100",
    provider: str = "lab",
    price: str = "1.50",
) -> pb.NodeInventory:
    return pb.NodeInventory(
        provider=provider,
        node=node,
        region="eu-west-1",
        backend="sim",
        gpus=[
            pb.GpuDevice(
                index=i,
                uuid=f"GPU-{node}-{i}",
                model=model,
                raw_name=f"{model} (test)",
                vendor=model.split("-", 1)[0],
                memory_bytes=80 * 2**30,
            )
            for i in range(gpus)
        ],
        links=[
            pb.GpuLink(gpu_a=0, gpu_b=i, link_type="nvlink", link_count=18) for i in range(1, gpus)
        ],
        terms=pb.ProviderTerms(
            hourly_rate=common_pb2.Money(currency_code="EUR", amount=price),
            country="FR",
            availability_percent=99.5,
        ),
    )


def hello(inv: pb.NodeInventory, instance: str = "i-1") -> pb.StreamTelemetryRequest:
    return pb.StreamTelemetryRequest(sequence=0, agent_instance=instance, inventory=inv)


def samples(
    sequence: int,
    inv: pb.NodeInventory,
    *,
    instance: str = "i-1",
    health: pb.GpuHealth.ValueType = pb.GPU_HEALTH_HEALTHY,
    unhealthy: frozenset[int] = frozenset(),
) -> pb.StreamTelemetryRequest:
    return pb.StreamTelemetryRequest(
        sequence=sequence,
        agent_instance=instance,
        samples=pb.SampleBatch(
            samples=[
                pb.GpuSample(
                    uuid=gpu.uuid,
                    gpu_utilization_percent=float(sequence % 100),
                    health=pb.GPU_HEALTH_UNHEALTHY if gpu.index in unhealthy else health,
                )
                for gpu in inv.gpus
            ]
        ),
    )


FAST = Backoff(base=0.05, cap=0.2)
Agents = list[tuple[asyncio.Event, asyncio.Task[AgentReport]]]


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


def start_agent(
    control_plane: Running, probe: SimProbe, node: str, **config: object
) -> tuple[asyncio.Event, asyncio.Task[AgentReport]]:
    target = f"127.0.0.1:{control_plane.plane.grpc_port}"
    agent = Agent(
        probe,
        provider_config(**config),
        node,
        interval=0.05,
        streamer_factory=lambda outbox, say_hello: TelemetryStreamer(
            target, control_plane.admin_token, outbox, say_hello, backoff=FAST
        ),
        grace_seconds=5.0,
    )
    stop = asyncio.Event()
    return stop, asyncio.create_task(agent.run(stop))


def eur(amount: str) -> Money:
    return Money(Decimal(amount), "EUR")
