"""Fake GPU Nodes managed by kwok: the real scheduler places pods on them, kwok runs the pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

NVIDIA_GPU = "nvidia.com/gpu"
AMD_GPU = "amd.com/gpu"
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_READY_TIMEOUT = 60.0


def gpu_node(
    name: str,
    gpus: Mapping[str, int],
    *,
    cpu: str = "64",
    memory: str = "512Gi",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of a kwok-managed Node offering `gpus` (resource name -> count)."""
    resources = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    resources.update({resource: str(count) for resource, count in gpus.items()})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        "spec": {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def node_schedulable(node: Mapping[str, Any]) -> bool:
    """Whether a Node object is Ready and carries no taint that keeps new pods away."""
    status = node.get("status") or {}
    ready = any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )
    taints = (node.get("spec") or {}).get("taints") or []
    blocking = [taint for taint in taints if taint.get("effect") in ("NoSchedule", "NoExecute")]
    return ready and not blocking


def create_gpu_node(
    api_client: ApiClient,
    name: str,
    gpus: Mapping[str, int],
    *,
    labels: Mapping[str, str] | None = None,
    timeout: float = NODE_READY_TIMEOUT,
) -> dict[str, Any]:
    """Creates a kwok-managed GPU Node and waits until pods can be scheduled onto it."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    manifest = client.V1Node.from_dict(gpu_node(name, gpus, labels=labels))
    assert manifest is not None
    core.create_node(manifest)

    def schedulable() -> dict[str, Any] | None:
        node = core.read_node(name).to_dict()
        return node if node_schedulable(node) else None

    return wait_until(schedulable, timeout=timeout, what=f"node {name} to be schedulable")
