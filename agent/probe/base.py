"""What a probe reports, as plain immutable data, and the interface every
backend implements. "Not supported" is None, never 0."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol

from flare.xids import FATAL_XIDS, WATCHED_XIDS, xid_problems

__all__ = ["FATAL_XIDS", "WATCHED_XIDS", "xid_problems"]


class Health(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # recoverable: corrected-ECC storm, thermal throttling
    UNHEALTHY = "unhealthy"  # lost, fallen off the bus, uncorrectable ECC, fatal Xid


def pci_bus_key(bus_id: str) -> str:
    """One spelling of a PCI address: "00000000:18:00.0" (NVML), "0000:18:00.0" (sysfs,
    DRA's `resource.kubernetes.io/pciBusID`) and "0000:18:00.0" in capitals are one."""
    try:
        domain, bus, rest = bus_id.strip().split(":")
        device, function = rest.split(".")
        return f"{int(domain, 16):x}:{int(bus, 16):x}:{int(device, 16):x}.{int(function, 16):x}"
    except ValueError:
        return bus_id.strip().lower()


@dataclass(frozen=True, slots=True)
class MigInstance:
    uuid: str
    profile: str  # "1g.10gb"
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    uuid: str
    raw_name: str  # as the driver says it: "NVIDIA H100 80GB HBM3"
    model: str  # normalised through flare.gpus: "nvidia-h100"; "" when unknown
    vendor: str
    architecture: str
    memory_bytes: int
    compute_capability: str  # "9.0"; "" for AMD
    pci_bus_id: str
    numa_node: int | None
    mig_enabled: bool
    mig_instances: tuple[MigInstance, ...] = ()
    power_limit_watts: float | None = None


@dataclass(frozen=True, slots=True)
class Link:
    gpu_a: int
    gpu_b: int
    link_type: str  # "nvlink", "xgmi", "single", "multiple", "hostbridge", "node", "system"
    link_count: int = 0


@dataclass(frozen=True, slots=True)
class Inventory:
    backend: str  # "nvml", "amdsmi" or "sim"
    driver_version: str
    runtime_version: str  # CUDA driver API or ROCm version
    gpus: tuple[GpuInfo, ...]
    links: tuple[Link, ...] = ()
    # What went wrong reading the node (a value unreadable, the library down), for
    # the agent's log and `--once`; one GPU's trouble is in its readings too.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    memory_used_bytes: int | None


@dataclass(frozen=True, slots=True)
class Reading:
    uuid: str
    time: datetime
    health: Health
    gpu_utilization_percent: float | None = None
    memory_utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    sm_clock_mhz: int | None = None
    throttle_reasons: int | None = None
    ecc_corrected_total: int | None = None
    ecc_uncorrected_total: int | None = None
    # Critical events since the agent started, by Xid (explicit zeros for the
    # watched ones).
    xid_counts: Mapping[int, int] = field(default_factory=dict)
    processes: tuple[Process, ...] = ()
    # What could not be read this time and why, for the agent's log.
    problems: tuple[str, ...] = ()


class ProbeError(Exception):
    """The backend cannot work at all (no driver, no library)."""


class Probe(Protocol):
    @property
    def name(self) -> str: ...

    def inventory(self) -> Inventory:
        """What the node has; re-enumerates after a GPU was lost."""

    def sample(self) -> tuple[Reading, ...]:
        """One reading per GPU. Never raises for one GPU's trouble: that GPU's
        reading says UNHEALTHY and lists the problem."""

    def close(self) -> None: ...
