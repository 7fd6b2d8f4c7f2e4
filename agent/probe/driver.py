"""What the NVML and amdsmi backends share: a vendor library initialised once,
the GPUs enumerated into a cached inventory, re-enumeration after a GPU went
missing, and readings that never raise for one GPU's trouble.

A backend says which of its library's error codes mean "absent" (the value
does not exist here: None, never 0) and which mean "the GPU is gone"; it
implements the calls: `_init`, `_shutdown`, `_enumerate` and `_read_gpu`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from agent.probe.base import GpuInfo, Health, Inventory, ProbeError, Reading, xid_problems


class GpuGone(Exception):
    """A call on one GPU failed with an error that means the GPU is unusable."""


@dataclass
class Device:
    index: int
    uuid: str
    handle: Any
    info: GpuInfo


D = TypeVar("D", bound=Device)


class DriverProbe(ABC, Generic[D]):
    backend: ClassVar[str]
    # Error codes of the vendor library: the value does not exist, or the GPU is gone.
    absent_codes: ClassVar[frozenset[int]]
    gone_codes: ClassVar[frozenset[int]]
    # How an error code is named in problem lines: "NVML error", "amdsmi status".
    code_label: ClassVar[str]

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._initialised = False
        self._stale = True
        self._enumerations = 0
        self._devices: list[D] = []
        self._inventory: Inventory | None = None
        self._missing: dict[str, str] = {}  # known GPUs the library no longer gives, and why

    @property
    def name(self) -> str:
        return self.backend

    @property
    def enumerations(self) -> int:
        """How many times the library was (re-)initialised and the GPUs enumerated."""
        return self._enumerations

    # -- what a backend implements ---------------------------------------------

    @abstractmethod
    def _init(self) -> None: ...

    @abstractmethod
    def _shutdown(self) -> None: ...

    @abstractmethod
    def _enumerate(self) -> None:
        """Set `_devices` and `_inventory`; record GPUs it cannot use in `_missing`."""

    @abstractmethod
    def _read_gpu(self, device: D, now: datetime) -> Reading: ...

    @abstractmethod
    def _library_error(self) -> type[Exception]:
        """The exception class of the vendor library."""

    @abstractmethod
    def _error_code(self, error: Exception) -> int | None: ...

    def _xid_snapshot(self, uuid: str) -> dict[int, int]:
        """Xid counts of a GPU; empty for vendors without Xids."""
        return {}

    # -- shared ----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._shutdown()

    def _call(self, what: str, problems: list[str], fn: Callable[..., Any], *args: Any) -> Any:
        """One library call: absent gives None; a "GPU is gone" error raises
        GpuGone; any other error gives None and a line in `problems`."""
        try:
            return fn(*args)
        except self._library_error() as error:
            code = self._error_code(error)
            if code in self.absent_codes:
                return None
            detail = f"{what}: {str(error).strip()} ({self.code_label} {code})"
            if code in self.gone_codes:
                raise GpuGone(detail) from error
            problems.append(detail)
            return None

    def inventory(self) -> Inventory:
        with self._lock:
            if self._stale or self._inventory is None:
                self._refresh()
            assert self._inventory is not None
            return self._inventory

    def _refresh(self) -> None:
        try:
            if self._enumerations > 0:
                self._shutdown()
                self._init()
            self._enumerations += 1
            self._enumerate()
        except (ProbeError, GpuGone) as error:  # a node-wide call failed: the library is down
            self._library_down(str(error))
            return
        # A GPU the library would not give is looked for again on the next
        # inventory (a GPU reset brings it back).
        self._stale = bool(self._missing)

    def _library_down(self, problem: str) -> None:
        """The library cannot be initialised or cannot enumerate (a driver unloaded or
        being upgraded): every known GPU reads UNHEALTHY with the reason, the inventory
        keeps the GPUs it had (with the problem), and the next inventory tries again."""
        known = [*self._missing, *(device.uuid for device in self._devices)]
        self._missing = dict.fromkeys(known, problem)
        self._devices = []
        self._stale = True
        last = self._inventory or Inventory(self.backend, "", "", ())
        self._inventory = replace(last, problems=(problem,))

    def sample(self) -> tuple[Reading, ...]:
        with self._lock:
            if self._inventory is None:
                self._refresh()
            now = self._clock()
            readings = [self._read(device, now) for device in self._devices]
            present = {d.uuid for d in self._devices}
            for uuid, problem in self._missing.items():
                if uuid not in present:
                    xids = self._xid_snapshot(uuid)
                    problems = (problem, *xid_problems(xids))
                    readings.append(
                        Reading(uuid, now, Health.UNHEALTHY, xid_counts=xids, problems=problems)
                    )
            return tuple(readings)

    def _read(self, device: D, now: datetime) -> Reading:
        try:
            return self._read_gpu(device, now)
        except Exception as error:  # the agent outlives any one GPU's trouble
            self._stale = True
            return Reading(
                device.uuid,
                now,
                Health.UNHEALTHY,
                xid_counts=self._xid_snapshot(device.uuid),
                problems=(f"reading failed: {error!r}",),
            )
