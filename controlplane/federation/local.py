"""The `local` federation of the embedded default: provider clusters described
in a data file (simulated), with capacity accounting in memory.

Capacity is rebuilt after a restart from the intents that hold GPUs (their
placements are durable in the store), so nothing is double-booked.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from controlplane.federation.port import CapacityGone
from controlplane.placement import table
from controlplane.placement.offers import Offer
from controlplane.placement.table import OfferTable
from flare import geo, gpus
from flare.money import DEFAULT_RATES_PER_EUR
from flare.v1 import intent_pb2

DEMO_FEDERATION = "catalog-federation.json"


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
            interconnect = node.get("interconnect", spec.interconnect)
            fp32, fp16, tdp = spec.figures(interconnect)
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
                    interconnect=interconnect,
                    topology=node.get("topology", ""),
                    fp32_tflops=fp32,
                    fp16_tflops=fp16,
                    tdp_watts=tdp,
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
    """Federation port over a fixed set of offers, holding GPUs in memory.

    The offers become one OfferTable at start; reservations change only its
    free-capacity column, and every decision gets a snapshot of it."""

    def __init__(
        self, offers: Iterable[Offer], rates: Mapping[str, Decimal] = DEFAULT_RATES_PER_EUR
    ) -> None:
        self._table = table.build(list(offers), rates)
        self._index = {offer.name: i for i, offer in enumerate(self._table.offers)}
        self._free = self._table.gpus_free.copy()
        # intent name -> ((offer index, GPUs held), ...)
        self._holds: dict[str, tuple[tuple[int, int], ...]] = {}
        self._listeners: list[Callable[[], None]] = []

    def restore(self, holding: Iterable[intent_pb2.Intent]) -> None:
        """Re-hold the GPUs of intents that held them before a restart."""
        for intent in holding:
            with contextlib.suppress(CapacityGone):
                self._hold(intent, strict=False)

    async def offers(self) -> OfferTable:
        return self._table.with_free(self._free.copy())

    async def reserve(self, intent: intent_pb2.Intent) -> None:
        self._hold(intent, strict=True)

    def _hold(self, intent: intent_pb2.Intent, *, strict: bool) -> None:
        if intent.name in self._holds:
            return
        wanted = []
        for node in intent.placement.nodes:
            index = self._index.get(node.offer or intent.placement.offer)
            if index is None:
                raise CapacityGone(f"offer {node.offer} no longer exists")
            if strict and self._free[index] < node.gpu_count:
                raise CapacityGone(
                    f"{node.offer} has {self._free[index]} free GPUs, {node.gpu_count} needed"
                )
            wanted.append((index, node.gpu_count))
        for index, count in wanted:
            self._free[index] -= count
        self._holds[intent.name] = tuple(wanted)

    async def deploy(self, intent: intent_pb2.Intent) -> str:
        for port in intent.workload.ports:
            if port.expose:
                if port.domain:
                    return f"https://{port.domain}"
                return f"http://{intent.workload.name}.{intent.placement.provider}.flare.local:{port.port}"
        return ""

    async def release(self, intent: intent_pb2.Intent) -> None:
        held = self._holds.pop(intent.name, None)
        if held is None:
            return
        for index, count in held:
            self._free[index] += count
        for listener in list(self._listeners):
            listener()

    def on_capacity_freed(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def held_by(self, intent_name: str) -> tuple[tuple[str, int], ...] | None:
        held = self._holds.get(intent_name)
        if held is None:
            return None
        return tuple((self._table.offers[index].name, count) for index, count in held)
