"""AMD GPUs through the amdsmi Python package (ROCm 7.x).

amdsmi is initialised once per probe and processor handles are cached. A GPU
whose calls fail with a "the GPU is gone" status (not found, not initialised,
driver not loaded, restart failed) reads UNHEALTHY with the error in
`problems`, and the next `inventory()` shuts amdsmi down, initialises it again
and re-enumerates; a GPU that is no longer listed stays UNHEALTHY until it
returns. "Not supported" (and the "N/A" strings amdsmi puts in its dicts) is
None, never 0. AMD has no Xid events: `xid_counts` stays empty and
uncorrectable ECC errors mark a GPU UNHEALTHY. See docs/amdsmi-probe.md.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.probe.base import (
    GpuInfo,
    Health,
    Inventory,
    Link,
    Probe,
    ProbeError,
    Process,
    Reading,
)
from agent.probe.driver import Device, DriverProbe, GpuGone
from flare import gpus

# amdsmi_status_t values (amdsmi.h), by what the probe does with them.
_NOT_SUPPORTED = 2
_NOT_YET_IMPLEMENTED = 3
_FAIL_LOAD_MODULE = 4
_NOT_FOUND = 31
_NOT_INIT = 32
_DRIVER_NOT_LOADED = 34
_NO_DATA = 40
_DIRECTORY_NOT_FOUND = 20
_AMDGPU_RESTART_ERR = 54
# Absent: the value does not exist on this GPU, driver or firmware.
_ABSENT = frozenset({_NOT_SUPPORTED, _NOT_YET_IMPLEMENTED, _NO_DATA})
# The GPU (or the driver under it) is gone.
_GONE = frozenset(
    {_NOT_FOUND, _NOT_INIT, _DRIVER_NOT_LOADED, _DIRECTORY_NOT_FOUND, _AMDGPU_RESTART_ERR}
)

# amdsmi_link_type_t
_LINK_INTERNAL = 0
_LINK_PCIE = 1
_LINK_XGMI = 2

_NUMA_UNKNOWN = 0xFFFFFFFF
# Market names amdsmi may leave empty ("N/A") or give as a hex id; the PCI
# device id then names the board.
_DEVICE_IDS = {0x74A1: "AMD Instinct MI300X"}


def _present(value: Any) -> bool:
    """amdsmi writes "N/A" where a field has no value."""
    return value is not None and not (isinstance(value, str) and value.strip().upper() == "N/A")


def _number(value: Any) -> float | None:
    if not _present(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _celsius(value: Any) -> float | None:
    """amdsmi 7.x reports degrees Celsius; older libraries gave millidegrees.
    No GPU runs at 1000 degrees, so a value that large is millidegrees."""
    number = _number(value)
    if number is None:
        return None
    return number / 1000 if abs(number) >= 1000 else number


class AmdSmiProbe(DriverProbe[Device]):
    """The `Probe` for AMD GPUs. Raises ProbeError when amdsmi cannot work at
    all (package or ROCm library missing, driver not loaded)."""

    backend = "amdsmi"
    absent_codes = _ABSENT
    gone_codes = _GONE
    code_label = "amdsmi status"

    def __init__(
        self,
        *,
        module: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if module is None:
            try:
                module = importlib.import_module("amdsmi")
            except ImportError as error:
                raise ProbeError(
                    "the amdsmi backend needs the amdsmi Python package from ROCm"
                ) from error
            except (OSError, KeyError) as error:
                # The package is there but libamd_smi.so is not (KeyError is
                # what amdsmi 7.x raises when its loader finds no library).
                raise ProbeError(
                    "amdsmi is installed but the ROCm library libamd_smi.so cannot be "
                    f"loaded ({error!r}): install ROCm or make its libraries visible"
                ) from error
        super().__init__(clock)
        self._smi: Any = module
        self._known: dict[str, int] = {}  # every UUID seen, by its last index
        self._init()

    # -- lifecycle --------------------------------------------------------

    def _library_error(self) -> type[Exception]:
        error: type[Exception] = self._smi.AmdSmiException
        return error

    def _error_code(self, error: BaseException) -> int | None:
        code = getattr(error, "err_code", None)
        return int(code) if isinstance(code, int) else None

    def _init(self) -> None:
        smi = self._smi
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except smi.AmdSmiException as error:
            code = self._error_code(error)
            if code == _DRIVER_NOT_LOADED:
                message = "amdsmi: the amdgpu kernel driver is not loaded"
            elif code == _FAIL_LOAD_MODULE:
                message = "amdsmi: the amdgpu kernel module could not be loaded"
            else:
                message = f"amdsmi initialisation failed: {error}"
            raise ProbeError(message) from error
        self._initialised = True

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(self._smi.AmdSmiException):
                self._smi.amdsmi_shut_down()

    # -- inventory ------------------------------------------------------------

    def _enumerate(self) -> None:
        smi = self._smi
        problems: list[str] = []
        try:
            handles = list(smi.amdsmi_get_processor_handles())
        except smi.AmdSmiException as error:
            raise ProbeError(f"amdsmi cannot enumerate GPUs: {error}") from error

        # Placeholders for GPUs whose UUID could not be read are looked at afresh.
        self._missing = {u: p for u, p in self._missing.items() if u in self._known}
        devices: list[Device] = []
        for index, handle in enumerate(handles):
            uuid = f"amdsmi-index-{index}"
            try:
                read = self._call("UUID", problems, smi.amdsmi_get_gpu_device_uuid, handle)
                if not _present(read) or not str(read):
                    raise GpuGone("amdsmi gives no UUID for this GPU")
                uuid = str(read)
                devices.append(self._describe(index, uuid, handle, problems))
                self._known[uuid] = index
                self._missing.pop(uuid, None)
            except GpuGone as gone:
                self._missing[uuid] = f"GPU {index} not usable: {gone}"
        listed = {d.uuid for d in devices}
        for uuid, index in self._known.items():
            if uuid not in listed and uuid not in self._missing:
                self._missing[uuid] = f"GPU {index} ({uuid}) is no longer listed by amdsmi"

        driver = ""
        if devices:
            info = self._call(
                "driver info", problems, smi.amdsmi_get_gpu_driver_info, devices[0].handle
            )
            if info is not None and _present(info.get("driver_version")):
                driver = str(info["driver_version"])
        self._devices = devices
        links = self._links(devices, problems)
        self._inventory = Inventory(
            backend="amdsmi",
            driver_version=driver,
            runtime_version=self._rocm_version(),
            gpus=tuple(d.info for d in devices),
            links=links,
            problems=tuple(problems),
        )

    def _rocm_version(self) -> str:
        read = getattr(self._smi, "amdsmi_get_rocm_version", None)
        if read is None:
            return ""
        try:
            ok, version = read()
        except Exception:  # it loads another library; a failure only loses the version
            return ""
        return str(version) if ok else ""

    def _describe(self, index: int, uuid: str, handle: Any, problems: list[str]) -> Device:
        smi = self._smi
        call = self._call
        asic = call("ASIC info", problems, smi.amdsmi_get_gpu_asic_info, handle) or {}
        raw_name = str(asic.get("market_name", "")) if _present(asic.get("market_name")) else ""
        spec = gpus.from_product_name(raw_name) if raw_name else None
        if spec is None and _present(asic.get("device_id")):
            try:
                by_id = _DEVICE_IDS.get(int(str(asic["device_id"]), 16))
            except ValueError:
                by_id = None
            if by_id is not None:
                spec = gpus.from_product_name(by_id)
                raw_name = raw_name or by_id
        memory = call(
            "VRAM total",
            problems,
            smi.amdsmi_get_gpu_memory_total,
            handle,
            smi.AmdSmiMemoryType.VRAM,
        )
        if memory is None:
            vram = call("VRAM info", problems, smi.amdsmi_get_gpu_vram_info, handle)
            size_mb = _number(vram.get("vram_size")) if vram is not None else None
            memory = int(size_mb) * 2**20 if size_mb is not None else 0
        bdf = call("PCI BDF", problems, smi.amdsmi_get_gpu_device_bdf, handle)
        numa = call("NUMA node", problems, smi.amdsmi_topo_get_numa_node_number, handle)
        cap = call("power cap", problems, smi.amdsmi_get_power_cap_info, handle)
        cap_uw = _number(cap.get("power_cap")) if cap is not None else None
        info = GpuInfo(
            index=index,
            uuid=uuid,
            raw_name=raw_name,
            model=spec.model if spec else "",
            vendor="amd",
            architecture=spec.architecture if spec else "",
            memory_bytes=int(memory),
            compute_capability="",
            pci_bus_id=str(bdf) if _present(bdf) else "",
            numa_node=(int(numa) if isinstance(numa, int) and 0 <= numa < _NUMA_UNKNOWN else None),
            mig_enabled=False,
            power_limit_watts=cap_uw / 1_000_000 if cap_uw else None,
        )
        return Device(index, uuid, handle, info)

    def _links(self, devices: list[Device], problems: list[str]) -> tuple[Link, ...]:
        smi = self._smi
        links = []
        for i, a in enumerate(devices):
            for b in devices[i + 1 :]:
                try:
                    found = smi.amdsmi_topo_get_link_type(a.handle, b.handle)
                except smi.AmdSmiException as error:
                    if self._error_code(error) not in _ABSENT:
                        problems.append(f"link {a.index}-{b.index}: {error}")
                    continue  # unknown: no link listed rather than a wrong one
                kind = int(found.get("type", -1))
                hops = int(found.get("hops", 0) or 0)
                if kind == _LINK_XGMI:
                    # One hop is a direct XGMI link; more cross other GPUs.
                    links.append(Link(a.index, b.index, "xgmi", 1 if hops == 1 else 0))
                elif kind == _LINK_PCIE:
                    links.append(Link(a.index, b.index, "pcie"))
                elif kind == _LINK_INTERNAL:
                    links.append(Link(a.index, b.index, "single"))
                else:
                    links.append(Link(a.index, b.index, "system"))
        return tuple(links)

    # -- samples ----------------------------------------------------------------

    def _read_gpu(self, device: Device, now: datetime) -> Reading:
        smi = self._smi
        handle = device.handle
        problems: list[str] = []
        values: dict[str, Any] = {}
        health = Health.HEALTHY
        call = self._call
        try:
            activity = call("activity", problems, smi.amdsmi_get_gpu_activity, handle)
            if activity is not None:
                gfx = _number(activity.get("gfx_activity"))
                umc = _number(activity.get("umc_activity"))
                if gfx is not None:
                    values["gpu_utilization_percent"] = gfx
                if umc is not None:
                    values["memory_utilization_percent"] = umc
            used = call(
                "VRAM used",
                problems,
                smi.amdsmi_get_gpu_memory_usage,
                handle,
                smi.AmdSmiMemoryType.VRAM,
            )
            if _number(used) is not None:
                values["memory_used_bytes"] = int(used)
                total = device.info.memory_bytes
                if total:
                    values["memory_free_bytes"] = max(total - int(used), 0)
            temperature = self._temperature(handle, problems)
            if temperature is not None:
                values["temperature_celsius"] = temperature
            power = call("power", problems, smi.amdsmi_get_power_info, handle)
            if power is not None:
                # MI300-class boards fill current_socket_power, MI200-class the average.
                for key in ("current_socket_power", "average_socket_power", "socket_power"):
                    watts = _number(power.get(key))
                    if watts is not None:
                        values["power_watts"] = watts
                        break
            clock = call(
                "GFX clock", problems, smi.amdsmi_get_clock_info, handle, smi.AmdSmiClkType.GFX
            )
            if clock is not None and (mhz := _number(clock.get("clk"))) is not None:
                values["sm_clock_mhz"] = int(mhz)
            ecc = call("ECC counts", problems, smi.amdsmi_get_gpu_total_ecc_count, handle)
            if ecc is not None:
                corrected = _number(ecc.get("correctable_count"))
                uncorrected = _number(ecc.get("uncorrectable_count"))
                if corrected is not None:
                    values["ecc_corrected_total"] = int(corrected)
                if uncorrected is not None:
                    values["ecc_uncorrected_total"] = int(uncorrected)
            processes = call("processes", problems, smi.amdsmi_get_gpu_process_list, handle)
            if processes is not None:
                values["processes"] = tuple(self._process(p) for p in processes)
        except GpuGone as gone:
            health = Health.UNHEALTHY
            problems.append(str(gone))
            self._stale = True

        if values.get("ecc_uncorrected_total"):
            health = Health.UNHEALTHY
            problems.append(f"{values['ecc_uncorrected_total']} uncorrectable ECC errors")
        return Reading(
            uuid=device.uuid,
            time=now,
            health=health,
            problems=tuple(problems),
            **values,
        )

    def _temperature(self, handle: Any, problems: list[str]) -> float | None:
        """The hotspot (junction) sensor, which every Instinct board has; the
        edge sensor only where the board has no hotspot sensor."""
        smi = self._smi
        for sensor in (smi.AmdSmiTemperatureType.HOTSPOT, smi.AmdSmiTemperatureType.EDGE):
            value = self._call(
                "temperature",
                problems,
                smi.amdsmi_get_temp_metric,
                handle,
                sensor,
                smi.AmdSmiTemperatureMetric.CURRENT,
            )
            celsius = _celsius(value)
            if celsius is not None:
                return celsius
        return None

    @staticmethod
    def _process(entry: Any) -> Process:
        usage = entry.get("memory_usage")
        vram = usage.get("vram_mem") if isinstance(usage, dict) else None
        if not _present(vram):
            vram = entry.get("mem")
        number = _number(vram)
        return Process(int(entry["pid"]), int(number) if number is not None else None)


def _conforms(probe: AmdSmiProbe) -> Probe:
    """Lets the type checker hold AmdSmiProbe to the Probe protocol."""
    return probe
