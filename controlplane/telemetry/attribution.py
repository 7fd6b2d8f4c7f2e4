"""Which GPUs each intent holds, on nodes whose agents stream to this control
plane: when the federation holds GPUs of an agent's offer for an intent, that
many healthy, unassigned GPUs of the node are assigned to it (lowest index
first), and given back when the hold is released."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.placement.offers import Offer
from controlplane.telemetry.hub import TelemetryHub

GpuKey = tuple[str, str]  # (node key, GPU uuid)


class Attribution:
    def __init__(self, hub: TelemetryHub) -> None:
        self._hub = hub
        self._node_of_offer: dict[str, str] = {}
        self._by_intent: dict[str, tuple[GpuKey, ...]] = {}
        self._by_gpu: dict[GpuKey, str] = {}

    def offers_published(self, node_key: str, offers: Iterable[Offer]) -> None:
        for offer in offers:
            self._node_of_offer[offer.name] = node_key

    def held(self, intent: str, holds: Iterable[tuple[str, int]]) -> None:
        self.released(intent)
        taken: list[GpuKey] = []
        for offer, count in holds:
            node_key = self._node_of_offer.get(offer)
            state = self._hub.nodes.get(node_key) if node_key else None
            if state is None:
                continue  # an offer without an agent: nothing to attribute
            free = [
                (state.key, gpu.uuid)
                for gpu in sorted(state.healthy_gpus(), key=lambda g: g.index)
                if (state.key, gpu.uuid) not in self._by_gpu
            ]
            taken += free[:count]
        for key in taken:
            self._by_gpu[key] = intent
        if taken:
            self._by_intent[intent] = tuple(taken)

    def released(self, intent: str) -> None:
        for key in self._by_intent.pop(intent, ()):
            self._by_gpu.pop(key, None)

    def intent_of(self, node_key: str, uuid: str) -> str:
        return self._by_gpu.get((node_key, uuid), "")

    def gpus_of(self, intent: str) -> tuple[GpuKey, ...]:
        return self._by_intent.get(intent, ())

    def on_node(self, node_key: str) -> list[tuple[str, str]]:
        """(uuid, intent) for every GPU of the node that an intent holds."""
        return [(uuid, intent) for (key, uuid), intent in self._by_gpu.items() if key == node_key]
