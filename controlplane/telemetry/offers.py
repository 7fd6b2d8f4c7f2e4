"""A node that has an agent, as placement offers: one offer per GPU model on
the node (almost always exactly one), priced and placed by the provider's
terms in the inventory, with the GPUs the agent reports unhealthy left out."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, InvalidOperation

from controlplane.placement.offers import Offer, gpu_facts
from controlplane.telemetry.hub import NodeState
from flare import geo, gpus
from flare.v1 import telemetry_service_pb2 as pb

_FAST_LINKS = frozenset({"nvlink", "xgmi"})


def offer_name(state: NodeState, model: str, *, several_models: bool) -> str:
    inventory = state.inventory
    offer_id = inventory.node
    if inventory.cluster and inventory.cluster != inventory.provider:
        offer_id = f"{inventory.cluster}.{offer_id}"
    if several_models:
        offer_id = f"{offer_id}.{model}"
    return f"providers/{inventory.provider}/offers/{offer_id}"


def offers_of(state: NodeState) -> list[Offer]:
    """The offers of a node; none while its agent is stale or for GPUs of a
    model FLARE does not know."""
    if state.stale:
        return []
    inventory = state.inventory
    healthy = {gpu.uuid for gpu in state.healthy_gpus()}
    by_model: dict[str, list[pb.GpuDevice]] = defaultdict(list)
    for gpu in inventory.gpus:
        if gpu.model:
            by_model[gpu.model].append(gpu)
    terms = inventory.terms
    try:
        price = Decimal(terms.hourly_rate.amount or "0")
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or price < 0:
        return []
    country = terms.country.upper()
    offers = []
    for model, devices in sorted(by_model.items()):
        spec = gpus.lookup(model)
        if spec is None:
            continue
        indexes = {gpu.index for gpu in devices}
        fast = any(
            link.link_type in _FAST_LINKS and {link.gpu_a, link.gpu_b} <= indexes
            for link in inventory.links
        )
        interconnect = spec.interconnect if fast or len(devices) == 1 else "pcie"
        usable = sum(1 for gpu in devices if gpu.uuid in healthy)
        offers.append(
            Offer(
                name=offer_name(state, model, several_models=len(by_model) > 1),
                provider=inventory.provider,
                cluster=inventory.cluster or inventory.provider,
                node=inventory.node,
                **gpu_facts(spec, interconnect),
                gpu_memory_gib=float(
                    gpus.nominal_memory_gib(spec, min(gpu.memory_bytes for gpu in devices))
                ),
                tier=spec.tier,
                topology="",
                gpus_total=usable,
                gpus_free=usable,
                region=inventory.region,
                country=country,
                continent=geo.CONTINENT_OF_COUNTRY.get(country, ""),
                zone=inventory.zone,
                price_per_gpu_hour=price,
                currency=terms.hourly_rate.currency_code or "EUR",
                preemptible=terms.preemptible,
                latency_ms=terms.network_latency_ms if terms.HasField("network_latency_ms") else 0,
                # No committed availability meets no availability SLA.
                availability=terms.availability_percent
                if terms.HasField("availability_percent")
                else 0.0,
                carbon_intensity_g_per_kwh=0.0,
                healthy=usable > 0,
            )
        )
    return offers
