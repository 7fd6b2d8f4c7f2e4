"""GPUs published the DRA way on the harness, as a vendor's DRA driver would publish them:
a DeviceClass for the driver and a ResourceSlice of a node's GPUs. The real kube-scheduler
allocates ResourceClaims against them; no kubelet plugin runs (kwok runs the pods)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flare import dra

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@dataclass(frozen=True)
class PublishedGpu:
    """One GPU as NVIDIA's driver describes it (AMD's: `uuid` is its PCI bus id)."""

    uuid: str
    product: str  # "NVIDIA A100-SXM4-80GB"
    memory: str  # "80Gi"
    architecture: str = "Ampere"
    compute_capability: str = "8.0.0"


def device_class(driver: str = "gpu.nvidia.com") -> dict[str, Any]:
    """The DeviceClass the vendor's chart installs: the driver's whole GPUs."""
    whole = dra.BY_NAME[driver].whole_gpu
    return {
        "apiVersion": f"{dra.GROUP}/{dra.VERSION}",
        "kind": "DeviceClass",
        "metadata": {"name": driver},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": f"device.driver == '{driver}' && "
                        f"device.attributes['{driver}'].type == '{whole}'"
                    }
                }
            ]
        },
    }


def resource_slice(
    node: str, gpus: Sequence[PublishedGpu], *, driver: str = "gpu.nvidia.com", generation: int = 1
) -> dict[str, Any]:
    """The ResourceSlice of `node`'s GPUs, named gpu-0, gpu-1, ... as the drivers name them."""
    spec = dra.BY_NAME[driver]
    devices = []
    for index, gpu in enumerate(gpus):
        attributes: dict[str, Any] = {
            "type": {"string": spec.whole_gpu},
            "productName": {"string": gpu.product},
            "index": {"int": index},
        }
        attributes[spec.identity] = {"string": gpu.uuid}
        if spec.architecture:
            attributes[spec.architecture] = {"string": gpu.architecture}
        if spec.compute_capability:
            attributes[spec.compute_capability] = {"version": gpu.compute_capability}
        devices.append(
            {
                "name": f"gpu-{index}",
                "attributes": attributes,
                "capacity": {"memory": {"value": gpu.memory}},
            }
        )
    return {
        "apiVersion": f"{dra.GROUP}/{dra.VERSION}",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


_PLURALS = {"DeviceClass": "deviceclasses", "ResourceSlice": "resourceslices"}


def create(api: ApiClient, manifest: dict[str, Any]) -> None:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        dra.GROUP, dra.VERSION, _PLURALS[manifest["kind"]], manifest
    )


def delete(api: ApiClient, manifest: dict[str, Any]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom: Any = client.CustomObjectsApi(api)
    try:
        custom.delete_cluster_custom_object(
            dra.GROUP, dra.VERSION, _PLURALS[manifest["kind"]], manifest["metadata"]["name"]
        )
    except ApiException as error:
        if error.status != 404:
            raise


def claims(api: ApiClient, label_selector: str = "") -> list[dict[str, Any]]:
    """Every ResourceClaim in the cluster (with the label selector)."""
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(api)
    listed = custom.list_cluster_custom_object(
        dra.GROUP, dra.VERSION, "resourceclaims", label_selector=label_selector
    )
    return list(listed["items"])


def allocated_devices(claim: dict[str, Any]) -> list[str]:
    """The devices the scheduler allocated to a claim ([] while it is not allocated)."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    return [result["device"] for result in (allocation.get("devices") or {}).get("results") or []]
