"""A FLUIDOS PeeringCandidate as a placement offer.

The candidate carries the provider's Flavor. Its K8Slice `characteristics.gpu`
holds upstream's model, cores and total memory, and the traits FLARE's agent
writes beside them (count, vendor, tier, region, hourly rate per GPU, network
latency, availability, ...; see agent/kube/flavor.py). Facts missing from a
Flavor that FLARE's agent did not write are derived (price per GPU from the
Flavor's price and count) or left at what meets no bound (no availability).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from controlplane.placement.offers import Offer, gpu_facts
from flare import geo, gpus
from flare.quantity import parse_quantity

FLAVOR_PREFIX = "flare-"


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


def _notes(location: Mapping[str, Any]) -> dict[str, str]:
    """`additionalNotes` as the agent writes it: "region=eu-west-1 zone=eu-west-1a"."""
    text = str(location.get("additionalNotes") or "")
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def offer_of(candidate: Mapping[str, Any]) -> Offer | None:
    """The offer of a PeeringCandidate; None when its Flavor is not a K8Slice with
    GPUs of a model FLARE knows, or is priced in a way that cannot be read."""
    spec = candidate.get("spec") or {}
    flavor = spec.get("flavor") or {}
    flavor_spec = flavor.get("spec") or {}
    flavor_type = flavor_spec.get("flavorType") or {}
    if flavor_type.get("typeIdentifier") != "K8Slice":
        return None
    characteristics = (flavor_type.get("typeData") or {}).get("characteristics") or {}
    gpu = characteristics.get("gpu") or {}
    spec_of_model = gpus.lookup(str(gpu.get("model", "")))
    if spec_of_model is None:
        return None
    try:
        count = int(gpu.get("count") or parse_quantity(str(gpu.get("cores") or "0")))
        total_memory = parse_quantity(str(gpu.get("memory") or "0"))
    except ValueError:
        return None
    if count <= 0:
        return None
    price = flavor_spec.get("price") or {}
    rate = _decimal(gpu["hourly_rate"]) if "hourly_rate" in gpu else None
    if rate is None:
        node_rate = _decimal(price.get("amount", ""))
        rate = None if node_rate is None else node_rate / count
    if rate is None:
        return None
    owner = flavor_spec.get("owner") or {}
    liqo_id = (owner.get("additionalInformation") or {}).get("liqoID")
    location = flavor_spec.get("location") or {}
    notes = _notes(location)
    country = str(gpu.get("country") or location.get("country") or "").upper()
    provider = str(gpu.get("provider") or owner.get("domain") or owner.get("nodeID") or "")
    flavor_name = str((flavor.get("metadata") or {}).get("name", ""))
    node = flavor_name.removeprefix(FLAVOR_PREFIX) or flavor_name
    interconnect = str(gpu.get("interconnect") or spec_of_model.interconnect)
    per_gpu = int(total_memory / count) if total_memory else spec_of_model.memory_gib[0] * 2**30
    return Offer(
        name=f"providers/{provider}/offers/{candidate['metadata']['name']}",
        provider=provider,
        cluster=str(liqo_id or owner.get("nodeID") or ""),
        node=node,
        **gpu_facts(spec_of_model, interconnect),
        gpu_memory_gib=float(gpus.nominal_memory_gib(spec_of_model, per_gpu)),
        tier=str(gpu.get("tier") or spec_of_model.tier),
        topology=str(gpu.get("topology") or ""),
        gpus_total=count,
        gpus_free=count if spec.get("available", True) else 0,
        region=str(gpu.get("region") or notes.get("region") or ""),
        country=country,
        continent=geo.CONTINENT_OF_COUNTRY.get(country, ""),
        zone=str(gpu.get("zone") or notes.get("zone") or ""),
        price_per_gpu_hour=rate,
        currency=str(price.get("currency") or "EUR"),
        preemptible=bool(gpu.get("pre_emptible", False)),
        latency_ms=int(gpu.get("network_latency_ms") or 0),
        availability=float(gpu.get("availability") or 0.0),
        carbon_intensity_g_per_kwh=0.0,
    )
