"""A federation is one consumer and two provider clusters that share nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.harness.cluster import Cluster
from tests.harness.federation import Federation
from tests.harness.gpu_nodes import NVIDIA_GPU, create_gpu_node
from tests.k8s.conftest import create_namespace, unique
from tests.k8s.test_custom_resources import solver, solvers

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

ClientFor = Callable[[Cluster], "ApiClient"]


def test_federation_has_a_consumer_and_three_providers(k8s_federation: Federation) -> None:
    assert [c.name for c in k8s_federation.clusters] == [
        "consumer",
        "provider-1",
        "provider-2",
        "provider-3",
    ]
    servers = {cluster.server for cluster in k8s_federation.clusters}
    ports = [port for cluster in k8s_federation.clusters for port in cluster.ports.all()]
    assert len(servers) == 4
    assert len(set(ports)) == len(ports)


def test_objects_in_one_cluster_are_absent_from_the_others(
    k8s_federation: Federation, k8s_api_client: ClientFor
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    consumer, provider, *others = k8s_federation.clusters
    namespace = unique("isolation")
    name = unique("solver")
    consumer_api = k8s_api_client(consumer)
    create_namespace(consumer_api, namespace)
    solvers(consumer_api).create(namespace, solver(name, "consumer-intent"))

    for cluster in (provider, *others):
        core = client.CoreV1Api(k8s_api_client(cluster))
        with pytest.raises(ApiException) as missing:
            core.read_namespace(namespace)
        assert missing.value.status == 404

    # The same names can hold different objects in another cluster.
    provider_api = k8s_api_client(provider)
    create_namespace(provider_api, namespace)
    solvers(provider_api).create(namespace, solver(name, "provider-intent"))
    intents = [
        solvers(k8s_api_client(cluster)).get(namespace, name)["spec"]["intentID"]
        for cluster in (consumer, provider)
    ]
    assert intents == ["consumer-intent", "provider-intent"]


def test_nodes_belong_to_one_cluster(k8s_federation: Federation, k8s_api_client: ClientFor) -> None:
    from kubernetes import client

    provider = k8s_federation.providers[0]
    node = unique("provider-gpu")
    create_gpu_node(k8s_api_client(provider), node, {NVIDIA_GPU: 8})
    for cluster in k8s_federation.clusters:
        names = {
            n.metadata.name
            for n in client.CoreV1Api(k8s_api_client(cluster)).list_node().items
            if n.metadata is not None
        }
        assert (node in names) == (cluster is provider)
