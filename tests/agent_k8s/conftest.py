"""Fixtures of the agent's Kubernetes tests: an admin client of the session cluster, a fresh
namespace, and fresh kwok GPU Nodes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.harness.cluster import Cluster
from tests.harness.gpu_nodes import NVIDIA_GPU, create_gpu_node

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def api(k8s_cluster: Cluster, k8s_api_client: Callable[[Cluster], ApiClient]) -> ApiClient:
    return k8s_api_client(k8s_cluster)


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    from kubernetes import client

    name = unique("agent")
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def make_node(api: ApiClient) -> Iterator[Callable[..., str]]:
    """Creates uniquely named kwok GPU Nodes (labels optional) and deletes them afterwards."""
    from kubernetes import client

    made: list[str] = []

    def make(gpus: int = 8, labels: dict[str, str] | None = None) -> str:
        name = unique("agent-node")
        create_gpu_node(api, name, {NVIDIA_GPU: gpus}, labels=labels)
        made.append(name)
        return name

    yield make
    for name in made:
        client.CoreV1Api(api).delete_node(name)
