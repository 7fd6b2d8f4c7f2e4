"""What the intent engine needs from a federation of provider clusters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from controlplane.placement.table import OfferTable
from flare.v1 import intent_pb2


class CapacityGone(Exception):
    """The chosen offer no longer has the GPUs (someone else took them)."""


@dataclass(frozen=True, slots=True)
class Trouble:
    """What a check found wrong with a running intent's placement.

    `drift`: the workload is not what it should be (deleted by hand): deploying
    again repairs it. `failed`: the provider cannot run it any more: the intent
    must move elsewhere."""

    kind: Literal["drift", "failed"]
    reason: str  # CamelCase, for the intent's history
    message: str


@dataclass(frozen=True, slots=True)
class Deployed:
    """What deploying started: the workload's endpoint URL ("" when nothing is
    exposed) and how its pods get their GPUs (None where no cluster is involved)."""

    endpoint: str = ""
    gpu_access: intent_pb2.GpuAccess | None = None


class Federation(Protocol):
    async def offers(self) -> OfferTable:
        """Every offer, with free capacity as of now (a snapshot: later
        reservations do not change it)."""

    async def reserve(self, intent: intent_pb2.Intent) -> str:
        """Hold the GPUs of intent.placement for the intent; returns what was
        reserved, for the intent's history. Idempotent per intent name. Raises
        CapacityGone."""

    async def deploy(self, intent: intent_pb2.Intent) -> Deployed:
        """Start the workload on the reserved GPUs. Idempotent."""

    async def release(self, intent: intent_pb2.Intent, *, moving: bool = False) -> None:
        """Stop the workload and give the GPUs back. Idempotent. `moving`: the intent
        goes on elsewhere, so what its next placement reuses may stay."""

    async def check(self, intent: intent_pb2.Intent) -> Trouble | None:
        """What is wrong with a running intent's workload or provider, if anything."""

    def block(self, offer: str, seconds: float) -> None:
        """Leave `offer` out of placement for `seconds` (it failed an intent)."""

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
