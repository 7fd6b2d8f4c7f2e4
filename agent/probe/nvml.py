"""NVIDIA GPUs through NVML (the nvidia-ml-py bindings, imported as `pynvml`).

NVML is initialised once per probe and device handles are cached. A GPU whose
calls fail with a "the GPU is gone" class of error (lost, fallen off the bus,
unknown, driver trouble) reads UNHEALTHY with the error in `problems`, and the
next `inventory()` shuts NVML down, initialises it again and re-enumerates.
"Not supported" is None (absent), never 0. Xid events arrive on a background
thread through an NVML event set. See docs/nvml-probe.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.probe.base import (
    WATCHED_XIDS,
    GpuInfo,
    Health,
    Inventory,
    Link,
    MigInstance,
    Probe,
    ProbeError,
    Process,
    Reading,
    pci_bus_key,
    xid_problems,
)
from agent.probe.driver import Device, DriverProbe, GpuGone
from flare import gpus

# NVML return codes (nvml.h), by what the probe does with them.
_INVALID_ARGUMENT = 2
_NOT_SUPPORTED = 3
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_TIMEOUT = 10
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
# Absent: the value does not exist on this GPU or driver.
_ABSENT = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND})
# The GPU (or the driver under it) is gone: uninitialised, driver not loaded,
# IRQ issue, GPU is lost, reset required, operating system, RM version
# mismatch, GPU not found, unknown.
_GONE = frozenset({1, _DRIVER_NOT_LOADED, 11, 15, 16, 17, 18, 28, 999})

_NVLINK_MAX_LINKS = 36
_MIG_ENABLED = 1
_EVENT_XID = 0x8
_TEMPERATURE_GPU = 0
_CLOCK_SM = 1
_VOLATILE_ECC = 0
_ECC_CORRECTED = 0
_ECC_UNCORRECTED = 1
# Clocks-event reasons that mean the GPU is too hot or its board slows it.
_THERMAL_REASONS = 0x8 | 0x20 | 0x40

_ARCHITECTURES = {
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada-lovelace",
    9: "hopper",
    10: "blackwell",
}
_TOPOLOGY = {
    0: "single",  # the same board
    10: "single",
    20: "multiple",
    30: "hostbridge",
    40: "node",
    50: "system",
}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _address(handle: Any) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


@dataclass
class _Device(Device):
    nvlink_remotes: dict[str, int] = field(default_factory=dict)


class _EventWatcher:
    """Waits on an NVML event set in a thread and reports Xid events."""

    def __init__(
        self,
        nvml: Any,
        handles: dict[str, Any],
        on_xid: Callable[[str, int], None],
        timeout_ms: int,
    ) -> None:
        self._nvml = nvml
        self._timeout_ms = timeout_ms
        self._on_xid = on_xid
        self._stop = threading.Event()
        self._by_address = {_address(h): uuid for uuid, h in handles.items()}
        self.unwatched: dict[str, str] = {}
        # Why waiting for events fails now (None while it works).
        self.failure: str | None = None
        self._set = nvml.nvmlEventSetCreate()
        for uuid, handle in handles.items():
            try:
                nvml.nvmlDeviceRegisterEvents(handle, _EVENT_XID, self._set)
            except nvml.NVMLError as error:
                if error.value not in _ABSENT:
                    self.unwatched[uuid] = f"Xid events not watched: {error}"
        self._thread = threading.Thread(target=self._run, name="nvml-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nvml = self._nvml
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(self._set, self._timeout_ms)
            except nvml.NVMLError as error:
                if error.value == _TIMEOUT:
                    self.failure = None
                else:
                    self.failure = f"Xid events not read: {error} (NVML error {error.value})"
                    self._stop.wait(self._timeout_ms / 1000)
                continue
            self.failure = None
            if int(data.eventType) & _EVENT_XID:
                uuid = self._by_address.get(_address(data.device))
                if uuid is not None:
                    self._on_xid(uuid, int(data.eventData))

    def problem(self, uuid: str) -> str | None:
        """Why Xid events of GPU `uuid` are not seen now, if they are not."""
        return self.unwatched.get(uuid) or self.failure

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout_ms / 1000 * 4 + 1)
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlEventSetFree(self._set)


class NvmlProbe(DriverProbe[_Device]):
    """The `Probe` for NVIDIA GPUs. Raises ProbeError when NVML cannot work at
    all (bindings not installed, library missing, driver not loaded)."""

    backend = "nvml"
    absent_codes = _ABSENT
    gone_codes = _GONE
    code_label = "NVML error"

    def __init__(
        self,
        *,
        event_timeout_ms: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        try:
            self._nvml: Any = importlib.import_module("pynvml")
        except ImportError as error:
            raise ProbeError(
                "the NVML backend needs the nvidia-ml-py package (import name pynvml)"
            ) from error
        super().__init__(clock)
        self._event_timeout_ms = event_timeout_ms
        self._xid_lock = threading.Lock()
        self._uuid_by_index: dict[int, str] = {}
        self._xids: dict[str, dict[int, int]] = {}
        self._events: _EventWatcher | None = None
        self._init()

    # -- lifecycle --------------------------------------------------------

    def _init(self) -> None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            code = error.value
            if code == _LIBRARY_NOT_FOUND:
                message = (
                    "NVML library libnvidia-ml.so.1 not found: the NVIDIA driver is not "
                    "installed or its libraries are not visible to the agent"
                )
            elif code == _DRIVER_NOT_LOADED:
                message = "NVML: the NVIDIA kernel driver is not loaded"
            elif code == _FUNCTION_NOT_FOUND:
                message = "NVML: the installed driver is too old for nvidia-ml-py"
            else:
                message = f"NVML initialisation failed: {error}"
            raise ProbeError(message) from error
        self._initialised = True

    def _shutdown(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def _library_error(self) -> type[Exception]:
        error: type[Exception] = self._nvml.NVMLError
        return error

    def _error_code(self, error: Exception) -> int | None:
        code = getattr(error, "value", None)
        return code if isinstance(code, int) else None

    # -- calls --------------------------------------------------------------

    def _temperature(self, handle: Any) -> Any:
        nvml = self._nvml
        read_v = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
        if read_v is not None:
            try:
                return read_v(handle, _TEMPERATURE_GPU)
            except nvml.NVMLError as error:
                if error.value != _FUNCTION_NOT_FOUND:
                    raise
        return nvml.nvmlDeviceGetTemperature(handle, _TEMPERATURE_GPU)

    def _clocks_event_reasons(self, handle: Any) -> Any:
        nvml = self._nvml
        read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if read is None:
            read = nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return read(handle)

    # -- inventory ------------------------------------------------------------

    def _enumerate(self) -> None:
        nvml = self._nvml
        problems: list[str] = []
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as error:
            raise ProbeError(f"NVML cannot enumerate GPUs: {error}") from error
        cuda = self._call("CUDA driver version", problems, nvml.nvmlSystemGetCudaDriverVersion)
        runtime = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if cuda is not None else ""

        devices: list[_Device] = []
        handles: dict[str, Any] = {}
        for index in range(count):
            uuid = self._uuid_by_index.get(index, f"nvml-index-{index}")
            try:
                handle = self._call("handle", problems, nvml.nvmlDeviceGetHandleByIndex, index)
                if handle is None:
                    raise GpuGone("NVML gives no handle for this GPU")
                read = self._call("UUID", problems, nvml.nvmlDeviceGetUUID, handle)
                if read is None:
                    raise GpuGone("NVML gives no UUID for this GPU")
                uuid = _text(read)
                self._uuid_by_index[index] = uuid
                handles[uuid] = handle
                devices.append(self._describe(index, uuid, handle, problems))
                self._missing.pop(uuid, None)
            except GpuGone as gone:
                self._missing[uuid] = f"GPU {index} not usable: {gone}"
        self._devices = devices
        for device in devices:
            self._xid_counts(device.uuid)
        links = self._links(devices)
        try:
            self._events = _EventWatcher(nvml, handles, self._count_xid, self._event_timeout_ms)
        except nvml.NVMLError as error:
            problems.append(f"Xid events not watched: {error}")
        self._inventory = Inventory(
            backend="nvml",
            driver_version=driver,
            runtime_version=runtime,
            gpus=tuple(d.info for d in devices),
            links=links,
            problems=tuple(problems),
        )

    def _describe(self, index: int, uuid: str, handle: Any, problems: list[str]) -> _Device:
        nvml = self._nvml
        call = self._call
        raw_name = _text(call("name", problems, nvml.nvmlDeviceGetName, handle) or "")
        spec = gpus.from_product_name(raw_name)
        memory = call("memory", problems, nvml.nvmlDeviceGetMemoryInfo, handle)
        capability = call(
            "compute capability", problems, nvml.nvmlDeviceGetCudaComputeCapability, handle
        )
        architecture = spec.architecture if spec else ""
        if not architecture:
            code = call("architecture", problems, nvml.nvmlDeviceGetArchitecture, handle)
            architecture = _ARCHITECTURES.get(int(code), "") if code is not None else ""
        pci = call("PCI info", problems, nvml.nvmlDeviceGetPciInfo, handle)
        numa = call("NUMA node", problems, nvml.nvmlDeviceGetNumaNodeId, handle)
        limit = call("power limit", problems, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        mode = call("MIG mode", problems, nvml.nvmlDeviceGetMigMode, handle)
        mig_enabled = mode is not None and int(mode[0]) == _MIG_ENABLED
        instances = self._mig_instances(handle, problems) if mig_enabled else ()
        info = GpuInfo(
            index=index,
            uuid=uuid,
            raw_name=raw_name,
            model=spec.model if spec else "",
            vendor="nvidia",
            architecture=architecture,
            memory_bytes=int(memory.total) if memory is not None else 0,
            compute_capability=f"{capability[0]}.{capability[1]}" if capability else "",
            pci_bus_id=_text(pci.busId) if pci is not None else "",
            numa_node=int(numa) if numa is not None and int(numa) >= 0 else None,
            mig_enabled=mig_enabled,
            mig_instances=instances,
            power_limit_watts=int(limit) / 1000 if limit is not None else None,
        )
        return _Device(index, uuid, handle, info, self._nvlink_remotes(handle, problems))

    def _mig_instances(self, handle: Any, problems: list[str]) -> tuple[MigInstance, ...]:
        nvml = self._nvml
        slots = self._call("MIG slots", problems, nvml.nvmlDeviceGetMaxMigDeviceCount, handle)
        instances = []
        for slot in range(int(slots or 0)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError as error:
                if error.value == _NOT_FOUND:
                    continue  # an empty slot
                if error.value in _GONE:
                    raise GpuGone(f"MIG device {slot}: {error}") from error
                problems.append(f"MIG device {slot}: {error}")
                continue
            name = _text(self._call("MIG name", problems, nvml.nvmlDeviceGetName, mig) or "")
            mig_uuid = _text(self._call("MIG UUID", problems, nvml.nvmlDeviceGetUUID, mig) or "")
            memory = self._call("MIG memory", problems, nvml.nvmlDeviceGetMemoryInfo, mig)
            profile = name.rsplit("MIG", 1)[-1].strip() if "MIG" in name else ""
            total = int(memory.total) if memory is not None else 0
            instances.append(MigInstance(mig_uuid, profile, total))
        return tuple(instances)

    def _nvlink_remotes(self, handle: Any, problems: list[str]) -> dict[str, int]:
        """Active NVLinks by the PCI bus id at their far end."""
        nvml = self._nvml
        remotes: dict[str, int] = {}
        for link in range(_NVLINK_MAX_LINKS):
            try:
                active = nvml.nvmlDeviceGetNvLinkState(handle, link)
            except nvml.NVMLError as error:
                if error.value in _GONE:
                    raise GpuGone(f"NVLink {link}: {error}") from error
                if error.value not in _ABSENT | {_INVALID_ARGUMENT}:
                    problems.append(f"NVLink {link}: {error} (NVML error {error.value})")
                break  # not supported, or past this GPU's last link
            if not active:
                continue
            pci = self._call(
                f"NVLink {link} remote",
                problems,
                nvml.nvmlDeviceGetNvLinkRemotePciInfo,
                handle,
                link,
            )
            key = pci_bus_key(_text(pci.busId)) if pci is not None else "?"
            remotes[key] = remotes.get(key, 0) + 1
        return remotes

    def _links(self, devices: list[_Device]) -> tuple[Link, ...]:
        nvml = self._nvml
        gpu_buses = {pci_bus_key(d.info.pci_bus_id) for d in devices}
        links = []
        for i, a in enumerate(devices):
            for b in devices[i + 1 :]:
                direct = a.nvlink_remotes.get(pci_bus_key(b.info.pci_bus_id), 0)
                # Links that end on something other than a GPU end on an NVSwitch.
                switched_a = sum(n for k, n in a.nvlink_remotes.items() if k not in gpu_buses)
                switched_b = sum(n for k, n in b.nvlink_remotes.items() if k not in gpu_buses)
                if direct:
                    links.append(Link(a.index, b.index, "nvlink", direct))
                    continue
                if switched_a and switched_b:
                    links.append(Link(a.index, b.index, "nvlink", min(switched_a, switched_b)))
                    continue
                try:
                    level = nvml.nvmlDeviceGetTopologyCommonAncestor(a.handle, b.handle)
                except nvml.NVMLError:
                    continue  # unknown: no link listed rather than a wrong one
                links.append(Link(a.index, b.index, _TOPOLOGY.get(int(level), "system")))
        return tuple(links)

    # -- events ---------------------------------------------------------------

    def _xid_counts(self, uuid: str) -> dict[int, int]:
        with self._xid_lock:
            return self._xids.setdefault(uuid, dict.fromkeys(WATCHED_XIDS, 0))

    def _count_xid(self, uuid: str, xid: int) -> None:
        counts = self._xid_counts(uuid)
        with self._xid_lock:
            counts[xid] = counts.get(xid, 0) + 1

    # -- samples ----------------------------------------------------------------

    def _xid_snapshot(self, uuid: str) -> dict[int, int]:
        counts = self._xid_counts(uuid)
        with self._xid_lock:
            return dict(counts)

    def _read_gpu(self, device: _Device, now: datetime) -> Reading:
        nvml = self._nvml
        handle = device.handle
        problems: list[str] = []
        values: dict[str, Any] = {}
        health = Health.HEALTHY
        call = self._call
        try:
            rates = call("utilisation", problems, nvml.nvmlDeviceGetUtilizationRates, handle)
            if rates is not None:
                values["gpu_utilization_percent"] = float(rates.gpu)
                values["memory_utilization_percent"] = float(rates.memory)
            memory = call("memory", problems, nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is not None:
                values["memory_used_bytes"] = int(memory.used)
                values["memory_free_bytes"] = int(memory.free)
            temperature = call("temperature", problems, self._temperature, handle)
            if temperature is not None:
                values["temperature_celsius"] = float(temperature)
            power = call("power", problems, nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                values["power_watts"] = int(power) / 1000
            clock = call("SM clock", problems, nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_SM)
            if clock is not None:
                values["sm_clock_mhz"] = int(clock)
            reasons = call("clocks event reasons", problems, self._clocks_event_reasons, handle)
            if reasons is not None:
                values["throttle_reasons"] = int(reasons)
            for key, kind in (
                ("ecc_corrected_total", _ECC_CORRECTED),
                ("ecc_uncorrected_total", _ECC_UNCORRECTED),
            ):
                count = call(
                    "ECC counter",
                    problems,
                    nvml.nvmlDeviceGetTotalEccErrors,
                    handle,
                    kind,
                    _VOLATILE_ECC,
                )
                if count is not None:
                    values[key] = int(count)
            processes = call(
                "processes", problems, nvml.nvmlDeviceGetComputeRunningProcesses, handle
            )
            if processes is not None:
                values["processes"] = tuple(
                    Process(
                        int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None
                    )
                    for p in processes
                )
        except GpuGone as gone:
            health = Health.UNHEALTHY
            problems.append(str(gone))
            self._stale = True

        xids = self._xid_snapshot(device.uuid)
        unseen = self._events.problem(device.uuid) if self._events is not None else None
        if unseen:
            problems.append(unseen)
        if values.get("ecc_uncorrected_total"):
            health = Health.UNHEALTHY
            problems.append(f"{values['ecc_uncorrected_total']} uncorrectable ECC errors")
        if fatal := xid_problems(xids):
            health = Health.UNHEALTHY
            problems.extend(fatal)
        if health is Health.HEALTHY and values.get("throttle_reasons", 0) & _THERMAL_REASONS:
            health = Health.DEGRADED
            problems.append(f"clocks slowed (reasons {values['throttle_reasons']:#x})")
        return Reading(
            uuid=device.uuid,
            time=now,
            health=health,
            xid_counts=xids,
            problems=tuple(problems),
            **values,
        )


def _conforms(probe: NvmlProbe) -> Probe:
    """Lets the type checker hold NvmlProbe to the Probe protocol."""
    return probe
