"""The node's FLUIDOS Flavor: a K8Slice offer built from the Node's allocatable resources, the
agent's GPU inventory and the provider configuration, kept current with server-side apply.

Upstream's GPU characteristics hold only model, cores and memory. `typeData` keeps unknown
fields, so FLARE's other GPU traits sit beside them in `characteristics.gpu` under the JSON names
the FLUIDOS GPU fork reads; upstream ignores them. `cores` counts GPUs, as upstream fills it from
the node's GPU resource, and `memory` is the total of those GPUs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agent import annotations as table
from agent.config import ConfigError, ProviderConfig
from agent.dra import Published
from agent.kube._raw import APPLY_PATCH, raw
from agent.kube.node_writer import FIELD_MANAGER
from agent.probe.base import Inventory
from flare.quantity import format_bytes_gi

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

GROUP = "nodecore.fluidos.eu"
VERSION = "v1alpha1"
PLURAL = "flavors"
PREFIX = "flare-"
_MAX_NAME = 253
PARTITIONABILITY = {
    "cpuMin": "0",
    "memoryMin": "0",
    "podsMin": "0",
    "gpuMin": "0",
    "cpuStep": "1",
    "memoryStep": "1Gi",
    "podsStep": "1",
    "gpuStep": "1",
}


def flavor_name(node_name: str) -> str:
    """`flare-<node>`; a name too long for that ends in a hash of the node name instead."""
    name = re.sub(r"[^a-z0-9.-]", "-", f"{PREFIX}{node_name.lower()}")
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(node_name.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NAME - 11].rstrip('.-')}-{digest}"


def _gpu(
    inventory: Inventory, config: ProviderConfig, dra: Published | None
) -> dict[str, Any] | None:
    if not inventory.gpus:
        return None
    written = table.read(table.annotations_for(inventory, config, dra)).values
    model, count, _ = table.majority(inventory.gpus)
    per_gpu = written["gpu.fluidos.eu/memory-per-gpu"]
    assert isinstance(per_gpu, Decimal)
    gpu: dict[str, Any] = {
        "model": written.get("gpu.fluidos.eu/model", model),
        "cores": str(count),
        "memory": format_bytes_gi(per_gpu * count),
        "count": count,
    }
    traits = {
        "vendor": "gpu.fluidos.eu/vendor",
        "tier": "gpu.fluidos.eu/tier",
        "architecture": "gpu.fluidos.eu/architecture",
        "interconnect": "gpu.fluidos.eu/interconnect",
        "compute_capability": "gpu.fluidos.eu/compute-capability",
        "multi_instance": "nvidia.fluidos.eu/mig-capable",
        "dra_driver": "gpu.fluidos.eu/dra-driver",
        "dra_gpus": "gpu.fluidos.eu/dra-gpus",
        "region": "location.fluidos.eu/region",
        "zone": "location.fluidos.eu/zone",
        "provider": "provider.fluidos.eu/name",
        "pre_emptible": "provider.fluidos.eu/preemptible",
        "network_bandwidth": "network.fluidos.eu/bandwidth-gbps",
        "network_latency_ms": "network.fluidos.eu/latency-ms",
        "network_tier": "network.fluidos.eu/tier",
    }
    for name, key in traits.items():
        if key in written:
            value = written[key]
            gpu[name] = value
    if "gpu.fluidos.eu/fp32-tflops" in written:
        gpu["fp32_tflops"] = float(written["gpu.fluidos.eu/fp32-tflops"])
    gpu["hourly_rate"] = float(config.hourly_rate.amount)
    if config.availability_percent is not None:
        gpu["availability"] = config.availability_percent  # FLARE's: the provider's SLA, in %
    if config.country:
        gpu["country"] = config.country
    return gpu


def flavor_for(
    node: Mapping[str, Any],
    inventory: Inventory,
    config: ProviderConfig,
    dra: Published | None = None,
) -> dict[str, Any]:
    """The Flavor manifest that server-side apply keeps current for `node` (a Node as JSON)."""
    missing = config.fluidos_problems()
    if missing:
        raise ConfigError("; ".join(missing))
    metadata = node.get("metadata") or {}
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or {}
    node_name = str(metadata["name"])
    characteristics: dict[str, Any] = {
        "architecture": (status.get("nodeInfo") or {}).get("architecture", ""),
        "cpu": allocatable.get("cpu", "0"),
        "memory": allocatable.get("memory", "0"),
        "pods": allocatable.get("pods", "0"),
    }
    gpu = _gpu(inventory, config, dra)
    count = 0
    if gpu is not None:
        characteristics["gpu"] = gpu
        count = int(gpu["count"])
    owner: dict[str, Any] = {"domain": config.domain, "ip": config.ip, "nodeID": config.node_id}
    if config.liqo_id:
        owner["additionalInformation"] = {"liqoID": config.liqo_id}
    location: dict[str, str] = {}
    if config.country:
        location["country"] = config.country
    if config.city:
        location["city"] = config.city
    notes = [f"region={config.region}"] + ([f"zone={config.zone}"] if config.zone else [])
    location["additionalNotes"] = " ".join(notes)
    amount = config.hourly_rate.amount * max(count, 1)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flavor",
        "metadata": {
            "name": flavor_name(node_name),
            "namespace": config.flavor_namespace,
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": metadata["uid"]}
            ],
        },
        "spec": {
            "providerID": config.node_id,
            "availability": True,
            "owner": owner,
            "price": {
                "amount": f"{amount:f}",
                "currency": config.hourly_rate.currency,
                "period": "hourly",
            },
            "location": location,
            "flavorType": {
                "typeIdentifier": "K8Slice",
                "typeData": {
                    "characteristics": characteristics,
                    "properties": {},
                    "policies": {"partitionability": dict(PARTITIONABILITY)},
                },
            },
        },
    }


class FlavorWriter:
    """Creates and keeps current the Flavor of one node."""

    def __init__(
        self, api_client: ApiClient, node_name: str, *, manager: str = FIELD_MANAGER
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.node_name = node_name
        self.manager = manager

    def sync(
        self, inventory: Inventory, config: ProviderConfig, dra: Published | None = None
    ) -> dict[str, Any]:
        """Applies the Flavor and returns it as stored."""
        node = raw(self.core.read_node, self.node_name)
        body = flavor_for(node, inventory, config, dra)
        name = body["metadata"]["name"]
        where = (GROUP, VERSION, config.flavor_namespace, PLURAL)
        self.custom.patch_namespaced_custom_object(
            *where,
            name,
            body,
            field_manager=self.manager,
            force=True,
            _content_type=APPLY_PATCH,
            _preload_content=False,
        )
        return raw(self.custom.get_namespaced_custom_object, *where, name)
