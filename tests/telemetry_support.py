"""Shared pieces of the telemetry tests: a provider configuration, inventories
and messages as an agent would send them."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from agent.config import ProviderConfig
from flare.money import Money
from flare.v1 import common_pb2
from flare.v1 import telemetry_service_pb2 as pb

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
            pb.GpuDevice(index=i, uuid=f"GPU-{node}-{i}", model=model, memory_bytes=80 * 2**30)
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
