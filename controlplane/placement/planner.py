"""One placement decision: filter the offers, score the feasible ones under the
intent's objective, rank them, and count why the others were rejected."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from controlplane.placement.filters import first_failure, hourly_cost
from controlplane.placement.objectives import CRITERIA, normalise, weights
from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from flare.money import DEFAULT_RATES_PER_EUR, Money

REFERENCE_CURRENCY = "EUR"


@dataclass(frozen=True, slots=True)
class CriterionScore:
    criterion: str
    score: float
    weight: float
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Candidate:
    rank: int
    offer: Offer
    gpu_count: int
    hourly_cost: Money
    score: float
    criteria: tuple[CriterionScore, ...]


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str
    count: int


@dataclass(frozen=True, slots=True)
class PlanResult:
    objective: int
    offers_considered: int
    candidates: tuple[Candidate, ...]
    rejections: tuple[Rejection, ...]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def plan(
    req: Requirements,
    offers: Sequence[Offer],
    objective: int,
    *,
    top_k: int = 5,
    rates: Mapping[str, Decimal] = DEFAULT_RATES_PER_EUR,
    balanced_weights: Mapping[str, float] | None = None,
) -> PlanResult:
    feasible: list[Offer] = []
    rejected: Counter[str] = Counter()
    messages: dict[str, str] = {}
    for offer in offers:
        failed = first_failure(req, offer, rates)
        if failed is None:
            feasible.append(offer)
        else:
            rejected[failed.reason] += 1
            messages.setdefault(failed.reason, failed.message(req))
    rejections = tuple(
        Rejection(reason, messages[reason], count)
        for reason, count in sorted(rejected.items(), key=lambda item: (-item[1], item[0]))
    )
    chosen = weights(objective, balanced_weights) if balanced_weights else weights(objective)
    return PlanResult(
        objective, len(offers), _rank(req, feasible, chosen, rates, top_k), rejections
    )


def _rank(
    req: Requirements,
    feasible: list[Offer],
    chosen: Mapping[str, float],
    rates: Mapping[str, Decimal],
    top_k: int,
) -> tuple[Candidate, ...]:
    if not feasible:
        return ()
    count = max(req.gpu_count, 1)
    currency = req.max_hourly_cost.currency if req.max_hourly_cost else REFERENCE_CURRENCY
    raw = {
        name: [CRITERIA[name].raw(o, count, currency, rates) for o in feasible] for name in chosen
    }
    scores = {
        name: normalise(values, CRITERIA[name].higher_is_better) for name, values in raw.items()
    }
    costs = raw.get("cost") or [CRITERIA["cost"].raw(o, count, currency, rates) for o in feasible]
    totals = [sum(chosen[n] * scores[n][i] for n in chosen) for i in range(len(feasible))]
    order = sorted(range(len(feasible)), key=lambda i: (-totals[i], costs[i], feasible[i].name))
    return tuple(
        Candidate(
            rank=rank,
            offer=feasible[i],
            gpu_count=count,
            hourly_cost=hourly_cost(feasible[i], count),
            score=totals[i],
            criteria=tuple(
                CriterionScore(n, scores[n][i], chosen[n], raw[n][i], CRITERIA[n].unit)
                for n in chosen
            ),
        )
        for rank, i in enumerate(order[:top_k], start=1)
    )
