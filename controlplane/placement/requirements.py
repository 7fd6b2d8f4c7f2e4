"""What an intent asks of an offer, extracted from the Intent message once, as
plain data the filters and objectives read."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flare import gpus
from flare.money import Money
from flare.quantity import parse_quantity
from flare.v1 import intent_pb2

GIB = Decimal(2**30)


@dataclass(frozen=True, slots=True)
class Requirements:
    gpu_count: int = 1
    gpu_model: str = ""  # normalised model; "" means any
    vendor: str = ""
    tier: str = ""
    architecture: str = ""
    min_compute_capability: tuple[int, int] | None = None
    interconnect: str = ""
    topology: str = ""
    min_memory_gib: float = 0.0
    max_memory_gib: float = 0.0  # 0: no bound
    min_fp32_tflops: float = 0.0
    shared: bool | None = None
    multi_instance: bool | None = None
    location: str = ""
    availability_zone: str = ""
    max_hourly_cost: Money | None = None
    max_latency_ms: int = 0  # 0: no bound
    providers: frozenset[str] = frozenset()
    preemptible: bool | None = None
    min_availability: float = 0.0


def _any(value: str) -> str:
    return "" if value.lower() == gpus.ANY else value


def _gib(quantity: str) -> float:
    return float(parse_quantity(quantity) / GIB) if quantity else 0.0


def from_intent(intent: intent_pb2.Intent) -> Requirements:
    """Requirements of a validated intent."""
    resources = intent.workload.resources
    gpu = resources.gpu
    spec = gpus.lookup(gpu.model) if _any(gpu.model) else None
    constraints = intent.constraints
    cc = None
    if _any(gpu.compute_capability):
        major, minor = gpu.compute_capability.split(".")
        cc = (int(major), int(minor))
    max_cost = None
    if constraints.HasField("max_hourly_cost"):
        max_cost = Money(
            Decimal(constraints.max_hourly_cost.amount), constraints.max_hourly_cost.currency_code
        )
    shared: bool | None = None
    if gpu.HasField("shared"):
        shared = gpu.shared
    if gpu.HasField("dedicated") and gpu.dedicated:
        shared = False
    return Requirements(
        gpu_count=gpu.count or (1 if resources.HasField("gpu") else 0),
        gpu_model=spec.model if spec else "",
        vendor=_any(gpu.vendor),
        tier=_any(gpu.tier),
        architecture=_any(gpu.architecture),
        min_compute_capability=cc,
        interconnect=_any(gpu.interconnect),
        topology=_any(gpu.topology),
        min_memory_gib=max(_gib(gpu.memory), _gib(gpu.memory_min)),
        max_memory_gib=_gib(gpu.memory_max),
        min_fp32_tflops=gpu.fp32_tflops,
        shared=shared,
        multi_instance=gpu.multi_instance if gpu.HasField("multi_instance") else None,
        location=_any(constraints.location),
        availability_zone=constraints.availability_zone,
        max_hourly_cost=max_cost,
        max_latency_ms=constraints.max_latency_ms,
        providers=frozenset(p.lower() for p in constraints.providers),
        preemptible=constraints.preemptible if constraints.HasField("preemptible") else None,
        min_availability=intent.sla.availability,
    )
