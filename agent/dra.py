"""The node's GPUs as its DRA driver publishes them in ResourceSlices, checked against
what the agent's own probe found: the same GPUs (by UUID for NVIDIA, by PCI bus id for
AMD), the same models and the same memory. Pure functions; the Kubernetes reads are in
agent.kube.resource_slices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.probe.base import GpuInfo, Inventory, pci_bus_key
from flare import dra, gpus

_MIB = 2**20
_SHOWN = 3  # identities named in one message


@dataclass(frozen=True, slots=True)
class Published:
    """What the node's ResourceSlices add to the inventory: which driver allocates its
    GPUs and how many whole GPUs it offers for claims."""

    driver: str
    whole_gpus: int


def published(devices: Sequence[dra.Device], vendor: str) -> Published | None:
    driver = dra.DRIVERS.get(vendor)
    if driver is None:
        return None
    whole = [d for d in devices if d.driver == driver.name and d.is_whole_gpu()]
    return Published(driver.name, len(whole)) if whole else None


def _identity(gpu: GpuInfo, driver: dra.Driver) -> str:
    return pci_bus_key(gpu.pci_bus_id) if driver.identity == dra.PCI_BUS_ID else gpu.uuid


def _device_identity(device: dra.Device, driver: dra.Driver) -> str:
    value = str(device.attribute(driver.identity) or "")
    return pci_bus_key(value) if driver.identity == dra.PCI_BUS_ID else value


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def mismatches(devices: Sequence[dra.Device], inventory: Inventory) -> list[str]:
    """How the node's ResourceSlices disagree with the inventory (empty when they agree
    or no GPU driver publishes any)."""
    found: list[str] = []
    for driver in dra.DRIVERS.values():
        whole = [d for d in devices if d.driver == driver.name and d.is_whole_gpu()]
        if not whole:
            continue
        mine = [g for g in inventory.gpus if g.vendor == driver.vendor]
        where = f"ResourceSlices of {driver.name}"
        if not mine:
            found.append(
                f"{where} publish {len(whole)} GPUs but the agent found no {driver.vendor} GPU"
            )
            continue
        if len(whole) != len(mine):
            found.append(f"{where} publish {len(whole)} GPUs but the agent found {len(mine)}")
        by_identity = {_identity(g, driver): g for g in mine}
        published_ids = {_device_identity(d, driver): d for d in whole}
        unknown = [name for name in published_ids if name not in by_identity]
        unpublished = [name for name in by_identity if name not in published_ids]
        if unknown:
            found.append(f"{where} publish {_listed(unknown)}, which the agent did not find")
        if unpublished:
            found.append(
                f"the agent found {_listed(unpublished)}, which no ResourceSlice publishes"
            )
        for name, device in sorted(published_ids.items()):
            gpu = by_identity.get(name)
            if gpu is None:
                continue
            if device.model and gpu.model and device.model != gpu.model:
                found.append(
                    f"{where}: {device.name} is {device.product!r} but the agent found "
                    f"{gpu.model} there"
                )
            if device.memory_bytes:  # AMD's driver publishes 0 when it cannot read it
                mib, probed = device.memory_bytes / _MIB, gpu.memory_bytes / _MIB
                if abs(mib - probed) > gpus.MEMORY_TOLERANCE * probed:
                    found.append(
                        f"{where}: {device.name} has {mib:.0f} MiB but the agent found "
                        f"{probed:.0f} MiB"
                    )
    return found
