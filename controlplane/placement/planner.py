"""One placement decision: filter the offers, form the feasible placements
(one node, or a gang of nodes of one cluster when no node has enough free
GPUs), score them under the intent's objective, rank them, count why the
other offers were rejected and, when nothing fits, find the nearest
alternatives with one constraint relaxed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np

from controlplane.placement.filters import (
    CAPACITY,
    FILTERS,
    first_failures,
    hourly_limit_eur,
    masks,
)
from controlplane.placement.objectives import CRITERIA, GANG_EFFICIENCY, normalise, weights
from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from controlplane.placement.table import REFERENCE_CURRENCY, Bools, Floats, Ints, OfferTable
from flare import gpus
from flare.money import Money

# Interconnects in order of preference for the nodes of a gang.
_INTERCONNECT_RANK = {"nvlink": 0, "infinity-fabric": 0, "xe-link": 1, "pcie": 2}


@dataclass(frozen=True, slots=True)
class Share:
    offer: Offer
    gpu_count: int


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
    shares: tuple[Share, ...]
    hourly_cost: Money  # in the offers' currency, or the reference currency when mixed
    hourly_cost_eur: float
    score: float
    criteria: tuple[CriterionScore, ...]
    performance_tflops: float

    @property
    def offer(self) -> Offer:
        return self.shares[0].offer

    @property
    def gpu_count(self) -> int:
        return sum(share.gpu_count for share in self.shares)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str
    count: int


@dataclass(frozen=True, slots=True)
class Alternative:
    relaxed: str
    description: str
    candidate: Candidate
    # Hourly cost above the intent's limit, in the limit's currency (None: no limit).
    cost_difference: Money | None
    # Relative GPU throughput against the model asked for (None: no model asked).
    performance_impact: float | None


@dataclass(frozen=True, slots=True)
class PlanResult:
    objective: int
    offers_considered: int
    candidates: tuple[Candidate, ...]
    rejections: tuple[Rejection, ...]
    alternatives: tuple[Alternative, ...] = ()

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True, slots=True)
class _Placements:
    """Feasible placements as parallel arrays: first every single-node
    placement (offer `singles[i]` takes all `count` GPUs), then the gangs."""

    singles: Ints
    count: int
    gangs: list[tuple[tuple[int, int], ...]]
    cost: Floats
    performance: Floats
    latency: Floats
    energy: Floats
    fit: Floats
    name_rank: Ints


def plan(
    req: Requirements,
    table: OfferTable,
    objective: int,
    *,
    top_k: int = 5,
    balanced_weights: Mapping[str, float] | None = None,
    alternatives: bool = True,
    gangs: bool = True,
) -> PlanResult:
    evaluated = masks(req, table)
    result = _decide(req, table, evaluated, objective, top_k, balanced_weights, gangs)
    if alternatives and not result.candidates:
        found = _alternatives(req, table, evaluated, objective, balanced_weights)
        result = replace(result, alternatives=tuple(found))
    return result


def _decide(  # noqa: PLR0917 - plan's arguments, passed through
    req: Requirements,
    table: OfferTable,
    evaluated: list[Bools | None],
    objective: int,
    top_k: int,
    balanced_weights: Mapping[str, float] | None,
    gangs: bool,
) -> PlanResult:
    failures = first_failures(req, table, evaluated)
    count = max(req.gpu_count, 1)
    singles = np.flatnonzero(failures == -1)
    multi = (
        _gangs(req, table, failures) if gangs and req.gpu_count > 1 and singles.size == 0 else []
    )
    placements = _placements(table, singles, multi, count)
    chosen = weights(objective, balanced_weights) if balanced_weights else weights(objective)
    candidates = _rank(table, placements, chosen, top_k)
    in_gangs = {index for gang in multi for index, _ in gang}
    rejections = _rejections(req, failures, in_gangs)
    return PlanResult(objective, len(table), candidates, rejections)


def _gangs(
    req: Requirements, table: OfferTable, failures: np.ndarray
) -> list[tuple[tuple[int, int], ...]]:
    """Gangs of nodes that together hold the intent's GPUs: per cluster (or,
    when the intent allows it, per model across providers), the nodes with
    the best interconnect and the most free GPUs first, so as few nodes as
    possible."""
    usable = np.flatnonzero((failures == CAPACITY) & (table.gpus_free > 0))
    if usable.size == 0:
        return []
    key = table.column("gpu_model")[usable]
    if not req.split_providers:
        key = key * (len(table.vocabularies["cluster"]) + 1) + table.column("cluster")[usable]
    interconnects = table.vocabularies["interconnect"]
    rank_of_code = np.asarray(
        [
            _INTERCONNECT_RANK.get(name, 3)
            for name in sorted(interconnects, key=interconnects.__getitem__)
        ],
        dtype=np.int64,
    )
    gangs = []
    for group in np.unique(key):
        members = usable[key == group]
        free = table.gpus_free[members]
        if int(free.sum()) < req.gpu_count:
            continue
        order = np.lexsort(
            (
                table.column("name_rank")[members],
                -free,
                rank_of_code[table.column("interconnect")[members]],
            )
        )
        taken, left = [], req.gpu_count
        for position in order:
            index = int(members[position])
            use = min(int(table.gpus_free[index]), left)
            taken.append((index, use))
            left -= use
            if left == 0:
                break
        gangs.append(tuple(taken))
    return gangs


def _placements(
    table: OfferTable, singles: Ints, gangs: list[tuple[tuple[int, int], ...]], count: int
) -> _Placements:
    price = table.column("price_eur")
    fp16 = table.column("fp16_tflops")
    tdp = table.column("tdp_watts")
    latency = table.column("latency_ms")
    cost = price[singles] * count
    performance = fp16[singles] * count
    energy = np.divide(
        fp16[singles], tdp[singles], out=np.zeros(singles.size), where=tdp[singles] > 0
    )
    fit = (table.gpus_free[singles] - count).astype(np.float64)
    lat = latency[singles]
    ranks = table.column("name_rank")[singles]
    if gangs:
        extra = [
            (
                sum(price[i] * n for i, n in gang),
                sum(fp16[i] * n for i, n in gang) * GANG_EFFICIENCY ** (len(gang) - 1),
                max(latency[i] for i, _ in gang),
                sum(tdp[i] * n for i, n in gang),
                sum(int(table.gpus_free[i]) - n for i, n in gang),
                table.column("name_rank")[gang[0][0]],
            )
            for gang in gangs
        ]
        g_cost, g_perf, g_lat, g_watts, g_fit, g_rank = (
            np.asarray(col, dtype=np.float64) for col in zip(*extra, strict=True)
        )
        cost = np.concatenate([cost, g_cost])
        performance = np.concatenate([performance, g_perf])
        lat = np.concatenate([lat, g_lat])
        energy = np.concatenate(
            [energy, np.divide(g_perf, g_watts, out=np.zeros(len(gangs)), where=g_watts > 0)]
        )
        fit = np.concatenate([fit, g_fit])
        ranks = np.concatenate([ranks, g_rank.astype(np.int64)])
    return _Placements(singles, count, gangs, cost, performance, lat, energy, fit, ranks)


def _rank(
    table: OfferTable, p: _Placements, chosen: Mapping[str, float], top_k: int
) -> tuple[Candidate, ...]:
    size = len(p.cost)
    if size == 0 or top_k <= 0:
        return ()
    raw = {"cost": p.cost, "performance": p.performance, "latency": p.latency, "energy": p.energy}
    scores = {name: normalise(raw[name], CRITERIA[name].higher_is_better) for name in chosen}
    total = np.zeros(size)
    for name, weight in chosen.items():
        total += weight * scores[name]
    total = np.round(total, 12)  # equal scores compare equal despite float noise
    keep = np.arange(size)
    if size > top_k:
        threshold = np.partition(-total, top_k - 1)[top_k - 1]
        keep = np.flatnonzero(-total <= threshold)
    order = keep[np.lexsort((p.name_rank[keep], p.fit[keep], p.cost[keep], -total[keep]))][:top_k]
    return tuple(
        _candidate(table, p, int(i), rank, float(total[i]), chosen, scores, raw)
        for rank, i in enumerate(order, start=1)
    )


def _candidate(  # noqa: PLR0917 - the arrays of one ranking
    table: OfferTable,
    p: _Placements,
    i: int,
    rank: int,
    total: float,
    chosen: Mapping[str, float],
    scores: Mapping[str, Floats],
    raw: Mapping[str, Floats],
) -> Candidate:
    if i < len(p.singles):
        nodes: tuple[tuple[int, int], ...] = ((int(p.singles[i]), p.count),)
    else:
        nodes = p.gangs[i - len(p.singles)]
    shares = tuple(Share(table.offer(index), gpus_taken) for index, gpus_taken in nodes)
    currencies = {share.offer.currency for share in shares}
    if len(currencies) == 1:
        amount = sum((s.offer.price_per_gpu_hour * s.gpu_count for s in shares), Decimal(0))
        hourly = Money(amount, currencies.pop())
    else:
        hourly = Money(Decimal(str(round(float(p.cost[i]), 6))), REFERENCE_CURRENCY)
    criteria = tuple(
        CriterionScore(
            name, float(scores[name][i]), weight, float(raw[name][i]), CRITERIA[name].unit
        )
        for name, weight in chosen.items()
    )
    return Candidate(
        rank, shares, hourly, float(p.cost[i]), total, criteria, float(p.performance[i])
    )


def _rejections(
    req: Requirements, failures: np.ndarray, in_gangs: set[int]
) -> tuple[Rejection, ...]:
    counted = failures.copy()
    if in_gangs:
        counted[list(in_gangs)] = -1
    tally = np.bincount(counted[counted >= 0], minlength=len(FILTERS))
    found = [
        Rejection(FILTERS[i].reason, FILTERS[i].message(req), int(n))
        for i, n in enumerate(tally)
        if n
    ]
    return tuple(sorted(found, key=lambda r: (-r.count, r.reason)))


# Constraints that an alternative may relax, one at a time, in this order,
# with the filters that relaxing each one drops.
_RELAXATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("max_hourly_cost", "without the hourly cost limit", ("max_cost",)),
    ("location", "outside {location}", ("location", "availability_zone")),
    ("gpu.model", "with another GPU model", ("gpu_model", "architecture", "vendor")),
    ("preemptible", "on {preemptible_other} capacity", ("preemptible",)),
    ("max_latency_ms", "with more latency", ("latency",)),
    ("availability", "with lower declared availability", ("availability",)),
)


def _relaxed(req: Requirements, which: str) -> Requirements | None:
    match which:
        case "max_hourly_cost" if req.max_hourly_cost or req.max_total_cost:
            return replace(req, max_hourly_cost=None, max_total_cost=None)
        case "location" if req.location or req.availability_zone:
            return replace(req, location="", availability_zone="")
        case "gpu.model" if req.gpu_model or req.architecture or req.vendor:
            return replace(req, gpu_model="", architecture="", vendor="")
        case "preemptible" if req.preemptible is not None:
            return replace(req, preemptible=None)
        case "max_latency_ms" if req.max_latency_ms:
            return replace(req, max_latency_ms=0)
        case "availability" if req.min_availability:
            return replace(req, min_availability=0.0)
    return None


def _alternatives(
    req: Requirements,
    table: OfferTable,
    evaluated: list[Bools | None],
    objective: int,
    balanced: Mapping[str, float] | None,
) -> Iterator[Alternative]:
    """The best placement with one constraint relaxed, for each constraint
    that can be. The filters' masks are reused: relaxing only drops some."""
    limit = hourly_limit_eur(req, table)
    asked = gpus.BY_MODEL.get(req.gpu_model)
    for which, template, dropped in _RELAXATIONS:
        relaxed = _relaxed(req, which)
        if relaxed is None:
            continue
        kept = [None if FILTERS[i].reason in dropped else mask for i, mask in enumerate(evaluated)]
        found = _decide(relaxed, table, kept, objective, 1, balanced, True).best
        if found is None:
            continue
        offer = found.offer
        impact = None
        if asked is not None:
            impact = found.performance_tflops / (asked.fp16_tflops * found.gpu_count) - 1
        description = (
            f"{offer.gpu_model} x{found.gpu_count} at {offer.provider} "
            f"({offer.region}, {offer.country}) for {found.hourly_cost}/h, "
            + template.format(
                location=req.location, preemptible_other="on-demand" if req.preemptible else "spot"
            )
        )
        difference = None
        if limit is not None and req.max_hourly_cost is not None:
            rate = table.rates.get(req.max_hourly_cost.currency, Decimal(1))
            amount = Decimal(str(round((found.hourly_cost_eur - limit) * float(rate), 4)))
            difference = Money(amount, req.max_hourly_cost.currency)
        yield Alternative(which, description, found, difference, impact)
