"""Objectives: how feasible offers are ranked.

Each criterion maps an offer to a raw value; across the feasible offers of one
decision the values are min-max normalised to a score in [0, 1] where 1 is
best (all equal -> 1). An objective is a weighted sum of criterion scores:

    cost         raw = hourly cost of the intent's GPUs, in the reference currency; lower is better
    performance  raw = dense FP16/BF16 tensor TFLOPS of the intent's GPUs;       higher is better
    latency      raw = network latency to the consumer, ms;                      lower is better
    energy       raw = TFLOPS per watt of TDP;                                    higher is better

    Cost_Minimization         cost 1
    Performance_Maximization  performance 1
    Latency_Minimization      latency 1
    Energy_Efficiency         energy 1
    Balanced_Optimization     cost 0.4, performance 0.3, latency 0.2, energy 0.1 (configurable)

Ties are broken by lower hourly cost, then by offer name, so the same input
always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from controlplane.placement.filters import hourly_cost
from controlplane.placement.offers import Offer
from flare.money import convert
from flare.v1 import intent_pb2


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    unit: str
    higher_is_better: bool
    raw: Callable[[Offer, int, str, Mapping[str, Decimal]], float]


def _cost(offer: Offer, count: int, currency: str, rates: Mapping[str, Decimal]) -> float:
    return float(convert(hourly_cost(offer, count), currency, rates).amount)


CRITERIA: dict[str, Criterion] = {
    "cost": Criterion("cost", "per hour", False, _cost),
    "performance": Criterion("performance", "TFLOPS", True, lambda o, n, _c, _r: o.fp16_tflops * n),
    "latency": Criterion("latency", "ms", False, lambda o, _n, _c, _r: float(o.latency_ms)),
    "energy": Criterion(
        "energy",
        "TFLOPS/W",
        True,
        lambda o, _n, _c, _r: o.fp16_tflops / o.tdp_watts if o.tdp_watts else 0.0,
    ),
}

DEFAULT_BALANCED = {"cost": 0.4, "performance": 0.3, "latency": 0.2, "energy": 0.1}


def weights(objective: int, balanced: Mapping[str, float] = DEFAULT_BALANCED) -> dict[str, float]:
    single: dict[int, str] = {
        intent_pb2.OBJECTIVE_COST_MINIMIZATION: "cost",
        intent_pb2.OBJECTIVE_PERFORMANCE_MAXIMIZATION: "performance",
        intent_pb2.OBJECTIVE_LATENCY_MINIMIZATION: "latency",
        intent_pb2.OBJECTIVE_ENERGY_EFFICIENCY: "energy",
    }
    if objective in single:
        return {single[objective]: 1.0}
    return dict(balanced)


def normalise(values: list[float], higher_is_better: bool) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [1.0] * len(values)
    span = high - low
    return [((v - low) if higher_is_better else (high - v)) / span for v in values]
