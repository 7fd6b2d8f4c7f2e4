"""Simulated GPUs of any model and count, from the GPU specification table:
utilisation patterns and fault injection, for the embedded default, demos,
load tests and the agent's own tests. Deterministic for a given seed."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.probe.base import (
    FATAL_XIDS,
    WATCHED_XIDS,
    GpuInfo,
    Health,
    Inventory,
    Link,
    ProbeError,
    Reading,
)
from flare import gpus

PATTERNS = ("idle", "steady", "busy", "burst", "sine")
GIB = 2**30


@dataclass
class Fault:
    """An injected fault: from sample number `at` on, GPU `index` is lost,
    reports uncorrectable ECC, or raises Xid `xid` once."""

    index: int
    kind: str  # "lost", "ecc", "xid"
    at: int = 0
    xid: int = 79


@dataclass
class SimProbe:
    model: str = "nvidia-h100"
    count: int = 8
    pattern: str = "steady"
    seed: int = 0
    faults: list[Fault] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        spec = gpus.lookup(self.model)
        if spec is None:
            raise ProbeError(f"unknown GPU model {self.model!r} for the sim backend")
        if self.pattern not in PATTERNS:
            raise ProbeError(f"pattern {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if not 1 <= self.count <= 64:
            raise ProbeError("the sim backend simulates 1 to 64 GPUs")
        self._spec = spec
        self._random = random.Random(self.seed)
        self._samples = 0
        self._xids = [dict.fromkeys(WATCHED_XIDS, 0) for _ in range(self.count)]
        self._ecc = [0] * self.count
        namespace = uuid.UUID(int=self.seed)
        self._uuids = [
            f"GPU-{uuid.uuid5(namespace, f'{spec.model}-{i}')}" for i in range(self.count)
        ]

    @property
    def name(self) -> str:
        return "sim"

    def inventory(self) -> Inventory:
        spec = self._spec
        lost = self._lost()
        devices = tuple(
            GpuInfo(
                index=i,
                uuid=self._uuids[i],
                raw_name=f"{spec.vendor.upper()} {spec.model.split('-', 1)[1].upper()} (simulated)",
                model=spec.model,
                vendor=spec.vendor,
                architecture=spec.architecture,
                memory_bytes=spec.memory_gib[0] * GIB,
                compute_capability=spec.compute_capability,
                pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
                numa_node=i * 2 // self.count,
                mig_enabled=False,
                power_limit_watts=float(spec.tdp_watts),
            )
            for i in range(self.count)
            if i not in lost
        )
        link = {"nvlink": "nvlink", "infinity-fabric": "xgmi"}.get(spec.interconnect, "hostbridge")
        count = {"nvlink": 18, "xgmi": 7}.get(link, 0)
        links = tuple(
            Link(a.index, b.index, link, count)
            for a in devices
            for b in devices
            if a.index < b.index
        )
        return Inventory("sim", "sim-1.0", spec.compute_capability or "rocm-sim", devices, links)

    def _lost(self) -> set[int]:
        return {f.index for f in self.faults if f.kind == "lost" and self._samples >= f.at}

    def _utilisation(self, index: int) -> float:
        step = self._samples + index * 7
        match self.pattern:
            case "idle":
                return 0.0
            case "busy":
                return 95.0 + self._random.random() * 5
            case "burst":
                return 100.0 if (step // 5) % 3 == 0 else 5.0
            case "sine":
                return round(50 + 45 * math.sin(step / 10), 1)
        return 60.0 + self._random.random() * 10

    def sample(self) -> tuple[Reading, ...]:
        now = self.clock()
        lost = self._lost()
        readings = []
        spec = self._spec
        for i in range(self.count):
            if i in lost:
                lost_reading = Reading(
                    self._uuids[i], now, Health.UNHEALTHY, problems=("GPU is lost",)
                )
                readings.append(lost_reading)
                continue
            health = Health.HEALTHY
            for fault in self.faults:
                if fault.index != i or self._samples < fault.at:
                    continue
                if fault.kind == "ecc":
                    self._ecc[i] += 1
                    health = Health.UNHEALTHY
                elif fault.kind == "xid" and self._samples == fault.at:
                    self._xids[i][fault.xid] = self._xids[i].get(fault.xid, 0) + 1
            if any(self._xids[i].get(x) for x in FATAL_XIDS):
                health = Health.UNHEALTHY
            load = self._utilisation(i)
            memory = spec.memory_gib[0] * GIB
            used = int(memory * load / 100 * 0.9)
            readings.append(
                Reading(
                    uuid=self._uuids[i],
                    time=now,
                    health=health,
                    gpu_utilization_percent=load,
                    memory_utilization_percent=round(load * 0.6, 1),
                    memory_used_bytes=used,
                    memory_free_bytes=memory - used,
                    temperature_celsius=round(30 + load * 0.45, 1),
                    power_watts=round(spec.tdp_watts * (0.1 + 0.85 * load / 100), 1),
                    sm_clock_mhz=int(1980 * (0.5 + load / 200)),
                    throttle_reasons=0,
                    ecc_corrected_total=0,
                    ecc_uncorrected_total=self._ecc[i],
                    xid_counts=dict(self._xids[i]),
                )
            )
        self._samples += 1
        return tuple(readings)

    def close(self) -> None:
        return None
