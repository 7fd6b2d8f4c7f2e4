"""DRA as FLARE reads it: the devices of ResourceSlices (newest pool generation, this node),
the DeviceClass of a driver, the CEL selectors of an intent's ask, and the agent's
cross-check of the published GPUs against its own inventory."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent import dra as agent_dra
from agent.probe.base import Inventory, pci_bus_key
from agent.probe.sim import SimProbe
from flare import dra
from tests.harness.dra import PublishedGpu, device_class, resource_slice

A100_80 = "NVIDIA A100-SXM4-80GB"
A100_40 = "NVIDIA A100-SXM4-40GB"


def published(inventory: Inventory, **changes: Any) -> list[PublishedGpu]:
    """The inventory's GPUs as NVIDIA's driver would publish them."""
    gpus = [
        PublishedGpu(gpu.uuid, A100_80 if gpu.model == "nvidia-a100" else gpu.raw_name, "80Gi")
        for gpu in inventory.gpus
    ]
    return [replace(gpu, **changes) for gpu in gpus]


def test_devices_are_those_of_the_newest_generation_of_each_pool_on_the_node() -> None:
    old = resource_slice("n1", [PublishedGpu("GPU-old", A100_80, "80Gi")], generation=1)
    new = resource_slice("n1", [PublishedGpu("GPU-new", A100_40, "40Gi")], generation=2)
    other_node = resource_slice("n2", [PublishedGpu("GPU-n2", A100_80, "80Gi")])
    unknown_driver = resource_slice("n1", [PublishedGpu("x", A100_80, "80Gi")])
    unknown_driver["spec"]["driver"] = "nic.example.com"
    [device] = dra.devices([old, new, other_node, unknown_driver], node="n1")
    assert device.attribute("uuid") == "GPU-new"
    assert device.attribute("gpu.nvidia.com/uuid") == "GPU-new"  # the qualified spelling
    assert device.attribute("cudaComputeCapability") == "8.0.0"
    assert device.attribute("index") == 0
    assert device.model == "nvidia-a100"
    assert device.memory_bytes == 40 * 2**30
    assert device.is_whole_gpu()


def test_a_mig_device_is_not_a_whole_gpu() -> None:
    item = resource_slice("n", [PublishedGpu("MIG-1", A100_80, "10Gi")])
    item["spec"]["devices"][0]["attributes"]["type"] = {"string": "mig"}
    [device] = dra.devices([item])
    assert not device.is_whole_gpu()


def test_the_device_class_is_the_one_named_after_the_driver_or_selecting_it() -> None:
    assert dra.device_class_for([device_class()], "gpu.nvidia.com") == "gpu.nvidia.com"
    custom = device_class()
    custom["metadata"]["name"] = "big-gpus"
    assert dra.device_class_for([custom], "gpu.nvidia.com") == "big-gpus"
    assert dra.device_class_for([custom], "gpu.amd.com") == ""
    assert dra.device_class_for([], "gpu.nvidia.com") == ""


def test_selectors_name_exactly_the_published_products_of_the_model() -> None:
    a10 = PublishedGpu("GPU-a10", "NVIDIA A10", "24Gi")
    a100 = PublishedGpu("GPU-a100", A100_80, "80Gi")
    devices = dra.devices([resource_slice("n", [a10, a100])])
    nvidia = dra.DRIVERS["nvidia"]
    selectors = dra.selectors(nvidia, dra.Ask(model="nvidia-a10"), devices)
    attributes = 'device.attributes["gpu.nvidia.com"]'
    assert selectors == [
        f'{attributes}.type == "gpu"',
        f'{attributes}.productName in ["NVIDIA A10"]',  # not the A100, which contains "A10"
    ]
    assert dra.selectors(nvidia, dra.Ask(model="nvidia-h100"), devices) == []


def test_selectors_bound_memory_architecture_and_compute_capability() -> None:
    devices = dra.devices([resource_slice("n", [PublishedGpu("GPU-1", A100_80, "80Gi")])])
    ask = dra.Ask(
        min_memory_gib=80, max_memory_gib=96, architecture="ampere", min_compute_capability=8.6
    )
    selectors = dra.selectors(dra.DRIVERS["nvidia"], ask, devices)
    capacity = 'device.capacity["gpu.nvidia.com"]'
    # 95% of 80 GiB: drivers keep some memory (an 80 GB H100 shows 81,559 MiB).
    assert f'{capacity}.memory.compareTo(quantity("77824Mi")) >= 0' in selectors[1]
    assert f'{capacity}.memory.compareTo(quantity("98304Mi")) <= 0' in selectors[2]
    assert selectors[3].endswith('.architecture.lowerAscii().replace(" ", "-") == "ampere"')
    assert selectors[4].endswith('.cudaComputeCapability.compareTo(semver("8.6.0")) >= 0')
    # AMD's driver publishes neither an architecture nor a compute capability.
    amd = dra.selectors(dra.DRIVERS["amd"], ask, [])
    assert amd[0] == 'device.attributes["gpu.amd.com"].type == "amdgpu"'
    assert len(amd) == 3


def test_published_gpus_that_match_the_inventory_raise_no_mismatch() -> None:
    inventory = SimProbe("a100", 4).inventory()
    devices = dra.devices([resource_slice("n", published(inventory))])
    assert agent_dra.mismatches(devices, inventory) == []
    assert agent_dra.published(devices, "nvidia") == agent_dra.Published("gpu.nvidia.com", 4)
    assert agent_dra.published(devices, "amd") is None
    assert agent_dra.mismatches([], inventory) == []  # no DRA driver: nothing to check


def test_every_disagreement_with_the_inventory_is_named() -> None:
    inventory = SimProbe("a100", 4).inventory()
    gpus = published(inventory)
    gpus[0] = replace(gpus[0], product="NVIDIA H100 80GB HBM3")
    gpus[1] = replace(gpus[1], memory="40Gi")
    gpus[3] = replace(gpus[3], uuid="GPU-stranger")
    found = agent_dra.mismatches(dra.devices([resource_slice("n", gpus)]), inventory)
    where = "ResourceSlices of gpu.nvidia.com"
    assert found[:2] == [
        f"{where} publish GPU-stranger, which the agent did not find",
        f"the agent found {inventory.gpus[3].uuid}, which no ResourceSlice publishes",
    ]
    assert set(found[2:]) == {
        f"{where}: gpu-0 is 'NVIDIA H100 80GB HBM3' but the agent found nvidia-a100 there",
        f"{where}: gpu-1 has 40960 MiB but the agent found 81920 MiB",
    }
    fewer = agent_dra.mismatches(dra.devices([resource_slice("n", gpus[:2])]), inventory)
    assert fewer[0] == f"{where} publish 2 GPUs but the agent found 4"


def test_published_gpus_on_a_node_where_the_agent_found_none() -> None:
    inventory = SimProbe("a100", 2).inventory()
    devices = dra.devices([resource_slice("n", published(inventory))])
    empty = Inventory("nvml", "", "", ())
    assert agent_dra.mismatches(devices, empty) == [
        "ResourceSlices of gpu.nvidia.com publish 2 GPUs but the agent found no nvidia GPU"
    ]


def test_amd_gpus_are_matched_by_pci_bus_id_whatever_its_spelling() -> None:
    inventory = SimProbe("mi300x", 2).inventory()
    gpus = [
        PublishedGpu(
            f"0000:{gpu.pci_bus_id.split(':', 1)[1].lower()}", "AMD Instinct MI300X", "192Gi"
        )
        for gpu in inventory.gpus
    ]
    devices = dra.devices([resource_slice("n", gpus, driver="gpu.amd.com")])
    assert pci_bus_key("00000000:18:00.0") == pci_bus_key("0000:18:00.0")
    assert agent_dra.mismatches(devices, inventory) == []
    devices[0] = replace(devices[0], memory_bytes=0)  # AMD's "could not read it"
    assert agent_dra.mismatches(devices, inventory) == []
