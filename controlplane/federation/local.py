"""The `local` federation of the embedded default: provider clusters described
in a data file (simulated), with capacity accounting in memory.

Capacity is rebuilt after a restart from the intents that hold GPUs (their
placements are durable in the store), so nothing is double-booked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from controlplane.federation.port import CapacityGone
from controlplane.placement.offers import Offer
from flare import geo, gpus
from flare.v1 import intent_pb2

DEMO_FEDERATION = "demo-federation.json"


def load_offers(path: Path | None = None) -> list[Offer]:
    """Offers of a federation data file (the packaged demo when path is None)."""
    if path is None:
        text = resources.files("controlplane.federation.data").joinpath(DEMO_FEDERATION).read_text()
    else:
        text = path.read_text()
    return offers_from_document(json.loads(text))


def offers_from_document(document: dict[str, Any]) -> list[Offer]:
    offers = []
    for provider in document["providers"]:
        country = provider["country"]
        for node in provider["nodes"]:
            spec = gpus.lookup(node["gpu_model"])
            if spec is None:
                raise ValueError(f"unknown GPU model {node['gpu_model']!r} in {provider['name']}")
            offers.append(
                Offer(
                    name=f"providers/{provider['name']}/offers/{node['name']}",
                    provider=provider["name"],
                    cluster=provider.get("cluster", provider["name"]),
                    node=node["name"],
                    gpu_model=spec.model,
                    gpu_vendor=spec.vendor,
                    gpu_architecture=spec.architecture,
                    gpu_memory_gib=float(node.get("gpu_memory_gib", spec.memory_gib[0])),
                    compute_capability=spec.compute_capability,
                    tier=spec.tier,
                    interconnect=node.get("interconnect", spec.interconnect),
                    topology=node.get("topology", ""),
                    fp32_tflops=spec.fp32_tflops,
                    fp16_tflops=spec.fp16_tflops,
                    tdp_watts=spec.tdp_watts,
                    gpus_total=node["gpus"],
                    gpus_free=node["gpus"],
                    region=provider["region"],
                    country=country,
                    continent=geo.CONTINENT_OF_COUNTRY.get(country, ""),
                    zone=node.get("zone", ""),
                    price_per_gpu_hour=Decimal(str(node["price_per_gpu_hour"])),
                    currency=provider["currency"],
                    preemptible=node.get("preemptible", False),
                    latency_ms=provider["latency_ms"],
                    availability=provider["availability"],
                    carbon_intensity_g_per_kwh=provider.get("carbon_intensity_g_per_kwh", 0.0),
                )
            )
    return offers


class LocalFederation:
    """Federation port over a fixed set of offers, holding GPUs in memory."""

    def __init__(self, offers: Iterable[Offer]) -> None:
        self._offers = {offer.name: offer for offer in offers}
        # intent name -> (offer name, GPUs held)
        self._holds: dict[str, tuple[str, int]] = {}
        self._used: dict[str, int] = dict.fromkeys(self._offers, 0)
        self._listeners: list[Callable[[], None]] = []
        self._deployed: set[str] = set()

    def restore(self, holding: Iterable[intent_pb2.Intent]) -> None:
        """Re-hold the GPUs of intents that held them before a restart."""
        for intent in holding:
            if intent.placement.offer in self._offers:
                self._hold(intent.name, intent.placement.offer, _gpus(intent), strict=False)

    async def offers(self) -> Sequence[Offer]:
        return [
            replace(offer, gpus_free=offer.gpus_total - self._used[name])
            for name, offer in self._offers.items()
        ]

    async def reserve(self, intent: intent_pb2.Intent) -> None:
        self._hold(intent.name, intent.placement.offer, _gpus(intent), strict=True)

    def _hold(self, intent_name: str, offer_name: str, count: int, *, strict: bool) -> None:
        if intent_name in self._holds:
            return
        offer = self._offers.get(offer_name)
        if offer is None:
            raise CapacityGone(f"offer {offer_name} no longer exists")
        free = offer.gpus_total - self._used[offer_name]
        if strict and free < count:
            raise CapacityGone(f"{offer_name} has {free} free GPUs, {count} needed")
        self._used[offer_name] += count
        self._holds[intent_name] = (offer_name, count)

    async def deploy(self, intent: intent_pb2.Intent) -> str:
        self._deployed.add(intent.name)
        for port in intent.workload.ports:
            if port.expose:
                host = (
                    port.domain or f"{intent.workload.name}.{intent.placement.provider}.flare.local"
                )
                return f"https://{host}" if port.domain else f"http://{host}:{port.port}"
        return ""

    async def release(self, intent: intent_pb2.Intent) -> None:
        self._deployed.discard(intent.name)
        held = self._holds.pop(intent.name, None)
        if held is None:
            return
        offer_name, count = held
        self._used[offer_name] -= count
        for listener in list(self._listeners):
            listener()

    def on_capacity_freed(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def held_by(self, intent_name: str) -> tuple[str, int] | None:
        return self._holds.get(intent_name)


def _gpus(intent: intent_pb2.Intent) -> int:
    return sum(node.gpu_count for node in intent.placement.nodes)
