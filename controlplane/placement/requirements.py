"""What an intent asks of an offer, extracted from the Intent message once, as
plain data the filters and objectives read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from flare import gpus
from flare.money import Money
from flare.quantity import parse_quantity
from flare.v1 import common_pb2, intent_pb2

GIB = Decimal(2**30)


@dataclass(frozen=True, slots=True)
class Requirements:
    gpu_count: int = 1
    gpu_model: str = ""  # normalised model; "" means any
    vendor: str = ""
    tier: str = ""
    architecture: str = ""
    min_compute_capability: float = 0.0  # 8.6 -> 8.6; 0: no bound
    interconnect: str = ""
    topology: str = ""
    min_memory_gib: float = 0.0
    max_memory_gib: float = 0.0  # 0: no bound
    min_fp32_tflops: float = 0.0
    shared: bool | None = None
    multi_instance: bool | None = None
    sharing_strategy: str = ""
    location: str = ""
    availability_zone: str = ""
    max_hourly_cost: Money | None = None
    max_total_cost: Money | None = None
    # How long the intent is expected to run (batch timeout, or until its
    # deadline); 0 when unknown, and then max_total_cost cannot be checked.
    expected_hours: float = 0.0
    max_latency_ms: int = 0  # 0: no bound
    providers: frozenset[str] = frozenset()
    preemptible: bool | None = None
    min_availability: float = 0.0
    # A gang may span providers (deployment_strategy: distributed); otherwise
    # the nodes of a gang are in one provider cluster.
    split_providers: bool = False


def _any(value: str) -> str:
    return "" if value.lower() == gpus.ANY else value


def _gib(quantity: str) -> float:
    return float(parse_quantity(quantity) / GIB) if quantity else 0.0


def money_of(message: common_pb2.Money) -> Money:
    return Money(Decimal(message.amount), message.currency_code)


def _expected_hours(intent: intent_pb2.Intent, now: datetime | None) -> float:
    batch = intent.workload.batch
    if intent.workload.HasField("batch") and batch.HasField("timeout"):
        return batch.timeout.ToTimedelta().total_seconds() / 3600
    if intent.constraints.HasField("deadline") and now is not None:
        left = intent.constraints.deadline.ToDatetime(tzinfo=now.tzinfo) - now
        return max(left.total_seconds() / 3600, 0.0)
    return 0.0


def from_intent(intent: intent_pb2.Intent, now: datetime | None = None) -> Requirements:
    """Requirements of a validated intent (`now` resolves a deadline)."""
    resources = intent.workload.resources
    gpu = resources.gpu
    spec = gpus.lookup(gpu.model) if _any(gpu.model) else None
    constraints = intent.constraints
    cc = float(gpu.compute_capability) if _any(gpu.compute_capability) else 0.0
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
        sharing_strategy=_any(gpu.sharing_strategy),
        location=_any(constraints.location),
        availability_zone=constraints.availability_zone,
        max_hourly_cost=money_of(constraints.max_hourly_cost)
        if constraints.HasField("max_hourly_cost")
        else None,
        max_total_cost=money_of(constraints.max_total_cost)
        if constraints.HasField("max_total_cost")
        else None,
        expected_hours=_expected_hours(intent, now),
        max_latency_ms=constraints.max_latency_ms,
        providers=frozenset(p.lower() for p in constraints.providers),
        preemptible=constraints.preemptible if constraints.HasField("preemptible") else None,
        min_availability=intent.sla.availability,
        split_providers=intent.workload.deployment_strategy
        == intent_pb2.DEPLOYMENT_STRATEGY_DISTRIBUTED,
    )
