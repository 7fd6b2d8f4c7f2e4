"""What the intents running on a node must learn when its GPUs' health changes:
a GPU of theirs went unhealthy or was lost, the node's agent went quiet, or it
recovered. Each change is said once; a failure moves the intent (the engine's
failover)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.telemetry.hub import NodeState
from flare.v1 import telemetry_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class Notice:
    intent: str
    reason: str  # CamelCase, as in the intent's history
    message: str

    @property
    def failure(self) -> bool:
        """The intent cannot go on where it runs."""
        return self.reason != "GpuRecovered"


@dataclass
class HealthNotices:
    # (node key, uuid) -> the trouble last told to the GPU's intent
    _told: dict[tuple[str, str], str] = field(default_factory=dict)

    def changed(self, node: NodeState, held: list[tuple[str, str]]) -> list[Notice]:
        """Notices for the intents holding GPUs of `node` ((uuid, intent) pairs)."""
        notices = []
        where = f"{node.inventory.node} ({node.inventory.provider})"
        for uuid, intent in held:
            trouble = _trouble(node, uuid)
            key = (node.key, uuid)
            before = self._told.get(key)
            if trouble == before:
                continue
            if trouble:
                self._told[key] = trouble
                reason, message = _TROUBLE[trouble]
                notices.append(Notice(intent, reason, message.format(uuid=uuid, where=where)))
            else:
                del self._told[key]
                notices.append(
                    Notice(intent, "GpuRecovered", f"GPU {uuid} on {where} reports healthy again")
                )
        return notices


_TROUBLE = {
    "stale": ("NodeStale", "the agent of {where} stopped reporting; GPU {uuid} is unaccounted for"),
    "lost": ("GpuLost", "GPU {uuid} on {where} left the node's inventory"),
    "unhealthy": ("GpuUnhealthy", "GPU {uuid} on {where} reports unhealthy"),
}


def _trouble(node: NodeState, uuid: str) -> str:
    if node.stale:
        return "stale"
    if uuid not in node.gpus:
        return "lost"
    latest = node.latest.get(uuid)
    if latest is not None and latest.health == pb.GPU_HEALTH_UNHEALTHY:
        return "unhealthy"
    return ""
