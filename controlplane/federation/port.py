"""What the intent engine needs from a federation of provider clusters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from controlplane.placement.table import OfferTable
from flare.v1 import intent_pb2


class CapacityGone(Exception):
    """The chosen offer no longer has the GPUs (someone else took them)."""


class Federation(Protocol):
    async def offers(self) -> OfferTable:
        """Every offer, with free capacity as of now (a snapshot: later
        reservations do not change it)."""

    async def reserve(self, intent: intent_pb2.Intent) -> str:
        """Hold the GPUs of intent.placement for the intent; returns what was
        reserved, for the intent's history. Idempotent per intent name. Raises
        CapacityGone."""

    async def deploy(self, intent: intent_pb2.Intent) -> str:
        """Start the workload on the reserved GPUs; returns its endpoint URL
        ("" when nothing is exposed). Idempotent."""

    async def release(self, intent: intent_pb2.Intent) -> None:
        """Stop the workload and give the GPUs back. Idempotent."""

    def on_capacity_freed(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever GPUs become free (released, or offers
        added), so queued intents are planned again."""


class CapacityListeners:
    """The `on_capacity_freed` part of the port, the same for every adapter."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def on_capacity_freed(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
