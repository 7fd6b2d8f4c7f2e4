"""The agent writing its Node and Flavor against a real API server."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from agent import annotations as table
from agent.config import ProviderConfig
from agent.kube._raw import raw
from agent.kube.flavor import GROUP, PLURAL, VERSION, FlavorWriter, flavor_name
from agent.kube.node_writer import CONDITION, EVENT_NAMESPACE, EVENT_REASON, NodeWriter
from agent.probe.base import Inventory
from agent.probe.sim import SimProbe
from flare.money import Money

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

MakeNode = Callable[..., str]


def config(**changes: Any) -> ProviderConfig:
    base = ProviderConfig(
        provider_name="acme-gpu",
        region="eu-west-1",
        zone="eu-west-1a",
        hourly_rate=Money(Decimal("2.50"), "EUR"),
        network_tier="premium",
        node_id="node-acme",
        domain="acme.example",
        ip="10.0.0.1",
    )
    return dataclasses.replace(base, **changes)


def h100(count: int = 8) -> Inventory:
    return SimProbe("nvidia-h100", count).inventory()


def mixed() -> Inventory:
    h = h100(6)
    a100 = SimProbe("nvidia-a100", 2, seed=1).inventory()
    extra = tuple(dataclasses.replace(g, index=g.index + 6) for g in a100.gpus)
    return dataclasses.replace(h, gpus=h.gpus + extra)


def read_node(api: ApiClient, name: str) -> dict[str, Any]:
    from kubernetes import client

    return raw(client.CoreV1Api(api).read_node, name)


def meta(node: dict[str, Any], section: str) -> dict[str, str]:
    return dict(node["metadata"].get(section) or {})


def ours(node: dict[str, Any], section: str) -> dict[str, str]:
    return {k: v for k, v in meta(node, section).items() if k.split("/")[0].endswith("fluidos.eu")}


def merge_patch(api: ApiClient, name: str, annotations: dict[str, str | None]) -> None:
    """What `kubectl annotate` does: an update by another field manager."""
    from kubernetes import client

    client.CoreV1Api(api).patch_node(
        name,
        {"metadata": {"annotations": annotations}},
        field_manager="ops-team",
        _content_type="application/merge-patch+json",
        _preload_content=False,
    )


def test_first_write_then_no_op_then_removed_keys(api: ApiClient, make_node: MakeNode) -> None:
    name = make_node()
    writer = NodeWriter(api, name)

    first = writer.sync(mixed(), config(network_bandwidth_gbps=100))
    assert first.wrote
    assert first.problems == []
    node = read_node(api, name)
    assert ours(node, "annotations") == table.annotations_for(
        mixed(), config(network_bandwidth_gbps=100)
    )
    assert ours(node, "labels") == {
        "node.fluidos.eu/gpu": "true",
        "node-role.fluidos.eu/resources": "true",
    }
    # Keys the agent does not write are still there.
    assert meta(node, "annotations")["kwok.x-k8s.io/node"] == "fake"

    version = node["metadata"]["resourceVersion"]
    again = writer.sync(mixed(), config(network_bandwidth_gbps=100))
    assert not again.wrote
    assert read_node(api, name)["metadata"]["resourceVersion"] == version

    # The two A100s and the bandwidth setting went away: their keys go with them.
    assert writer.sync(h100(6), config()).wrote
    annotations = meta(read_node(api, name), "annotations")
    assert "gpu.fluidos.eu/mix" not in annotations
    assert "network.fluidos.eu/bandwidth-gbps" not in annotations
    assert annotations["gpu.fluidos.eu/count"] == "6"
    assert annotations["network.fluidos.eu/tier"] == "premium"

    # No GPU at all: no GPU key, no GPU label, the provider keys stay.
    writer.sync(dataclasses.replace(h100(), gpus=(), links=()), config())
    node = read_node(api, name)
    assert not any(k.startswith(("gpu.", "nvidia.")) for k in meta(node, "annotations"))
    assert "node.fluidos.eu/gpu" not in meta(node, "labels")
    assert meta(node, "labels")["node-role.fluidos.eu/resources"] == "true"
    assert meta(node, "annotations")["provider.fluidos.eu/name"] == "acme-gpu"


def test_other_managers_keys_and_malformed_values(api: ApiClient, make_node: MakeNode) -> None:
    name = make_node()
    merge_patch(
        api,
        name,
        {
            "example.com/team": "ml-platform",
            "gpu.fluidos.eu/tier": "gaming",  # the agent would say premium
            "gpu.fluidos.eu/memory-per-gpu": "lots",  # malformed
            "gpu.fluidos.eu/multi_gpu_efficiency": "very",  # malformed alias, not ours
        },
    )
    result = NodeWriter(api, name).sync(h100(), config())
    assert result.wrote
    assert sorted(result.left_alone) == ["gpu.fluidos.eu/memory-per-gpu", "gpu.fluidos.eu/tier"]
    reported = " ".join(result.problems)
    assert "on the node: gpu.fluidos.eu/memory-per-gpu" in reported
    assert "on the node: gpu.fluidos.eu/multi_gpu_efficiency" in reported

    annotations = meta(read_node(api, name), "annotations")
    assert annotations["example.com/team"] == "ml-platform"
    assert annotations["gpu.fluidos.eu/tier"] == "gaming"
    assert annotations["gpu.fluidos.eu/memory-per-gpu"] == "lots"
    assert annotations["gpu.fluidos.eu/model"] == "nvidia-h100"

    # Once the other manager lets go of the key, the agent's next pass writes it.
    merge_patch(api, name, {"gpu.fluidos.eu/memory-per-gpu": None})
    later = NodeWriter(api, name).sync(h100(), config())
    assert later.left_alone == ["gpu.fluidos.eu/tier"]
    assert meta(read_node(api, name), "annotations")["gpu.fluidos.eu/memory-per-gpu"] == "80Gi"


def mismatch_events(api: ApiClient, node: dict[str, Any]) -> list[Any]:
    from kubernetes import client

    events = client.CoreV1Api(api).list_namespaced_event(
        EVENT_NAMESPACE, field_selector=f"involvedObject.name={node['metadata']['name']}"
    )
    return [e for e in events.items if e.reason == EVENT_REASON]


def inventory_condition(node: dict[str, Any]) -> dict[str, Any] | None:
    conditions = node.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == CONDITION), None)


def test_gfd_mismatch_becomes_event_and_condition(api: ApiClient, make_node: MakeNode) -> None:
    gfd = {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "40960",
    }
    name = make_node(labels=gfd)
    writer = NodeWriter(api, name)
    result = writer.sync(h100(), config())
    assert [m.split(" ")[0] for m in result.mismatches] == [
        "nvidia.com/gpu.product",
        "nvidia.com/gpu.memory",
    ]
    node = read_node(api, name)
    condition = inventory_condition(node)
    assert condition is not None
    assert condition["status"] == "True"
    assert "NVIDIA-A100-SXM4-40GB" in condition["message"]
    events = mismatch_events(api, node)
    assert len(events) == 1
    assert events[0].type == "Warning"
    assert events[0].involved_object.uid == node["metadata"]["uid"]
    # kwok's Ready condition is untouched.
    assert any(c["type"] == "Ready" for c in node["status"]["conditions"])

    # The same mismatch again: no new Event, no status write.
    version = node["metadata"]["resourceVersion"]
    writer.sync(h100(), config())
    assert read_node(api, name)["metadata"]["resourceVersion"] == version
    assert len(mismatch_events(api, node)) == 1

    # GFD agrees again: the condition turns False.
    from kubernetes import client

    client.CoreV1Api(api).patch_node(
        name,
        {
            "metadata": {
                "labels": {
                    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    "nvidia.com/gpu.memory": "81559",
                }
            }
        },
        _content_type="application/merge-patch+json",
        _preload_content=False,
    )
    assert writer.sync(h100(), config()).mismatches == []
    condition = inventory_condition(read_node(api, name))
    assert condition is not None
    assert condition["status"] == "False"


def test_flavor_is_created_and_follows_the_price(
    api: ApiClient, make_node: MakeNode, namespace: str
) -> None:
    from kubernetes import client

    name = make_node()
    settings = config(flavor_namespace=namespace)
    writer = FlavorWriter(api, name)
    created = writer.sync(h100(), settings)
    assert created["metadata"]["name"] == flavor_name(name)
    assert created["spec"]["price"] == {"amount": "20.00", "currency": "EUR", "period": "hourly"}
    gpu = created["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]
    assert (gpu["model"], gpu["cores"], gpu["memory"]) == ("nvidia-h100", "8", "640Gi")
    characteristics = created["spec"]["flavorType"]["typeData"]["characteristics"]
    assert (characteristics["cpu"], characteristics["pods"]) == ("64", "110")
    assert created["metadata"]["ownerReferences"][0]["name"] == name

    custom = client.CustomObjectsApi(api)
    where = (GROUP, VERSION, namespace, PLURAL)
    status = {
        "creationTime": "2025-01-01T00:00:00Z",
        "expirationTime": "2025-02-01T00:00:00Z",
        "lastUpdateTime": "2025-01-01T00:00:00Z",
    }
    custom.replace_namespaced_custom_object_status(
        *where, created["metadata"]["name"], {**created, "status": status}
    )
    version = raw(custom.get_namespaced_custom_object, *where, flavor_name(name))["metadata"][
        "resourceVersion"
    ]
    # Applying the same Flavor again changes nothing.
    same = writer.sync(h100(), settings)
    assert same["metadata"]["resourceVersion"] == version

    updated = writer.sync(
        h100(), dataclasses.replace(settings, hourly_rate=Money(Decimal("3.10"), "EUR"))
    )
    assert updated["spec"]["price"]["amount"] == "24.80"
    assert updated["status"] == status
    managers = {
        e["manager"] for e in updated["metadata"]["managedFields"] if e["operation"] == "Apply"
    }
    assert managers == {"flare-agent"}


def test_dra_resource_slices_are_checked_and_carried_into_node_and_flavor(
    api: ApiClient, make_node: MakeNode, namespace: str
) -> None:
    """The agent's whole pass, as it runs: the node's ResourceSlices (what NVIDIA's DRA
    driver publishes) read, checked against the inventory, and carried."""
    from kubernetes import client

    from agent.kube.sync import kube_sync
    from tests.harness import dra as published

    name = make_node(gpus=4)
    inventory = h100(4)
    gpus = [
        published.PublishedGpu(g.uuid, "NVIDIA H100 80GB HBM3", "81559Mi", "Hopper", "9.0.0")
        for g in inventory.gpus
    ]
    sync = kube_sync(api, name, config(flavor_namespace=namespace))
    agreeing = published.resource_slice(name, gpus)
    published.create(api, agreeing)
    try:
        sync(inventory)
        node = read_node(api, name)
        annotations = meta(node, "annotations")
        assert annotations["gpu.fluidos.eu/dra-driver"] == "gpu.nvidia.com"
        assert annotations["gpu.fluidos.eu/dra-gpus"] == "4"
        assert inventory_condition(node) is None  # it agrees, and never disagreed
        custom = client.CustomObjectsApi(api)
        where = (GROUP, VERSION, namespace, PLURAL, flavor_name(name))
        flavor = raw(custom.get_namespaced_custom_object, *where)
        gpu = flavor["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]
        assert (gpu["dra_driver"], gpu["dra_gpus"]) == ("gpu.nvidia.com", 4)

        # The driver republishes the pool without one GPU (it lost it, or never saw it).
        published.delete(api, agreeing)
        published.create(api, published.resource_slice(name, gpus[:3], generation=2))
        sync(inventory)
        node = read_node(api, name)
        condition = inventory_condition(node)
        assert condition is not None and condition["status"] == "True"
        assert (
            "ResourceSlices of gpu.nvidia.com publish 3 GPUs but the agent found 4"
            in (condition["message"])
        )
        assert (
            f"the agent found {inventory.gpus[3].uuid}, which no ResourceSlice"
            in (condition["message"])
        )
        [event] = mismatch_events(api, node)
        assert event.type == "Warning" and event.message == condition["message"]
        assert meta(node, "annotations")["gpu.fluidos.eu/dra-gpus"] == "3"
    finally:
        published.delete(api, published.resource_slice(name, gpus))
