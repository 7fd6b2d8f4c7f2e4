"""GPUs as Kubernetes Dynamic Resource Allocation (resource.k8s.io/v1) publishes them:
the vendors' DRA drivers, the devices of their ResourceSlices, the DeviceClass that
selects them, and the CEL that asks for a model, a memory floor, an architecture or a
compute capability. Pure functions over the API's JSON; the agent and the control plane
both read DRA through here.

Attribute names are the drivers' own: NVIDIA's k8s-dra-driver-gpu publishes whole GPUs
with `type: gpu`, `uuid`, `productName`, `architecture` ("Hopper"),
`cudaComputeCapability` (a version, "9.0.0") and the capacity `memory`; AMD's
k8s-gpu-dra-driver publishes `type: amdgpu`, `productName`, the standard
`resource.kubernetes.io/pciBusID` and `memory` (0 when unreadable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flare import gpus
from flare.quantity import QuantityError, parse_quantity
from flare.v1 import intent_pb2

GROUP = "resource.k8s.io"
VERSION = "v1"
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"

Attribute = str | int | bool


@dataclass(frozen=True, slots=True)
class Driver:
    vendor: str
    name: str  # the driver's name, its attribute domain and its DeviceClass's usual name
    whole_gpu: str  # the `type` attribute of an unpartitioned GPU
    # The attribute that names one physical GPU, as the agent's probe knows it too.
    identity: str
    architecture: str = ""  # attribute names; "" where the driver publishes none
    compute_capability: str = ""


DRIVERS: dict[str, Driver] = {
    "nvidia": Driver(
        "nvidia",
        "gpu.nvidia.com",
        "gpu",
        identity="uuid",
        architecture="architecture",
        compute_capability="cudaComputeCapability",
    ),
    "amd": Driver("amd", "gpu.amd.com", "amdgpu", identity=PCI_BUS_ID),
}
BY_NAME: dict[str, Driver] = {driver.name: driver for driver in DRIVERS.values()}


@dataclass(frozen=True, slots=True)
class Device:
    driver: str
    pool: str
    name: str
    node: str  # "" when the slice serves all nodes or a node selector
    attributes: Mapping[str, Attribute]
    memory_bytes: int | None  # None when the driver publishes no memory capacity

    def attribute(self, name: str) -> Attribute | None:
        """An attribute by its bare name ("productName") or its qualified one."""
        bare = name.removeprefix(f"{self.driver}/")
        for spelling in (name, bare, f"{self.driver}/{bare}"):
            if spelling in self.attributes:
                return self.attributes[spelling]
        return None

    @property
    def product(self) -> str:
        return str(self.attribute("productName") or "")

    @property
    def model(self) -> str:
        spec = gpus.from_product_name(self.product) if self.product else None
        return spec.model if spec else ""

    def is_whole_gpu(self) -> bool:
        driver = BY_NAME.get(self.driver)
        return driver is not None and self.attribute("type") == driver.whole_gpu


def _attribute(value: Mapping[str, Any]) -> Attribute | None:
    for kind in ("string", "version"):
        if isinstance(value.get(kind), str):
            return str(value[kind])
    if isinstance(value.get("int"), int) and not isinstance(value.get("int"), bool):
        return int(value["int"])
    if isinstance(value.get("bool"), bool):
        return bool(value["bool"])
    return None


def _memory(capacity: Mapping[str, Any]) -> int | None:
    value = (capacity.get("memory") or {}).get("value")
    if not isinstance(value, str):
        return None
    try:
        return int(parse_quantity(value))
    except QuantityError:
        return None


def _pool(item: Mapping[str, Any]) -> tuple[tuple[str, str], int]:
    spec = item.get("spec") or {}
    pool = spec.get("pool") or {}
    return (str(spec.get("driver", "")), str(pool.get("name", ""))), int(
        pool.get("generation") or 0
    )


def current_slices(slices: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The slices of each (driver, pool) at its newest generation: a driver that
    republishes a pool bumps the generation, and older slices are on their way out."""
    items = [(item, *_pool(item)) for item in slices]
    newest: dict[tuple[str, str], int] = {}
    for _, key, generation in items:
        newest[key] = max(newest.get(key, generation), generation)
    return [item for item, key, generation in items if generation == newest[key]]


def devices(slices: Iterable[Mapping[str, Any]], *, node: str = "") -> list[Device]:
    """Every device of the current slices of the known GPU drivers; with `node`, only
    those of slices for that node (by `nodeName`) or for all nodes."""
    found = []
    for item in current_slices(slices):
        spec = item.get("spec") or {}
        driver = str(spec.get("driver", ""))
        if driver not in BY_NAME:
            continue
        slice_node = str(spec.get("nodeName") or "")
        if node and slice_node != node and not spec.get("allNodes"):
            continue
        pool = str((spec.get("pool") or {}).get("name", ""))
        for device in spec.get("devices") or []:
            attributes = {
                name: parsed
                for name, value in (device.get("attributes") or {}).items()
                if (parsed := _attribute(value or {})) is not None
            }
            found.append(
                Device(
                    driver,
                    pool,
                    str(device.get("name", "")),
                    slice_node,
                    attributes,
                    _memory(device.get("capacity") or {}),
                )
            )
    return found


def device_class_for(classes: Iterable[Mapping[str, Any]], driver: str) -> str:
    """The DeviceClass that selects the driver's devices: the one named after the
    driver (what NVIDIA's and AMD's charts install), else the first whose selector
    asks for `device.driver == "<driver>"`; "" when there is none."""
    named = [c for c in classes if (c.get("metadata") or {}).get("name") == driver]
    if named:
        return driver
    for candidate in classes:
        for selector in (candidate.get("spec") or {}).get("selectors") or []:
            expression = ((selector or {}).get("cel") or {}).get("expression") or ""
            compact = expression.replace(" ", "").replace("'", '"')
            if f'device.driver=="{driver}"' in compact:
                return str(candidate["metadata"]["name"])
    return ""


def _cel_string(text: str) -> str:
    return json.dumps(text)


def _mebibytes(gib: float, share: Decimal = Decimal(1)) -> str:
    return f'quantity("{int(Decimal(str(gib)) * share * 1024)}Mi")'


@dataclass(frozen=True, slots=True)
class Ask:
    """What a claim asks of each GPU, from an intent's placement and requirements."""

    model: str = ""  # normalised model; "" any
    min_memory_gib: float = 0.0
    max_memory_gib: float = 0.0
    architecture: str = ""  # flare.gpus spelling: "ada-lovelace"
    min_compute_capability: float = 0.0


def selectors(driver: Driver, ask: Ask, published: Iterable[Device]) -> list[str]:
    """CEL expressions a device must all satisfy. The model becomes the product names
    of the published whole GPUs that flare.gpus resolves to it (exact, unlike a
    pattern: "H100" must not take an "H100 NVL"); an empty list when none is."""
    attributes = f'device.attributes["{driver.name}"]'
    capacity = f'device.capacity["{driver.name}"]'
    out = [f"{attributes}.type == {_cel_string(driver.whole_gpu)}"]
    if ask.model:
        products = sorted(
            {d.product for d in published if d.is_whole_gpu() and d.model == ask.model}
        )
        if not products:
            return []
        out.append(f"{attributes}.productName in [{', '.join(map(_cel_string, products))}]")
    if ask.min_memory_gib:
        # Drivers keep some memory for themselves: the floor allows flare.gpus' tolerance.
        floor = _mebibytes(ask.min_memory_gib, 1 - Decimal(str(gpus.MEMORY_TOLERANCE)))
        out.append(f"has({capacity}.memory) && {capacity}.memory.compareTo({floor}) >= 0")
    if ask.max_memory_gib:
        ceiling = _mebibytes(ask.max_memory_gib)
        out.append(f"has({capacity}.memory) && {capacity}.memory.compareTo({ceiling}) <= 0")
    if ask.architecture and driver.architecture:
        out.append(
            f'{attributes}.{driver.architecture}.lowerAscii().replace(" ", "-") == '
            f"{_cel_string(ask.architecture)}"
        )
    if ask.min_compute_capability and driver.compute_capability:
        major, _, minor = f"{ask.min_compute_capability:.1f}".partition(".")
        out.append(
            f'{attributes}.{driver.compute_capability}.compareTo(semver("{major}.{minor}.0")) >= 0'
        )
    return out


def describe(access: intent_pb2.GpuAccess) -> str:
    """How an intent's pods get their GPUs, for people (its history, flarectl)."""
    if access.method == intent_pb2.GPU_ACCESS_METHOD_RESOURCE_CLAIM:
        return (
            f"{access.gpus_per_pod} GPUs per pod claimed through DRA from "
            f"ResourceClaimTemplate {access.claim_template} ({access.reason})"
        )
    why = f": {access.reason}" if access.reason else ""
    return f"{access.gpus_per_pod} GPUs per pod as {access.resource} limits{why}"
