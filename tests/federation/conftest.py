"""A FLUIDOS federation on the harness for the `fluidos` adapter's tests: the
consumer and three provider clusters, each provider with one kwok GPU node
whose FLUIDOS Flavor FLARE's agent publishes, the FAKE FLUIDOS and Liqo
controllers advancing the consumer's resources, and a control plane running
against the consumer cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from agent.config import ProviderConfig
from agent.kube.flavor import FlavorWriter
from agent.probe.sim import SimProbe
from controlplane.app import ControlPlane, Settings
from flare.money import Money
from tests.controlplane_fixtures import Running
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


@pytest.fixture(scope="session")
def fluidos_world(
    k8s_federation: Federation, k8s_api_client: Callable[[Cluster], ApiClient]
) -> Iterator[World]:
    consumer = k8s_api_client(k8s_federation.consumer)
    for cluster in k8s_federation.clusters:
        _namespace(k8s_api_client(cluster), NAMESPACE)
    providers = []
    for cluster in k8s_federation.providers:
        api = k8s_api_client(cluster)
        _publish(api, cluster.name, OFFERINGS[cluster.name])
        providers.append(Provider(cluster.name, api))
    with FakeFluidos(consumer, providers) as fake:
        yield World(k8s_federation, consumer, fake, k8s_api_client)
    assert not fake.errors, fake.errors


@pytest.fixture
async def fluidos_plane(fluidos_world: World, tmp_path: Path) -> AsyncIterator[Running]:
    settings = Settings(
        listen="127.0.0.1:0",
        http_listen="",
        metrics_listen="",
        data_dir=tmp_path / "data",
        synchronous="NORMAL",
        grace_seconds=0.5,
        kubeconfig=fluidos_world.federation.consumer.kubeconfig,
    )
    plane = ControlPlane(settings)
    await plane.start()
    # Discovery has run: every provider's candidate is an offer before any intent is placed.
    deadline = asyncio.get_running_loop().time() + 60
    while {o.provider for o in (await plane.federation.offers()).offers} < set(OFFERINGS):
        assert asyncio.get_running_loop().time() < deadline, "discovery did not finish"
        await asyncio.sleep(0.1)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{plane.grpc_port}")
    token = plane.admin_token_path.read_text().strip()
    try:
        yield Running(plane, channel, token, "")
    finally:
        await channel.close()
        await plane.stop()
        await asyncio.sleep(0)
