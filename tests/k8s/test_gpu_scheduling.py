"""The real kube-scheduler places GPU pods on kwok nodes, and kwok runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.harness.gpu_nodes import AMD_GPU, NVIDIA_GPU, create_gpu_node
from tests.harness.waiting import wait_until
from tests.k8s.conftest import unique

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Pod

pytestmark = pytest.mark.k8s

TIMEOUT = 30.0


def gpu_pod(name: str, resource: str, count: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "flare/trainer:test",
                    "resources": {"limits": {resource: str(count)}},
                }
            ],
        },
    }


def create_pod(api: ApiClient, namespace: str, manifest: dict[str, Any]) -> str:
    from kubernetes import client

    pod = client.V1Pod.from_dict(manifest)
    assert pod is not None
    client.CoreV1Api(api).create_namespaced_pod(namespace, pod)
    return str(manifest["metadata"]["name"])


def condition(pod: V1Pod, kind: str) -> Any:
    conditions = (pod.status.conditions if pod.status else None) or []
    return next((c for c in conditions if c.type == kind), None)


@pytest.fixture(scope="module")
def gpu_nodes(api: ApiClient) -> dict[str, str]:
    """One NVIDIA node with 4 GPUs and one AMD node with 2, by resource name."""
    nodes = {NVIDIA_GPU: unique("nvidia-node"), AMD_GPU: unique("amd-node")}
    create_gpu_node(api, nodes[NVIDIA_GPU], {NVIDIA_GPU: 4})
    create_gpu_node(api, nodes[AMD_GPU], {AMD_GPU: 2})
    return nodes


@pytest.mark.parametrize(("resource", "count"), [(NVIDIA_GPU, 3), (AMD_GPU, 1)])
def test_gpu_pod_runs_on_the_node_with_that_gpu(
    api: ApiClient, namespace: str, gpu_nodes: dict[str, str], resource: str, count: int
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = create_pod(api, namespace, gpu_pod(unique("train"), resource, count))

    def running() -> V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status and pod.status.phase == "Running" else None

    pod = wait_until(running, timeout=TIMEOUT, what=f"pod {name} to run")
    assert pod.spec is not None and pod.spec.node_name == gpu_nodes[resource]
    ready = condition(pod, "Ready")
    assert ready is not None and ready.status == "True"


def test_pod_asking_more_gpus_than_any_node_stays_pending(
    api: ApiClient, namespace: str, gpu_nodes: dict[str, str]
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = create_pod(api, namespace, gpu_pod(unique("too-big"), NVIDIA_GPU, 64))

    def unschedulable() -> V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        scheduled = condition(pod, "PodScheduled")
        return pod if scheduled is not None and scheduled.reason == "Unschedulable" else None

    pod = wait_until(unschedulable, timeout=TIMEOUT, what=f"pod {name} to be unschedulable")
    assert pod.status is not None and pod.status.phase == "Pending"
    assert pod.spec is not None and pod.spec.node_name is None
    scheduled = condition(pod, "PodScheduled")
    assert scheduled.status == "False"
    assert f"Insufficient {NVIDIA_GPU}" in scheduled.message
