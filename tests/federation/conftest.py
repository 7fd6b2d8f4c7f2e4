"""A FLUIDOS federation on the harness for the `fluidos` adapter's tests (see
world.py), and a control plane running against its consumer cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.federation.world import OFFERINGS, World, fake_fluidos
from tests.harness.cluster import Cluster
from tests.harness.federation import Federation

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@pytest.fixture(scope="session")
def fluidos_world(
    k8s_federation: Federation, k8s_api_client: Callable[[Cluster], ApiClient]
) -> Iterator[World]:
    consumer = k8s_api_client(k8s_federation.consumer)
    with fake_fluidos(k8s_federation, k8s_api_client) as fake:
        yield World(k8s_federation, consumer, fake, k8s_api_client)
    assert not fake.errors, fake.errors


@pytest.fixture
async def fluidos_plane(fluidos_world: World, tmp_path: Path) -> AsyncIterator[Running]:
    settings = plane_settings(
        tmp_path / "data",
        kubeconfig=fluidos_world.federation.consumer.kubeconfig,
        check_seconds=0.5,
    )
    async with serving(settings) as running:
        # Discovery has run: every provider's candidate is an offer before any intent is
        # placed.
        deadline = asyncio.get_running_loop().time() + 60
        federation = running.plane.federation
        while {o.provider for o in (await federation.offers()).offers} < set(OFFERINGS):
            assert asyncio.get_running_loop().time() < deadline, "discovery did not finish"
            await asyncio.sleep(0.1)
        yield running
    await asyncio.sleep(0)
