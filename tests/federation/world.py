"""The FLUIDOS world of the federation tests and the allocation benchmark:
three provider clusters selling A100s at different prices and distances, each
with one kwok GPU node whose Flavor FLARE's agent publishes, and the FAKE
FLUIDOS and Liqo controllers working the consumer cluster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from agent.config import ProviderConfig
from agent.kube.flavor import FlavorWriter
from agent.probe.sim import SimProbe
from flare.money import Money
from tests.fakes.fluidos import NAMESPACE, FakeFluidos, Provider
from tests.harness.cluster import Cluster
from tests.harness.federation import Federation
from tests.harness.gpu_nodes import NVIDIA_GPU, create_gpu_node

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@dataclass(frozen=True)
class Offering:
    """What one provider cluster sells in these tests."""

    model: str
    gpus: int
    price: str  # EUR per GPU-hour
    country: str
    region: str
    latency_ms: int


# First match (the earlier FLARE's choice: the first candidate) is provider-1 for every
# A100 intent; the cheapest is provider-2, the nearest provider-3.
OFFERINGS = {
    "provider-1": Offering("a100", 8, "2.00", "DE", "eu-central-1", 30),
    "provider-2": Offering("a100", 8, "1.10", "FR", "eu-west-3", 20),
    "provider-3": Offering("a100", 4, "1.60", "NL", "eu-west-4", 5),
}


@dataclass
class World:
    federation: Federation
    consumer: ApiClient
    fake: FakeFluidos
    api: Callable[[Cluster], ApiClient]


def _namespace(api: ApiClient, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as error:
        if error.status != 409:
            raise


def _publish(api: ApiClient, cluster: str, offering: Offering) -> None:
    node = f"{cluster}-gpu"
    create_gpu_node(api, node, {NVIDIA_GPU: offering.gpus})
    config = ProviderConfig(
        provider_name=cluster,
        region=offering.region,
        hourly_rate=Money(Decimal(offering.price), "EUR"),
        country=offering.country,
        availability_percent=99.95,
        network_latency_ms=offering.latency_ms,
        node_id=cluster,
        domain=f"{cluster}.fluidos.local",
        ip="127.0.0.1",
        liqo_id=cluster,
        flavor_namespace=NAMESPACE,
    )
    FlavorWriter(api, node).sync(SimProbe(offering.model, offering.gpus).inventory(), config)


def fake_fluidos(federation: Federation, api: Callable[[Cluster], ApiClient]) -> FakeFluidos:
    """Prepares every cluster (the `fluidos` namespace, the providers' nodes and Flavors) and
    returns the FAKE controllers, not yet started."""
    for cluster in federation.clusters:
        _namespace(api(cluster), NAMESPACE)
    providers = []
    for cluster in federation.providers:
        _publish(api(cluster), cluster.name, OFFERINGS[cluster.name])
        providers.append(Provider(cluster.name, api(cluster)))
    return FakeFluidos(api(federation.consumer), providers)
