"""Hard constraints, vectorised over an OfferTable.

Each filter names the reason an offer fails it and returns a boolean mask (or
None when the intent does not constrain it). An offer is counted once, for the
first filter it fails, so "212 offers: not in the EU" adds up to the total.
Capacity comes last: an offer that fails only capacity may still take part in
a gang placement across nodes of one cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from controlplane.placement.requirements import Requirements
from controlplane.placement.table import Bools, OfferTable
from flare import geo
from flare.money import Money

Mask = Callable[[Requirements, OfferTable], Bools | None]


@dataclass(frozen=True, slots=True)
class Filter:
    reason: str
    message: Callable[[Requirements], str]
    mask: Mask


def _equals(column: str, wanted: Callable[[Requirements], str]) -> Mask:
    def mask(req: Requirements, table: OfferTable) -> Bools | None:
        value = wanted(req)
        if not value:
            return None
        result: Bools = table.column(column) == table.code(column, value)
        return result

    return mask


def _tristate(column: str, wanted: Callable[[Requirements], bool | None]) -> Mask:
    def mask(req: Requirements, table: OfferTable) -> Bools | None:
        value = wanted(req)
        if value is None:
            return None
        result: Bools = table.column(column) == value
        return result

    return mask


@lru_cache(maxsize=256)
def _places_allowed(location: str, places: tuple[str, ...]) -> Bools:
    allowed = []
    for place in places:
        country, continent, region = place.split("|")
        allowed.append(geo.matches(location, country=country, continent=continent, region=region))
    return np.asarray(allowed, dtype=np.bool_)


def _location(req: Requirements, table: OfferTable) -> Bools | None:
    if not req.location:
        return None
    places = tuple(table.vocabularies["place"])
    result: Bools = _places_allowed(req.location, places)[table.column("place")]
    return result


def _memory(req: Requirements, table: OfferTable) -> Bools | None:
    if not req.min_memory_gib and not req.max_memory_gib:
        return None
    memory = table.column("gpu_memory_gib")
    result: Bools = memory >= req.min_memory_gib
    if req.max_memory_gib:
        result &= memory <= req.max_memory_gib
    return result


def _at_least(column: str, bound: Callable[[Requirements], float]) -> Mask:
    def mask(req: Requirements, table: OfferTable) -> Bools | None:
        value = bound(req)
        if not value:
            return None
        result: Bools = table.column(column) >= value
        return result

    return mask


def _providers(req: Requirements, table: OfferTable) -> Bools | None:
    if not req.providers:
        return None
    codes = [table.code("provider", p) for p in req.providers]
    result: Bools = np.isin(table.column("provider"), codes)
    return result


def _availability(req: Requirements, table: OfferTable) -> Bools | None:
    """Declared availability at least the SLA's; spot capacity can be taken
    back at any time, so it meets no availability SLA."""
    if not req.min_availability:
        return None
    result: Bools = (table.column("availability") >= req.min_availability) & ~table.column(
        "preemptible"
    )
    return result


def _latency(req: Requirements, table: OfferTable) -> Bools | None:
    if not req.max_latency_ms:
        return None
    result: Bools = table.column("latency_ms") <= req.max_latency_ms
    return result


def in_eur(money: Money, table: OfferTable) -> float:
    """`money` in the reference currency; 0 without a rate (no offer meets
    a limit in a currency that cannot be compared)."""
    rate = table.rates.get(money.currency)
    return float(money.amount / rate) if rate else 0.0


def hourly_limit_eur(req: Requirements, table: OfferTable) -> float | None:
    """The hourly budget of all the intent's GPUs in the reference currency."""
    return None if req.max_hourly_cost is None else in_eur(req.max_hourly_cost, table)


def _budget(req: Requirements, table: OfferTable) -> Bools | None:
    hourly = hourly_limit_eur(req, table)
    total = req.max_total_cost
    if hourly is None and (total is None or not req.expected_hours):
        return None
    cost = table.column("price_eur") * max(req.gpu_count, 1)
    result: Bools = np.ones(len(table), dtype=np.bool_)
    if hourly is not None:
        result &= cost <= hourly * (1 + 1e-12)
    if total is not None and req.expected_hours:
        result &= cost * req.expected_hours <= in_eur(total, table) * (1 + 1e-12)
    return result


def _capacity(req: Requirements, table: OfferTable) -> Bools | None:
    result: Bools = table.gpus_free >= req.gpu_count
    return result


def budget_message_of(req: Requirements) -> str:
    parts = []
    if req.max_hourly_cost is not None:
        parts.append(f"{req.max_hourly_cost}/h")
    if req.max_total_cost is not None and req.expected_hours:
        parts.append(f"{req.max_total_cost} in {req.expected_hours:g} h")
    return "above " + " or ".join(parts)


FILTERS: tuple[Filter, ...] = (
    Filter("unhealthy", lambda r: "unhealthy", lambda r, t: t.column("healthy").astype(np.bool_)),
    Filter(
        "gpu_model", lambda r: f"not {r.gpu_model}", _equals("gpu_model", lambda r: r.gpu_model)
    ),
    Filter(
        "vendor", lambda r: f"not made by {r.vendor}", _equals("gpu_vendor", lambda r: r.vendor)
    ),
    Filter(
        "architecture",
        lambda r: f"not {r.architecture}",
        _equals("gpu_architecture", lambda r: r.architecture),
    ),
    Filter("tier", lambda r: f"not {r.tier} tier", _equals("tier", lambda r: r.tier)),
    Filter(
        "compute_capability",
        lambda r: "compute capability too low",
        _at_least("compute_capability", lambda r: r.min_compute_capability),
    ),
    Filter("gpu_memory", lambda r: "GPU memory out of bounds", _memory),
    Filter(
        "fp32_tflops",
        lambda r: f"below {r.min_fp32_tflops} FP32 TFLOPS",
        _at_least("fp32_tflops", lambda r: r.min_fp32_tflops),
    ),
    Filter(
        "interconnect",
        lambda r: f"no {r.interconnect}",
        _equals("interconnect", lambda r: r.interconnect),
    ),
    Filter("topology", lambda r: f"not {r.topology}", _equals("topology", lambda r: r.topology)),
    Filter("sharing", lambda r: "sharing does not match", _tristate("shared", lambda r: r.shared)),
    Filter(
        "sharing_strategy",
        lambda r: f"no {r.sharing_strategy}",
        _equals("sharing_strategy", lambda r: r.sharing_strategy),
    ),
    Filter(
        "multi_instance",
        lambda r: "MIG support does not match",
        _tristate("multi_instance", lambda r: r.multi_instance),
    ),
    Filter("location", lambda r: f"not in {r.location}", _location),
    Filter(
        "availability_zone",
        lambda r: f"not in zone {r.availability_zone}",
        _equals("zone", lambda r: r.availability_zone),
    ),
    Filter("provider", lambda r: "provider not allowed", _providers),
    Filter(
        "preemptible",
        lambda r: "spot" if r.preemptible else "preemptible",
        _tristate("preemptible", lambda r: r.preemptible),
    ),
    Filter(
        "availability",
        lambda r: f"availability below {r.min_availability}% (spot has none)",
        _availability,
    ),
    Filter("latency", lambda r: f"latency above {r.max_latency_ms} ms", _latency),
    Filter("max_cost", budget_message_of, _budget),
    Filter("capacity", lambda r: f"fewer than {r.gpu_count} free GPUs", _capacity),
)
CAPACITY = len(FILTERS) - 1


def masks(req: Requirements, table: OfferTable) -> list[Bools | None]:
    """Each filter's mask over the table, in FILTERS order (None: unconstrained)."""
    return [candidate.mask(req, table) for candidate in FILTERS]


def first_failures(
    req: Requirements, table: OfferTable, evaluated: list[Bools | None] | None = None
) -> np.ndarray:
    """Per offer, the index in FILTERS of the first filter it fails; -1 when it
    passes them all."""
    failed = np.full(len(table), -1, dtype=np.int64)
    undecided = np.ones(len(table), dtype=np.bool_)
    for index, mask in enumerate(evaluated if evaluated is not None else masks(req, table)):
        if mask is None:
            continue
        newly = undecided & ~mask
        failed[newly] = index
        undecided &= mask
    return failed
