"""Hard constraints. Each filter names the reason an offer fails it; an offer
is rejected for the first filter it fails, so rejections count offers once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from flare import geo
from flare.money import Money, MoneyError, convert


@dataclass(frozen=True, slots=True)
class Filter:
    reason: str
    message: Callable[[Requirements], str]
    accepts: Callable[[Requirements, Offer, Mapping[str, Decimal]], bool]


def hourly_cost(offer: Offer, gpu_count: int) -> Money:
    return Money(offer.price_per_gpu_hour * gpu_count, offer.currency)


def _within_budget(req: Requirements, offer: Offer, rates: Mapping[str, Decimal]) -> bool:
    if req.max_hourly_cost is None:
        return True
    try:
        cost = convert(hourly_cost(offer, req.gpu_count), req.max_hourly_cost.currency, rates)
    except MoneyError:
        return False
    return cost.amount <= req.max_hourly_cost.amount


def _cc(offer: Offer) -> tuple[int, int]:
    if not offer.compute_capability:
        return (0, 0)
    major, _, minor = offer.compute_capability.partition(".")
    return (int(major), int(minor or 0))


FILTERS: tuple[Filter, ...] = (
    Filter("unhealthy", lambda r: "unhealthy", lambda r, o, _: o.healthy),
    Filter(
        "gpu_model",
        lambda r: f"not {r.gpu_model}",
        lambda r, o, _: not r.gpu_model or o.gpu_model == r.gpu_model,
    ),
    Filter(
        "vendor",
        lambda r: f"not made by {r.vendor}",
        lambda r, o, _: not r.vendor or o.gpu_vendor == r.vendor,
    ),
    Filter(
        "architecture",
        lambda r: f"not {r.architecture}",
        lambda r, o, _: not r.architecture or o.gpu_architecture == r.architecture,
    ),
    Filter("tier", lambda r: f"not {r.tier} tier", lambda r, o, _: not r.tier or o.tier == r.tier),
    Filter(
        "compute_capability",
        lambda r: "compute capability too low",
        lambda r, o, _: r.min_compute_capability is None or _cc(o) >= r.min_compute_capability,
    ),
    Filter(
        "gpu_memory",
        lambda r: "GPU memory out of bounds",
        lambda r, o, _: (
            o.gpu_memory_gib >= r.min_memory_gib
            and (not r.max_memory_gib or o.gpu_memory_gib <= r.max_memory_gib)
        ),
    ),
    Filter(
        "fp32_tflops",
        lambda r: f"below {r.min_fp32_tflops} FP32 TFLOPS",
        lambda r, o, _: o.fp32_tflops >= r.min_fp32_tflops,
    ),
    Filter(
        "interconnect",
        lambda r: f"no {r.interconnect}",
        lambda r, o, _: not r.interconnect or o.interconnect == r.interconnect,
    ),
    Filter(
        "topology",
        lambda r: f"not {r.topology}",
        lambda r, o, _: not r.topology or o.topology == r.topology,
    ),
    Filter(
        "sharing",
        lambda r: "sharing does not match",
        lambda r, o, _: r.shared is None or o.shared == r.shared,
    ),
    Filter(
        "multi_instance",
        lambda r: "MIG support does not match",
        lambda r, o, _: r.multi_instance is None or o.multi_instance == r.multi_instance,
    ),
    Filter(
        "location",
        lambda r: f"not in {r.location}",
        lambda r, o, _: (
            not r.location
            or geo.matches(r.location, country=o.country, continent=o.continent, region=o.region)
        ),
    ),
    Filter(
        "availability_zone",
        lambda r: f"not in zone {r.availability_zone}",
        lambda r, o, _: not r.availability_zone or o.zone == r.availability_zone,
    ),
    Filter(
        "provider",
        lambda r: "provider not allowed",
        lambda r, o, _: not r.providers or o.provider.lower() in r.providers,
    ),
    Filter(
        "preemptible",
        lambda r: "preemptible does not match",
        lambda r, o, _: r.preemptible is None or o.preemptible == r.preemptible,
    ),
    Filter(
        "availability",
        lambda r: f"availability below {r.min_availability}%",
        lambda r, o, _: o.availability >= r.min_availability,
    ),
    Filter(
        "latency",
        lambda r: f"latency above {r.max_latency_ms} ms",
        lambda r, o, _: not r.max_latency_ms or o.latency_ms <= r.max_latency_ms,
    ),
    Filter("max_hourly_cost", lambda r: f"above {r.max_hourly_cost}", _within_budget),
    Filter(
        "capacity",
        lambda r: f"fewer than {r.gpu_count} free GPUs",
        lambda r, o, _: o.gpus_free >= r.gpu_count,
    ),
)


def first_failure(req: Requirements, offer: Offer, rates: Mapping[str, Decimal]) -> Filter | None:
    for candidate in FILTERS:
        if not candidate.accepts(req, offer, rates):
            return candidate
    return None
