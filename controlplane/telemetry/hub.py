"""The live state of every node that has an agent: its inventory, the latest
sample of each GPU, and where its agent's stream stands (instance, applied
and durable sequence numbers).

The sequence rules live here, so every way in (a live stream, the journal
replayed after a restart) applies them the same way:

- a hello (sequence 0) carries the inventory and opens a stream; a new agent
  instance starts the node's sequence afresh;
- a message at or below the node's sequence is a duplicate and is dropped;
- a message above the next expected one reports the numbers skipped (the
  agent's outbox dropped them) and is applied.

Plain synchronous code on the event loop: no await happens between checking
a sequence and applying it, so two streams can never apply the same message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.telemetry.history import History
from controlplane.telemetry.journal import Kind, Record
from flare.v1 import telemetry_service_pb2 as pb
from flare.violation import FieldViolation

# At most this many missing sequence numbers are listed in one answer.
MAX_MISSING_LISTED = 1000
MAX_GPUS = 256
_UNHEALTHY = pb.GPU_HEALTH_UNHEALTHY
_NAN = float("nan")


@dataclass
class NodeState:
    key: str  # "provider/cluster/node"
    instance: str
    inventory: pb.NodeInventory
    sequence: int = 0  # highest applied
    durable: int = 0  # highest in the journal
    stream: int = 0  # the stream that speaks for the node now
    heard: float = 0.0  # monotonic time of the last message
    samples: int = 0
    stale: bool = False  # the agent has not been heard for too long
    latest: dict[str, pb.GpuSample] = field(default_factory=dict)
    # The inventory's GPUs by uuid (looked up for every sample).
    gpus: dict[str, pb.GpuDevice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gpus = {gpu.uuid: gpu for gpu in self.inventory.gpus}

    def take_inventory(self, inventory: pb.NodeInventory) -> None:
        """A new inventory; the samples of GPUs that left it go with them."""
        self.inventory = inventory
        self.gpus = {gpu.uuid: gpu for gpu in inventory.gpus}
        for uuid in [u for u in self.latest if u not in self.gpus]:
            del self.latest[uuid]

    def healthy_gpus(self) -> list[pb.GpuDevice]:
        """The GPUs of the inventory whose latest sample does not say UNHEALTHY."""
        return [
            gpu
            for gpu in self.inventory.gpus
            if gpu.uuid not in self.latest or self.latest[gpu.uuid].health != _UNHEALTHY
        ]


@dataclass(frozen=True, slots=True)
class Verdict:
    fresh: bool  # apply and journal it; False: a duplicate
    missing: tuple[int, ...] = ()


class Superseded(FailedPrecondition):
    """A newer stream of the same node took over."""


def node_key(inventory: pb.NodeInventory) -> str:
    return f"{inventory.provider}/{inventory.cluster or inventory.provider}/{inventory.node}"


def inventory_violations(inventory: pb.NodeInventory, path: str) -> list[FieldViolation]:
    found = [
        FieldViolation(f"{path}.{name}", "required")
        for name in ("provider", "node")
        if not getattr(inventory, name).strip()
    ]
    if len(inventory.gpus) > MAX_GPUS:
        found.append(FieldViolation(f"{path}.gpus", f"at most {MAX_GPUS} GPUs per node"))
    seen: set[str] = set()
    for i, gpu in enumerate(inventory.gpus):
        if not gpu.uuid:
            found.append(FieldViolation(f"{path}.gpus[{i}].uuid", "required"))
        elif gpu.uuid in seen:
            found.append(FieldViolation(f"{path}.gpus[{i}].uuid", f"{gpu.uuid} appears twice"))
        seen.add(gpu.uuid)
    return found


class TelemetryHub:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, history: History | None = None
    ) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.history = history
        self.duplicates = 0
        self.missing = 0
        self._clock = clock
        self._streams = 0
        self._listeners: list[Callable[[NodeState], None]] = []
        # GPUs whose state changed since the watchers last looked: (node key, uuid).
        self.dirty: set[tuple[str, str]] = set()

    def on_node_changed(self, listener: Callable[[NodeState], None]) -> None:
        """`listener` hears of every change of a node's inventory or GPU health."""
        self._listeners.append(listener)

    def _changed(self, state: NodeState) -> None:
        self.dirty.update((state.key, gpu.uuid) for gpu in state.inventory.gpus)
        for listener in list(self._listeners):
            listener(state)

    def hello(self, request: pb.StreamTelemetryRequest) -> tuple[NodeState, int]:
        """Opens a stream for the node the hello's inventory names; returns the
        node and the stream's number, which speaks for the node until a newer
        stream opens."""
        problems = []
        if request.sequence != 0:
            problems.append(FieldViolation("sequence", "a stream opens with sequence 0"))
        if not request.agent_instance:
            problems.append(FieldViolation("agent_instance", "required"))
        if request.WhichOneof("payload") != "inventory":
            problems.append(FieldViolation("inventory", "a stream opens with the inventory"))
        else:
            problems += inventory_violations(request.inventory, "inventory")
        if problems:
            raise InvalidArgument(problems)
        state = self._introduce(request.agent_instance, request.inventory)
        self._streams += 1
        state.stream = self._streams
        self._heard(state)
        return state, state.stream

    def _introduce(self, instance: str, inventory: pb.NodeInventory) -> NodeState:
        key = node_key(inventory)
        state = self.nodes.get(key)
        if state is None or state.instance != instance:
            state = NodeState(key, instance, inventory)
            self.nodes[key] = state
            self._changed(state)
        elif state.inventory != inventory:
            self._take_inventory(state, inventory)
        return state

    def accept(self, state: NodeState, stream: int, request: pb.StreamTelemetryRequest) -> Verdict:
        """Applies one sequenced message of `stream`, unless it is a duplicate."""
        if self.nodes.get(state.key) is not state or state.stream != stream:
            raise Superseded(f"a newer stream of {state.key} took over")
        if request.agent_instance != state.instance:
            raise InvalidArgument(
                [FieldViolation("agent_instance", "differs from the hello of this stream")]
            )
        if request.sequence == 0:
            raise InvalidArgument([FieldViolation("sequence", "only the hello has sequence 0")])
        payload = request.WhichOneof("payload")
        if payload == "inventory":
            problems = inventory_violations(request.inventory, "inventory")
            if problems:
                raise InvalidArgument(problems)
        elif payload != "samples":
            raise InvalidArgument([FieldViolation("payload", "inventory or samples required")])
        self._heard(state)
        return self._apply(state, request)

    def _heard(self, state: NodeState) -> None:
        state.heard = self._clock()
        if state.stale:
            state.stale = False
            self._changed(state)

    def sweep(self, stale_after: float) -> list[NodeState]:
        """Marks the nodes not heard for `stale_after` seconds stale; returns them."""
        now = self._clock()
        gone = [
            state
            for state in self.nodes.values()
            if not state.stale and now - state.heard > stale_after
        ]
        for state in gone:
            state.stale = True
            self._changed(state)
        return gone

    def _apply(self, state: NodeState, request: pb.StreamTelemetryRequest) -> Verdict:
        sequence = request.sequence
        if sequence <= state.sequence:
            self.duplicates += 1
            return Verdict(fresh=False)
        skipped = sequence - state.sequence - 1
        missing = tuple(
            range(state.sequence + 1, state.sequence + 1 + min(skipped, MAX_MISSING_LISTED))
        )
        self.missing += skipped
        state.sequence = sequence
        if request.WhichOneof("payload") == "inventory":
            if state.inventory != request.inventory:
                self._take_inventory(state, request.inventory)
        else:
            self._take_samples(state, request.samples.samples)
        return Verdict(fresh=True, missing=missing)

    def _take_samples(self, state: NodeState, samples: Iterable[pb.GpuSample]) -> None:
        known = state.gpus
        latest = state.latest
        dirty = self.dirty
        history = self.history
        health_changed = False
        for sample in samples:
            uuid = sample.uuid
            if uuid not in known:
                continue  # a GPU that left the inventory; its state goes with it
            before = latest.get(uuid)
            unhealthy = sample.health == _UNHEALTHY
            if (before is not None and before.health == _UNHEALTHY) != unhealthy:
                health_changed = True
            latest[uuid] = sample
            state.samples += 1
            dirty.add((state.key, uuid))
            if history is not None:
                stamp = sample.time
                history.record(
                    (state.key, uuid),
                    stamp.seconds + stamp.nanos / 1e9 if stamp.seconds else time.time(),
                    (
                        sample.gpu_utilization_percent
                        if sample.HasField("gpu_utilization_percent")
                        else _NAN,
                        sample.power_watts if sample.HasField("power_watts") else _NAN,
                    ),
                )
        if health_changed:
            self._changed(state)

    def _take_inventory(self, state: NodeState, inventory: pb.NodeInventory) -> None:
        before = set(state.gpus)
        state.take_inventory(inventory)
        if self.history is not None:
            for uuid in before - set(state.gpus):
                self.history.forget((state.key, uuid))
        self._changed(state)

    def take_dirty(self) -> set[tuple[str, str]]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def committed(self, state: NodeState, sequence: int) -> None:
        state.durable = max(state.durable, sequence)

    def rollback(self, state: NodeState) -> None:
        """The journal failed: what was applied but never made durable may come again."""
        state.sequence = state.durable

    def closed(self, state: NodeState, stream: int) -> None:
        """`stream` ended (a newer one may already speak for the node)."""
        if self.nodes.get(state.key) is state and state.stream == stream:
            state.heard = self._clock()
            state.stream = 0

    # -- the journal ---------------------------------------------------------

    def replay(self, records: Iterable[Record]) -> int:
        """Rebuilds the state from the journal; returns how many records it read."""
        count = 0
        for record in records:
            count += 1
            request = pb.StreamTelemetryRequest.FromString(record.body)
            if record.kind == Kind.CHECKPOINT or request.sequence == 0:
                state = self._introduce(request.agent_instance, request.inventory)
                if record.kind == Kind.CHECKPOINT:
                    state.sequence = max(state.sequence, request.sequence)
            else:
                known = self.nodes.get(record.key)
                if known is None or known.instance != request.agent_instance:
                    continue  # its hello was in a damaged segment
                state = known
                self._apply(state, request)
            state.durable = state.sequence
        self.duplicates = self.missing = 0
        now = self._clock()
        for state in self.nodes.values():
            state.heard = now  # every agent gets the full stale period to come back
        return count

    def checkpoint(self) -> Iterable[tuple[str, bytes]]:
        """Each node's state as a record body, for the start of a journal segment."""
        for state in self.nodes.values():
            request = pb.StreamTelemetryRequest(
                sequence=state.sequence, agent_instance=state.instance, inventory=state.inventory
            )
            yield state.key, request.SerializeToString()
