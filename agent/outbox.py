"""What the agent has said but the control plane has not yet acknowledged.

Every message gets the next sequence number of this agent instance and stays
here until an acknowledgement covers it, across any number of disconnects. The
box is bounded: when the control plane is away longer than it holds, the oldest
messages go (and are counted); the control plane then sees the gap and reports
it, so a loss is never silent.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque

from flare.v1 import telemetry_service_pb2 as pb


class Outbox:
    def __init__(self, capacity: int, instance: str | None = None) -> None:
        if capacity < 1:
            raise ValueError("the outbox must hold at least one message")
        self.capacity = capacity
        self.instance = instance or uuid.uuid4().hex
        self._pending: deque[pb.StreamTelemetryRequest] = deque()
        self._last_sequence = 0
        self.acked = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    def hello(self, inventory: pb.NodeInventory) -> pb.StreamTelemetryRequest:
        """The unsequenced message that opens every stream."""
        return pb.StreamTelemetryRequest(
            sequence=0, agent_instance=self.instance, inventory=inventory
        )

    def put(self, payload: pb.NodeInventory | pb.SampleBatch) -> pb.StreamTelemetryRequest:
        self._last_sequence += 1
        message = pb.StreamTelemetryRequest(
            sequence=self._last_sequence, agent_instance=self.instance
        )
        if isinstance(payload, pb.NodeInventory):
            message.inventory.CopyFrom(payload)
        else:
            message.samples.CopyFrom(payload)
        self._pending.append(message)
        while len(self._pending) > self.capacity:
            self._pending.popleft()
            self.dropped += 1
        return message

    def acknowledge(self, sequence: int) -> int:
        """Forgets every message up to `sequence`; returns how many went."""
        if sequence > self._last_sequence:
            raise ValueError(
                f"acknowledgement {sequence} is beyond the last message sent "
                f"({self._last_sequence})"
            )
        self.acked = max(self.acked, sequence)
        gone = 0
        while self._pending and self._pending[0].sequence <= sequence:
            self._pending.popleft()
            gone += 1
        return gone

    def after(self, sequence: int) -> list[pb.StreamTelemetryRequest]:
        """The pending messages with a sequence number above `sequence`, in order."""
        if not self._pending:
            return []
        # Pending sequence numbers are contiguous: only the oldest ever leave.
        start = max(0, sequence + 1 - self._pending[0].sequence)
        return list(itertools.islice(self._pending, start, None))
