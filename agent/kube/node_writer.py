"""Writes the agent's annotations and labels on its own Node with server-side apply.

The agent applies, as field manager `flare-agent`, the full set of keys it wants each pass, so a
key it stops applying (a GPU or trait that went away) is removed by the API server. A pass that
would change nothing makes no request. Keys another manager owns with a different value are
left alone and reported; the agent's other keys are still written.

When GPU Feature Discovery's labels are on the Node, or a DRA driver publishes the node's GPUs
in ResourceSlices, they are compared with the agent's inventory; a disagreement becomes the Node
condition `FlareGpuInventoryMismatch` and a Warning Event on the Node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent import annotations as table
from agent import dra as dra_check
from agent.config import ProviderConfig
from agent.kube._raw import APPLY_PATCH, STRATEGIC_MERGE_PATCH, raw
from agent.probe.base import Inventory
from flare import dra, gpus

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "flare-agent"
CONDITION = "FlareGpuInventoryMismatch"
EVENT_REASON = "GpuInventoryMismatch"
EVENT_NAMESPACE = "default"
AGREEMENT = "the node's published GPUs agree with the agent's inventory"
GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_COUNT = "nvidia.com/gpu.count"
GFD_MEMORY = "nvidia.com/gpu.memory"  # MiB
_MIB = 2**20
_SECTIONS = ("annotations", "labels")


@dataclass
class SyncResult:
    wrote: bool = False
    # Keys the agent wanted but another field manager holds with another value.
    left_alone: list[str] = field(default_factory=list)
    # Malformed values found on the Node, values the agent refused to write, keys left alone.
    problems: list[str] = field(default_factory=list)
    # Disagreements with GPU Feature Discovery and the DRA driver's ResourceSlices.
    mismatches: list[str] = field(default_factory=list)


def owned_keys(node: Mapping[str, Any], manager: str, *, mine: bool) -> dict[str, set[str]]:
    """Annotation and label keys that `manager` applied (mine=True), or that any other manager
    set in any way (mine=False), as managedFields records them."""
    found: dict[str, set[str]] = {section: set() for section in _SECTIONS}
    for entry in node.get("metadata", {}).get("managedFields") or []:
        if entry.get("subresource"):
            continue
        if mine != (entry.get("manager") == manager and entry.get("operation") == "Apply"):
            continue
        if not mine and entry.get("manager") == manager:
            continue
        metadata = (entry.get("fieldsV1") or {}).get("f:metadata") or {}
        for section in _SECTIONS:
            for name in metadata.get(f"f:{section}") or {}:
                if name.startswith("f:"):
                    found[section].add(name[2:])
    return found


def gfd_mismatches(labels: Mapping[str, str], inventory: Inventory) -> list[str]:
    """How GPU Feature Discovery's labels disagree with the inventory (empty when they agree or
    are absent)."""
    present = [name for name in (GFD_PRODUCT, GFD_COUNT, GFD_MEMORY) if name in labels]
    if not present:
        return []
    if not inventory.gpus:
        named = ", ".join(present)
        return [f"GPU Feature Discovery labels the node ({named}) but the agent found no GPU"]
    model, count, _ = table.majority(inventory.gpus)
    memory = min(g.memory_bytes for g in inventory.gpus if (g.model or g.raw_name) == model)
    found: list[str] = []
    if GFD_PRODUCT in labels:
        product = labels[GFD_PRODUCT]
        spec = gpus.from_product_name(product)
        if spec is None or spec.model != model:
            found.append(f"{GFD_PRODUCT} is {product!r} but the agent found {model}")
    if GFD_COUNT in labels:
        text = labels[GFD_COUNT]
        if not text.isdigit() or int(text) != count:
            found.append(f"{GFD_COUNT} is {text!r} but the agent found {count} {model}")
    if GFD_MEMORY in labels:
        text = labels[GFD_MEMORY]
        mib = memory / _MIB
        if not text.isdigit() or abs(int(text) - mib) > gpus.MEMORY_TOLERANCE * mib:
            found.append(f"{GFD_MEMORY} is {text!r} MiB but the agent found {mib:.0f} MiB per GPU")
    return found


def dra_published(
    devices: Sequence[dra.Device], inventory: Inventory
) -> dra_check.Published | None:
    """What the DRA driver of the node's (majority) GPU vendor publishes."""
    if not inventory.gpus:
        return None
    model, _, _ = table.majority(inventory.gpus)
    vendor = next(g.vendor for g in inventory.gpus if (g.model or g.raw_name) == model)
    return dra_check.published(devices, vendor)


class NodeWriter:
    """Keeps one Node's FLARE annotations, labels and inventory condition current."""

    def __init__(
        self, api_client: ApiClient, node_name: str, *, manager: str = FIELD_MANAGER
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.manager = manager

    def read_node(self) -> dict[str, Any]:
        return raw(self.core.read_node, self.node_name)

    def sync(
        self,
        inventory: Inventory,
        config: ProviderConfig,
        devices: Sequence[dra.Device] | None = None,
    ) -> SyncResult:
        """`devices`: the node's ResourceSlices' devices (None: they could not be read)."""
        from kubernetes.client.exceptions import ApiException

        result = SyncResult()
        slices = dra_published(devices or (), inventory)
        wanted = {
            "annotations": self._checked(table.annotations_for(inventory, config, slices), result),
            "labels": table.labels_for(inventory),
        }
        node = self.read_node()
        metadata = node.get("metadata", {})
        existing = metadata.get("annotations") or {}
        result.problems += [f"on the node: {problem}" for problem in table.validate(existing)]
        for attempt in range(2):
            desired = self._without_others(node, wanted, result)
            if self._unchanged(node, desired):
                break
            try:
                self._apply(desired)
            except ApiException as error:
                if error.status != 409 or attempt:
                    raise
                node = self.read_node()  # someone took a key in between: decide again
                continue
            result.wrote = True
            node = self.read_node()
            break
        labels = (node.get("metadata") or {}).get("labels") or {}
        result.mismatches = gfd_mismatches(labels, inventory) + dra_check.mismatches(
            devices or (), inventory
        )
        self._report(node, result.mismatches)
        return result

    @staticmethod
    def _checked(annotations: dict[str, str], result: SyncResult) -> dict[str, str]:
        kept = {}
        for name, text in annotations.items():
            try:
                table.parse_value(table.BY_NAME[name], text)
            except ValueError as error:
                result.problems.append(f"not written: {name}: {error}")
                continue
            kept[name] = text
        return kept

    def _without_others(
        self, node: Mapping[str, Any], wanted: Mapping[str, dict[str, str]], result: SyncResult
    ) -> dict[str, dict[str, str]]:
        others = owned_keys(node, self.manager, mine=False)
        metadata = node.get("metadata") or {}
        desired: dict[str, dict[str, str]] = {}
        result.left_alone.clear()
        for section in _SECTIONS:
            current = metadata.get(section) or {}
            desired[section] = {}
            for name, value in wanted[section].items():
                if name in others[section] and current.get(name) != value:
                    result.left_alone.append(name)
                    continue
                desired[section][name] = value
        result.problems += [
            f"left alone: {name} belongs to another field manager" for name in result.left_alone
        ]
        return desired

    def _unchanged(self, node: Mapping[str, Any], desired: Mapping[str, dict[str, str]]) -> bool:
        mine = owned_keys(node, self.manager, mine=True)
        metadata = node.get("metadata") or {}
        return all(
            mine[section] == set(desired[section])
            and all((metadata.get(section) or {}).get(k) == v for k, v in desired[section].items())
            for section in _SECTIONS
        )

    def _apply(self, desired: Mapping[str, dict[str, str]]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, **desired},
        }
        self.core.patch_node(
            self.node_name,
            body,
            field_manager=self.manager,
            _content_type=APPLY_PATCH,
            _preload_content=False,
        )

    def _report(self, node: Mapping[str, Any], mismatches: list[str]) -> None:
        conditions = (node.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == CONDITION), None)
        if not mismatches and current is None:
            return
        status = "True" if mismatches else "False"
        message = "; ".join(mismatches) or AGREEMENT
        if current and current.get("status") == status and current.get("message") == message:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = current is None or current.get("status") != status
        since = now if current is None or changed else current.get("lastTransitionTime", now)
        condition = {
            "type": CONDITION,
            "status": status,
            "reason": "InventoryMismatch" if mismatches else "InventoryMatches",
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
        self.core.patch_node_status(
            self.node_name,
            {"status": {"conditions": [condition]}},
            field_manager=self.manager,
            _content_type=STRATEGIC_MERGE_PATCH,
            _preload_content=False,
        )
        if mismatches:
            self._event(node, message, now)

    def _event(self, node: Mapping[str, Any], message: str, now: str) -> None:
        from kubernetes import client

        metadata = node.get("metadata") or {}
        body = client.CoreV1Event.from_dict(
            {
                "metadata": {"generateName": f"{self.node_name}.", "namespace": EVENT_NAMESPACE},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": self.node_name,
                    "uid": metadata.get("uid"),
                },
                "reason": EVENT_REASON,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": self.manager, "host": self.node_name},
                "reportingComponent": self.manager,
                "reportingInstance": self.node_name,
            }
        )
        assert body is not None
        self.core.create_namespaced_event(EVENT_NAMESPACE, body, _preload_content=False)
