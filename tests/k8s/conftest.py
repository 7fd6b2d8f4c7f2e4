"""Fixtures shared by the harness tests: an admin client of the session cluster and a fresh
namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.harness.cluster import Cluster
from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_namespace(api_client: ApiClient, name: str) -> str:
    """Creates a namespace and waits for its default ServiceAccount, which pods need."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def has_default_account() -> bool:
        accounts = core.list_namespaced_service_account(name).items
        return any(a.metadata is not None and a.metadata.name == "default" for a in accounts)

    wait_until(has_default_account, timeout=30, what=f"default service account in {name}")
    return name


@pytest.fixture(scope="session")
def api(k8s_cluster: Cluster, k8s_api_client: Callable[[Cluster], ApiClient]) -> ApiClient:
    return k8s_api_client(k8s_cluster)


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    from kubernetes import client

    name = create_namespace(api, unique("test"))
    yield name
    client.CoreV1Api(api).delete_namespace(name)
