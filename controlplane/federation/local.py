"""The `local` federation of the embedded default: provider clusters described
in a data file (simulated) and the nodes whose agents stream to this control
plane, with capacity accounting in memory.

Capacity is rebuilt after a restart from the intents that hold GPUs (their
placements are durable in the store), so nothing is double-booked.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from controlplane.federation.port import CapacityGone, CapacityListeners, Deployed, Trouble
from controlplane.placement import table
from controlplane.placement.offers import Offer, gpu_facts
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
            offers.append(
                Offer(
                    name=f"providers/{provider['name']}/offers/{node['name']}",
                    provider=provider["name"],
                    cluster=provider.get("cluster", provider["name"]),
                    node=node["name"],
                    **gpu_facts(spec, interconnect),
                    gpu_memory_gib=float(node.get("gpu_memory_gib", spec.memory_gib[0])),
                    tier=spec.tier,
                    topology=node.get("topology", ""),
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


class LocalFederation(CapacityListeners):
    """Federation port over offers from a data file and from the agents that
    stream to this control plane, holding GPUs in memory.

    Holds are kept per offer name, so a hold survives its offer leaving (an
    agent gone quiet, a restart before the agent is back) and counts again
    when the offer returns. The offers become one OfferTable, rebuilt only
    when an offer changes; every decision gets a snapshot of its free column.
    """

    def __init__(
        self, offers: Iterable[Offer], rates: Mapping[str, Decimal] = DEFAULT_RATES_PER_EUR
    ) -> None:
        super().__init__()
        self._rates = rates
        # source ("file", or an agent's node key) -> its offers by name
        self._sources: dict[str, dict[str, Offer]] = {"file": {o.name: o for o in offers}}
        self._holds: dict[str, tuple[tuple[str, int], ...]] = {}  # intent -> ((offer, GPUs), ...)
        self._held: Counter[str] = Counter()  # offer -> GPUs held
        self._hold_listeners: list[Callable[[str, tuple[tuple[str, int], ...]], None]] = []
        self._table: OfferTable | None = None
        self._index: dict[str, int] = {}
        self._held_column = np.zeros(0, dtype=np.int64)
        self._blocked: dict[str, float] = {}  # offer -> monotonic time it is free again

    def _current(self) -> OfferTable:
        if self._table is None:
            offers = [o for source in self._sources.values() for o in source.values()]
            self._table = table.build(offers, self._rates)
            self._index = {offer.name: i for i, offer in enumerate(self._table.offers)}
            self._held_column = np.asarray(
                [self._held[offer.name] for offer in self._table.offers], dtype=np.int64
            )
        return self._table

    def _free(self) -> table.Ints:
        current = self._current()
        # An offer's own gpus_free is what it had before this control plane's holds.
        free: table.Ints = np.maximum(current.gpus_free - self._held_column, 0)
        if self._blocked:
            now = time.monotonic()
            self._blocked = {o: until for o, until in self._blocked.items() if until > now}
            for name in self._blocked:
                if name in self._index:
                    free[self._index[name]] = 0
        return free

    def block(self, offer: str, seconds: float) -> None:
        self._blocked[offer] = time.monotonic() + seconds

    async def check(self, intent: intent_pb2.Intent) -> Trouble | None:
        """Nothing to check here: the catalog's offers do not fail, and an agent's
        node that fails (stale, a GPU lost or unhealthy) reaches the engine through
        telemetry, after the agent has had its chance to reconnect."""
        return None

    def replace_offers(self, source: str, offers: Iterable[Offer]) -> None:
        """Makes `offers` the offers of `source`, dropping its others. Listeners
        hear of it when capacity may have grown."""
        new = {offer.name: offer for offer in offers}
        old = self._sources.get(source, {})
        if new == old:
            return
        grew = any(
            offer.gpus_total > (old[name].gpus_total if name in old else 0)
            or (offer.healthy and not (name in old and old[name].healthy))
            for name, offer in new.items()
        )
        if new:
            self._sources[source] = new
        else:
            self._sources.pop(source, None)
        self._table = None
        if grew:
            self._notify()

    def restore(self, holding: Iterable[intent_pb2.Intent]) -> None:
        """Re-hold the GPUs of intents that held them before a restart."""
        for intent in holding:
            with contextlib.suppress(CapacityGone):
                self._hold(intent, strict=False)

    async def offers(self) -> OfferTable:
        return self._current().with_free(self._free())

    async def reserve(self, intent: intent_pb2.Intent) -> str:
        self._hold(intent, strict=True)
        gpus = sum(n.gpu_count for n in intent.placement.nodes)
        return f"{gpus} GPUs held on {intent.placement.offer}"

    def _hold(self, intent: intent_pb2.Intent, *, strict: bool) -> None:
        if intent.name in self._holds:
            return
        wanted: Counter[str] = Counter()
        for node in intent.placement.nodes:
            wanted[node.offer or intent.placement.offer] += node.gpu_count
        if strict:
            free = self._free()
            for name, count in wanted.items():
                index = self._index.get(name)
                if index is None:
                    raise CapacityGone(f"offer {name} no longer exists")
                if free[index] < count:
                    raise CapacityGone(f"{name} has {free[index]} free GPUs, {count} needed")
        for name, count in wanted.items():
            self._held[name] += count
            if name in self._index:
                self._held_column[self._index[name]] += count
        self._holds[intent.name] = tuple(wanted.items())
        for listener in list(self._hold_listeners):
            listener(intent.name, self._holds[intent.name])

    async def deploy(self, intent: intent_pb2.Intent) -> Deployed:
        for port in intent.workload.ports:
            if port.expose:
                if port.domain:
                    return Deployed(f"https://{port.domain}")
                provider = intent.placement.provider
                return Deployed(f"http://{intent.workload.name}.{provider}.flare.local:{port.port}")
        return Deployed()

    async def release(self, intent: intent_pb2.Intent, *, moving: bool = False) -> None:
        held = self._holds.pop(intent.name, None)
        if held is None:
            return
        for name, count in held:
            self._held[name] -= count
            if not self._held[name]:
                del self._held[name]
            if name in self._index:
                self._held_column[self._index[name]] -= count
        for listener in list(self._hold_listeners):
            listener(intent.name, ())
        self._notify()

    def on_holds_changed(
        self, callback: Callable[[str, tuple[tuple[str, int], ...]], None]
    ) -> None:
        """`callback(intent, holds)` hears of every hold taken ((offer, GPUs), ...)
        and every release (an empty tuple)."""
        self._hold_listeners.append(callback)

    def held_by(self, intent_name: str) -> tuple[tuple[str, int], ...] | None:
        return self._holds.get(intent_name)
