"""Objectives: how feasible placements are ranked.

Each criterion maps a placement to a raw value; across the feasible
placements of one decision the values are min-max normalised to a score in
[0, 1], 1 best (all equal: 1). An objective is a weighted sum of scores:

    cost         hourly cost of all the intent's GPUs, reference currency   lower is better
    performance  dense FP16/BF16 TFLOPS of the intent's GPUs, times the     higher is better
                 gang efficiency 0.9^(nodes - 1) of a multi-node placement
    latency      network latency to the consumer, ms (worst node)           lower is better
    energy       performance per watt of TDP                                higher is better

    Cost_Minimization         cost 1
    Performance_Maximization  performance 1
    Latency_Minimization      latency 1
    Energy_Efficiency         energy 1
    Balanced_Optimization     cost 0.4, performance 0.3, latency 0.2, energy 0.1
                              (flare-controlplane --balanced-weights changes them)

Ties go to the lower cost, then to the tighter fit (fewest GPUs left idle on
the chosen node, which keeps large nodes whole for large requests), then to
the offer name: the same input always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from controlplane.placement.table import Floats
from flare.v1 import intent_pb2

GANG_EFFICIENCY = 0.9


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    unit: str
    higher_is_better: bool


CRITERIA = {
    "cost": Criterion("cost", "EUR/h", False),
    "performance": Criterion("performance", "TFLOPS", True),
    "latency": Criterion("latency", "ms", False),
    "energy": Criterion("energy", "TFLOPS/W", True),
}
DEFAULT_BALANCED = {"cost": 0.4, "performance": 0.3, "latency": 0.2, "energy": 0.1}
_SINGLE: dict[int, str] = {
    intent_pb2.OBJECTIVE_COST_MINIMIZATION: "cost",
    intent_pb2.OBJECTIVE_PERFORMANCE_MAXIMIZATION: "performance",
    intent_pb2.OBJECTIVE_LATENCY_MINIMIZATION: "latency",
    intent_pb2.OBJECTIVE_ENERGY_EFFICIENCY: "energy",
}


def weights(objective: int, balanced: Mapping[str, float] = DEFAULT_BALANCED) -> dict[str, float]:
    if objective in _SINGLE:
        return {_SINGLE[objective]: 1.0}
    return dict(balanced)


def parse_weights(text: str) -> dict[str, float]:
    """ "cost=0.5,performance=0.5" -> weights; ValueError when malformed."""
    result = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in CRITERIA:
            raise ValueError(f"unknown criterion {name!r}; one of {', '.join(CRITERIA)}")
        result[name] = float(value)
        if result[name] < 0:
            raise ValueError(f"weight of {name} must not be negative")
    if not sum(result.values()):
        raise ValueError("the weights must not all be zero")
    return result


def normalise(values: Floats, higher_is_better: bool) -> Floats:
    """Min-max scores in [0, 1], 1 best; a non-finite value (a price without an
    exchange rate) scores 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.float64)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high == low:
        return finite.astype(np.float64)
    span = high - low
    with np.errstate(invalid="ignore"):
        scores = (values - low) / span if higher_is_better else (high - values) / span
    return np.where(finite, scores, 0.0).astype(np.float64)
