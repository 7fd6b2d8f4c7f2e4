"""The long-running agent against a real API server: its first pass writes the
Node and the Flavor, a lost GPU rewrites them at once, and what someone
deletes by hand comes back at the next resync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from agent.kube._raw import raw
from agent.kube.flavor import GROUP, PLURAL, VERSION, flavor_name
from agent.kube.sync import kube_sync
from agent.probe.sim import Fault, SimProbe
from agent.runner import Agent
from tests.agent_k8s.test_node_writer import config, merge_patch, read_node

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        assert time.monotonic() < deadline, "not true in time"
        await asyncio.sleep(0.1)


async def test_the_agent_keeps_its_node_and_flavor_current(
    api: ApiClient, make_node: Callable[..., str], namespace: str
) -> None:
    from kubernetes import client

    name = make_node(gpus=4)
    settings = config(flavor_namespace=namespace)
    probe = SimProbe("h100", 4, faults=[Fault(index=3, kind="lost", at=15)])
    agent = Agent(
        probe,
        settings,
        name,
        interval=0.05,
        kube_sync=kube_sync(api, name, settings),
        resync_seconds=0.5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    custom = client.CustomObjectsApi(api)

    def annotation(key: str) -> str | None:
        return (read_node(api, name)["metadata"].get("annotations") or {}).get(key)

    def flavor_gpus() -> Any:
        flavor = raw(
            custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            flavor_name(name),
        )
        return flavor["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]["count"]

    try:
        assert await until(lambda: annotation("gpu.fluidos.eu/count") == "3")  # after the loss
        assert await until(lambda: flavor_gpus() == 3)
        merge_patch(api, name, {"gpu.fluidos.eu/model": None})  # drift made by hand
        assert await until(lambda: annotation("gpu.fluidos.eu/model") == "nvidia-h100")
    finally:
        stop.set()
        report = await task
    assert report.inventories == 1  # the one change: the lost GPU
    assert report.kube_syncs >= 3 and report.kube_failures == 0
