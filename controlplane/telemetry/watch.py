"""WatchUtilization: live GPU state for any number of watchers, none of which
can slow the ingest or each other.

Every tick the GPUs that changed are taken from the hub once, turned into
GpuState messages once, and offered to each watcher whose selector matches as
one UPDATE. A watcher's queue is bounded: when it is full the watcher's
pending updates are dropped and replaced by a RESYNC marker, after which it
gets a fresh SNAPSHOT — a slow reader sees a resync, never a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from controlplane.names import tenant_of
from controlplane.telemetry.history import History
from controlplane.telemetry.hub import NodeState, TelemetryHub
from flare import gpus
from flare.v1 import telemetry_service_pb2 as pb

TICK_SECONDS = 0.2
QUEUE_LIMIT = 32
IntentOf = Callable[[str, str], str]  # (node key, uuid) -> intent name or ""


@dataclass(frozen=True, slots=True)
class Selector:
    provider: str = ""
    node: str = ""
    gpu_model: str = ""
    intent: str = ""
    # Only GPUs used by this tenant's intents; None: every GPU (an admin).
    tenant: str | None = None

    @classmethod
    def of(cls, request: pb.WatchUtilizationRequest, tenant: str | None) -> Selector:
        spec = gpus.lookup(request.gpu_model) if request.gpu_model else None
        return cls(
            provider=request.provider,
            node=request.node,
            gpu_model=spec.model if spec else request.gpu_model,
            intent=request.intent,
            tenant=tenant,
        )

    def matches_node(self, state: NodeState) -> bool:
        inventory = state.inventory
        return (not self.provider or inventory.provider == self.provider) and (
            not self.node or inventory.node == self.node
        )

    def matches_gpu(self, gpu: pb.GpuDevice, intent: str) -> bool:
        return (
            (not self.gpu_model or gpu.model == self.gpu_model)
            and (not self.intent or intent == self.intent)
            and (self.tenant is None or (bool(intent) and tenant_of(intent) == self.tenant))
        )


def gpu_state(
    state: NodeState, gpu: pb.GpuDevice, intent: str, history: History | None = None
) -> pb.GpuState:
    message = pb.GpuState(
        provider=state.inventory.provider,
        cluster=state.inventory.cluster or state.inventory.provider,
        node=state.inventory.node,
        device=gpu,
        intent=intent,
        stale=state.stale,
    )
    latest = state.latest.get(gpu.uuid)
    if latest is not None:
        message.latest.CopyFrom(latest)
    if history is not None and not state.stale:
        means = history.window((state.key, gpu.uuid), 60.0, time.time())
        for name, value in means.items():
            setattr(message.last_minute, name, value)
    return message


_RESYNC = pb.WatchUtilizationResponse(type=pb.WATCH_EVENT_TYPE_RESYNC)


@dataclass(eq=False)
class _Watcher:
    selector: Selector
    queue: asyncio.Queue[pb.WatchUtilizationResponse] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    resync_pending: bool = False

    def offer(self, update: pb.WatchUtilizationResponse) -> None:
        if self.resync_pending:
            return  # the snapshot that follows the resync will carry it
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)
            self.resync_pending = True


class Watchers:
    def __init__(self, hub: TelemetryHub, intent_of: IntentOf) -> None:
        self._hub = hub
        self._intent_of = intent_of
        self._watchers: set[_Watcher] = set()
        self.resyncs = 0

    def __len__(self) -> int:
        return len(self._watchers)

    def snapshot(self, selector: Selector) -> pb.WatchUtilizationResponse:
        response = pb.WatchUtilizationResponse(type=pb.WATCH_EVENT_TYPE_SNAPSHOT)
        for state in self._hub.nodes.values():
            if not selector.matches_node(state):
                continue  # cheap, and most nodes fail it when the selector names a provider
            for gpu in state.inventory.gpus:
                intent = self._intent_of(state.key, gpu.uuid)
                if selector.matches_gpu(gpu, intent):
                    response.gpus.append(gpu_state(state, gpu, intent, self._hub.history))
        return response

    def publish(self) -> None:
        """Offers each watcher the GPUs that changed since the last call."""
        dirty = self._hub.take_dirty()
        if not self._watchers or not dirty:
            return
        by_node: dict[str, list[str]] = defaultdict(list)
        for node_key, uuid in dirty:
            by_node[node_key].append(uuid)
        updates: dict[_Watcher, list[pb.GpuState]] = {w: [] for w in self._watchers}
        for node_key, uuids in by_node.items():
            state = self._hub.nodes.get(node_key)
            if state is None:
                continue
            interested = [w for w in self._watchers if w.selector.matches_node(state)]
            if not interested:
                continue
            for uuid in uuids:
                gpu = state.gpus.get(uuid)
                if gpu is None:
                    continue
                intent = self._intent_of(node_key, uuid)
                built: pb.GpuState | None = None
                for watcher in interested:
                    if watcher.selector.matches_gpu(gpu, intent):
                        built = built or gpu_state(state, gpu, intent, self._hub.history)
                        updates[watcher].append(built)
        for watcher, states in updates.items():
            if states:
                watcher.offer(
                    pb.WatchUtilizationResponse(type=pb.WATCH_EVENT_TYPE_UPDATE, gpus=states)
                )

    async def run(self, tick: float = TICK_SECONDS) -> None:
        while True:
            await asyncio.sleep(tick)
            self.publish()

    async def watch(self, selector: Selector) -> AsyncIterator[pb.WatchUtilizationResponse]:
        watcher = _Watcher(selector)
        self._watchers.add(watcher)
        try:
            yield self.snapshot(selector)
            while True:
                update = await watcher.queue.get()
                if update is _RESYNC:
                    self.resyncs += 1
                    yield update
                    watcher.resync_pending = False
                    yield self.snapshot(selector)
                else:
                    yield update
        finally:
            with contextlib.suppress(KeyError):
                self._watchers.remove(watcher)
