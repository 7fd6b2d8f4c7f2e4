"""A FAKE of the amdsmi 7.x Python module, for tests on machines without an AMD
GPU or the ROCm library. Nothing here talks to hardware.

It offers the functions AmdSmiProbe calls under the names, argument shapes and
return dict keys of amdsmi 7.x, the exception classes (`AmdSmiException`,
`AmdSmiLibraryException` carrying `err_code`, ...) and the enums the calls
take. Written from the published signatures; no code of the real package.

Configure it with `FakeGpu` boards (`mi300x()`, `mi250x()`), then inject
trouble: `fail(function, status, uuid)` makes one call fail with an amdsmi
status, `remove(uuid)` makes a GPU disappear (its calls fail with "not found"
and it is no longer listed), `restore(uuid)` brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

# amdsmi_status_t values, as the C library defines them.
AMDSMI_STATUS_SUCCESS = 0
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NOT_YET_IMPLEMENTED = 3
AMDSMI_STATUS_TIMEOUT = 8
AMDSMI_STATUS_RETRY = 9
AMDSMI_STATUS_NO_PERM = 10
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34
AMDSMI_STATUS_NO_DATA = 40

_STATUS_TEXT = {
    AMDSMI_STATUS_INVAL: "invalid parameters",
    AMDSMI_STATUS_NOT_SUPPORTED: "feature not supported",
    AMDSMI_STATUS_NOT_YET_IMPLEMENTED: "feature not yet implemented",
    AMDSMI_STATUS_TIMEOUT: "timeout in API call",
    AMDSMI_STATUS_RETRY: "retry operation",
    AMDSMI_STATUS_NO_PERM: "permission denied",
    AMDSMI_STATUS_NOT_FOUND: "device not found",
    AMDSMI_STATUS_NOT_INIT: "device not initialized",
    AMDSMI_STATUS_DRIVER_NOT_LOADED: "driver not loaded",
    AMDSMI_STATUS_NO_DATA: "no data was found for given input",
}

_NA_16 = 0xFFFF


class AmdSmiException(Exception):
    """Base of every amdsmi error."""


class AmdSmiLibraryException(AmdSmiException):
    """The library returned a status other than success."""

    def __init__(self, err_code: int) -> None:
        code = abs(err_code)
        super().__init__(code)
        self.err_code = code
        self.err_info = _STATUS_TEXT.get(code, "unknown error")

    def __str__(self) -> str:
        return f"status {self.err_code}: {self.err_info}"

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiRetryException(AmdSmiLibraryException):
    def __init__(self) -> None:
        super().__init__(AMDSMI_STATUS_RETRY)


class AmdSmiTimeoutException(AmdSmiLibraryException):
    def __init__(self) -> None:
        super().__init__(AMDSMI_STATUS_TIMEOUT)


class AmdSmiParameterException(AmdSmiException):
    """A Python-side argument of the wrong type; carries no status."""

    def __init__(self, received: object, expected: object, msg: str | None = None) -> None:
        super().__init__(msg)
        self.err_code = None
        self.err_msg = msg or f"invalid parameter: got {type(received)}, expected {expected}"

    def __str__(self) -> str:
        return self.err_msg


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1
    INIT_NON_AMD_CPUS = 1 << 2
    INIT_NON_AMD_GPUS = 1 << 3
    INIT_AMD_APUS = INIT_AMD_CPUS | INIT_AMD_GPUS


class AmdSmiMemoryType(IntEnum):
    VRAM = 0
    VIS_VRAM = 1
    GTT = 2


class AmdSmiTemperatureType(IntEnum):
    EDGE = 0
    HOTSPOT = 1
    JUNCTION = 1
    VRAM = 2


class AmdSmiTemperatureMetric(IntEnum):
    CURRENT = 0
    MAX = 1
    MIN = 2
    CRITICAL = 5


class AmdSmiClkType(IntEnum):
    SYS = 0
    GFX = 0
    DF = 1
    DCEF = 2
    SOC = 3
    MEM = 4


class AmdSmiLinkType(IntEnum):
    AMDSMI_LINK_TYPE_INTERNAL = 0
    AMDSMI_LINK_TYPE_PCIE = 1
    AMDSMI_LINK_TYPE_XGMI = 2
    AMDSMI_LINK_TYPE_NOT_APPLICABLE = 3
    AMDSMI_LINK_TYPE_UNKNOWN = 4


@dataclass
class FakeGpu:
    """One board. None in a metric means amdsmi says "not supported" for it."""

    uuid: str
    market_name: str
    device_id: int
    target_graphics_version: str
    bdf: str
    vram_mb: int
    numa_node: int | None = 0
    power_cap_w: float | None = 750.0
    hive: str | None = "hive-0"  # GPUs in the same hive are joined by XGMI
    gfx_activity: int | None = 40
    umc_activity: int | None = 20
    vram_used_bytes: int | None = 8 * 2**30
    hotspot_c: int | None = 55
    edge_c: int | None = None
    current_power_w: int | None = 400
    average_power_w: int | None = None
    gfx_clock_mhz: int | None = 2100
    ecc_correctable: int | None = 0
    ecc_uncorrectable: int | None = 0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, VRAM bytes)


def mi300x(index: int, **changes: Any) -> FakeGpu:
    values: dict[str, Any] = {
        "uuid": f"{index:02x}ff74a1-0000-1000-80c0-00000000{index:04x}",
        "market_name": "AMD Instinct MI300X",
        "device_id": 0x74A1,
        "target_graphics_version": "gfx942",
        "bdf": f"0000:{0x05 + index * 0x20:02x}:00.0",
        "vram_mb": 196_592,
        "numa_node": index // 4,
        "power_cap_w": 750.0,
        "edge_c": None,  # MI300X boards have no edge sensor
    }
    values.update(changes)
    return FakeGpu(**values)


def mi250x(index: int, **changes: Any) -> FakeGpu:
    values: dict[str, Any] = {
        "uuid": f"{index:02x}ff740c-0000-1000-8000-00000000{index:04x}",
        "market_name": "AMD Instinct MI250X",
        "device_id": 0x740C,
        "target_graphics_version": "gfx90a",
        "bdf": f"0000:{0x29 + index * 0x10:02x}:00.0",
        "vram_mb": 131_072,
        "numa_node": index // 4,
        "power_cap_w": 560.0,
        "edge_c": 41,
        "hotspot_c": 48,
        "current_power_w": None,  # MI200 boards give only the average
        "average_power_w": 300,
    }
    values.update(changes)
    return FakeGpu(**values)


class FakeProcessorHandle:
    """Stands for amdsmi's opaque processor handle; valid until the next shut-down."""

    def __init__(self, uuid: str, generation: int) -> None:
        self.uuid = uuid
        self.generation = generation

    def __repr__(self) -> str:
        return f"FakeProcessorHandle({self.uuid!r}, {self.generation})"


# Aliases for annotations inside FakeAmdSmi, whose attributes shadow these names.
_LibraryError = AmdSmiLibraryException
_InitFlags = AmdSmiInitFlags
_MemoryType = AmdSmiMemoryType
_TemperatureType = AmdSmiTemperatureType
_TemperatureMetric = AmdSmiTemperatureMetric
_ClkType = AmdSmiClkType


class FakeAmdSmi:
    """The fake module: hand an instance to `AmdSmiProbe(module=...)`."""

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiRetryException = AmdSmiRetryException
    AmdSmiTimeoutException = AmdSmiTimeoutException
    AmdSmiParameterException = AmdSmiParameterException
    AmdSmiInitFlags = AmdSmiInitFlags
    AmdSmiMemoryType = AmdSmiMemoryType
    AmdSmiTemperatureType = AmdSmiTemperatureType
    AmdSmiTemperatureMetric = AmdSmiTemperatureMetric
    AmdSmiClkType = AmdSmiClkType
    AmdSmiLinkType = AmdSmiLinkType

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        driver_version: str = "6.12.12",
        rocm_version: str | None = "7.0.2",
        init_status: int | None = None,
    ) -> None:
        self.gpus = {gpu.uuid: gpu for gpu in gpus}
        self.order = [gpu.uuid for gpu in gpus]
        self.driver_version = driver_version
        self.rocm_version = rocm_version
        self.init_status = init_status
        self.initialised = False
        self.init_count = 0
        self.generation = 0
        self.removed: dict[str, int] = {}  # uuid -> status its calls fail with
        self.failures: dict[tuple[str, str | None], int] = {}
        self.calls: list[str] = []

    # -- test controls --------------------------------------------------------

    def fail(self, function: str, status: int, uuid: str | None = None) -> None:
        """Make `function` fail with `status` (for one GPU, or for all)."""
        self.failures[(function, uuid)] = status

    def heal(self, function: str, uuid: str | None = None) -> None:
        self.failures.pop((function, uuid), None)

    def remove(self, uuid: str, status: int = AMDSMI_STATUS_NOT_FOUND) -> None:
        """The GPU disappears: its calls fail with `status`; it is not listed."""
        self.removed[uuid] = status

    def restore(self, uuid: str) -> None:
        self.removed.pop(uuid, None)

    # -- helpers ----------------------------------------------------------------

    def _check(self, function: str, handle: object = None) -> FakeGpu | None:
        self.calls.append(function)
        if not self.initialised:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        gpu = None
        if handle is not None:
            if not isinstance(handle, FakeProcessorHandle):
                raise AmdSmiParameterException(handle, FakeProcessorHandle)
            if handle.generation != self.generation:
                raise AmdSmiLibraryException(AMDSMI_STATUS_INVAL)
            if handle.uuid in self.removed:
                raise AmdSmiLibraryException(self.removed[handle.uuid])
            gpu = self.gpus[handle.uuid]
            status = self.failures.get((function, gpu.uuid))
            if status is not None:
                raise AmdSmiLibraryException(status)
        status = self.failures.get((function, None))
        if status is not None:
            raise AmdSmiLibraryException(status)
        return gpu

    def _gpu(self, function: str, handle: object) -> FakeGpu:
        gpu = self._check(function, handle)
        assert gpu is not None
        return gpu

    @staticmethod
    def _unsupported() -> _LibraryError:
        return AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)

    # -- lifecycle and discovery --------------------------------------------------

    def amdsmi_init(self, flag: _InitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        self.calls.append("amdsmi_init")
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiParameterException(flag, AmdSmiInitFlags)
        if self.init_status is not None:
            raise AmdSmiLibraryException(self.init_status)
        self.initialised = True
        self.init_count += 1
        self.generation += 1

    def amdsmi_shut_down(self) -> None:
        self._check("amdsmi_shut_down")
        self.initialised = False

    def amdsmi_get_processor_handles(self) -> list[FakeProcessorHandle]:
        self._check("amdsmi_get_processor_handles")
        return [
            FakeProcessorHandle(uuid, self.generation)
            for uuid in self.order
            if uuid not in self.removed
        ]

    def amdsmi_get_rocm_version(self) -> tuple[bool, str]:
        if self.rocm_version is None:
            return False, "Could not find librocm-core.so"
        return True, self.rocm_version

    # -- identity -----------------------------------------------------------------

    def amdsmi_get_gpu_device_uuid(self, processor_handle: object) -> str:
        return self._gpu("amdsmi_get_gpu_device_uuid", processor_handle).uuid

    def amdsmi_get_gpu_device_bdf(self, processor_handle: object) -> str:
        return self._gpu("amdsmi_get_gpu_device_bdf", processor_handle).bdf

    def amdsmi_get_gpu_asic_info(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_gpu_asic_info", processor_handle)
        return {
            "market_name": gpu.market_name or "N/A",
            "vendor_id": "0x1002",
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "subvendor_id": "0x1002",
            "device_id": hex(gpu.device_id),
            "rev_id": "0x00",
            "asic_serial": "0x" + gpu.uuid.replace("-", "")[-16:].upper(),
            "oam_id": self.order.index(gpu.uuid),
            "num_compute_units": 304 if gpu.device_id == 0x74A1 else 220,
            "target_graphics_version": gpu.target_graphics_version,
            "subsystem_id": "0x74a1",
        }

    def amdsmi_get_gpu_driver_info(self, processor_handle: object) -> dict[str, Any]:
        self._gpu("amdsmi_get_gpu_driver_info", processor_handle)
        return {
            "driver_name": "amdgpu",
            "driver_version": self.driver_version,
            "driver_date": "2015/01/01 00:00",
        }

    def amdsmi_topo_get_numa_node_number(self, processor_handle: object) -> int:
        gpu = self._gpu("amdsmi_topo_get_numa_node_number", processor_handle)
        if gpu.numa_node is None:
            raise self._unsupported()
        return gpu.numa_node

    # -- memory -----------------------------------------------------------------------

    def amdsmi_get_gpu_vram_info(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_gpu_vram_info", processor_handle)
        return {
            "vram_type": 11,
            "vram_vendor": "HYNIX",
            "vram_size": gpu.vram_mb,
            "vram_bit_width": 8192,
            "vram_max_bandwidth": "N/A",
        }

    def amdsmi_get_gpu_memory_total(self, processor_handle: object, mem_type: _MemoryType) -> int:
        gpu = self._gpu("amdsmi_get_gpu_memory_total", processor_handle)
        if not isinstance(mem_type, AmdSmiMemoryType):
            raise AmdSmiParameterException(mem_type, AmdSmiMemoryType)
        if mem_type is not AmdSmiMemoryType.VRAM:
            return 512 * 2**20
        return gpu.vram_mb * 2**20

    def amdsmi_get_gpu_memory_usage(self, processor_handle: object, mem_type: _MemoryType) -> int:
        gpu = self._gpu("amdsmi_get_gpu_memory_usage", processor_handle)
        if not isinstance(mem_type, AmdSmiMemoryType):
            raise AmdSmiParameterException(mem_type, AmdSmiMemoryType)
        if gpu.vram_used_bytes is None:
            raise self._unsupported()
        return gpu.vram_used_bytes if mem_type is AmdSmiMemoryType.VRAM else 0

    def amdsmi_get_gpu_vram_usage(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_gpu_vram_usage", processor_handle)
        if gpu.vram_used_bytes is None:
            raise self._unsupported()
        return {"vram_total": gpu.vram_mb, "vram_used": gpu.vram_used_bytes // 2**20}

    # -- metrics ----------------------------------------------------------------------

    def amdsmi_get_gpu_activity(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_gpu_activity", processor_handle)
        values = (gpu.gfx_activity, gpu.umc_activity, None)
        keys = ("gfx_activity", "umc_activity", "mm_activity")
        return {k: "N/A" if v is None else v for k, v in zip(keys, values, strict=True)}

    def amdsmi_get_temp_metric(
        self,
        processor_handle: object,
        sensor_type: _TemperatureType,
        metric: _TemperatureMetric,
    ) -> int:
        gpu = self._gpu("amdsmi_get_temp_metric", processor_handle)
        if not isinstance(sensor_type, AmdSmiTemperatureType):
            raise AmdSmiParameterException(sensor_type, AmdSmiTemperatureType)
        if not isinstance(metric, AmdSmiTemperatureMetric):
            raise AmdSmiParameterException(metric, AmdSmiTemperatureMetric)
        if metric is not AmdSmiTemperatureMetric.CURRENT:
            raise self._unsupported()
        by_sensor = {
            AmdSmiTemperatureType.EDGE: gpu.edge_c,
            AmdSmiTemperatureType.HOTSPOT: gpu.hotspot_c,
        }
        value = by_sensor.get(sensor_type)
        if value is None:
            raise self._unsupported()
        return value

    def amdsmi_get_power_info(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_power_info", processor_handle)
        current = gpu.current_power_w
        average = gpu.average_power_w
        limit = int(gpu.power_cap_w) if gpu.power_cap_w is not None else _NA_16
        values = {
            "socket_power": current if current is not None else average,
            "current_socket_power": current,
            "average_socket_power": average,
            "gfx_voltage": None,
            "soc_voltage": None,
            "mem_voltage": None,
            "power_limit": limit,
        }
        return {k: "N/A" if v is None or v == _NA_16 else v for k, v in values.items()}

    def amdsmi_get_power_cap_info(self, processor_handle: object) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_power_cap_info", processor_handle)
        if gpu.power_cap_w is None:
            raise self._unsupported()
        cap = int(gpu.power_cap_w * 1_000_000)  # microwatts
        return {
            "power_cap": cap,
            "default_power_cap": cap,
            "dpm_cap": 0,
            "min_power_cap": 0,
            "max_power_cap": cap,
        }

    def amdsmi_get_clock_info(
        self, processor_handle: object, clock_type: _ClkType
    ) -> dict[str, Any]:
        gpu = self._gpu("amdsmi_get_clock_info", processor_handle)
        if not isinstance(clock_type, AmdSmiClkType):
            raise AmdSmiParameterException(clock_type, AmdSmiClkType)
        if clock_type is not AmdSmiClkType.GFX or gpu.gfx_clock_mhz is None:
            raise self._unsupported()
        return {
            "clk": gpu.gfx_clock_mhz,
            "min_clk": 500,
            "max_clk": 2100,
            "clk_locked": False,
            "clk_deep_sleep": "N/A",
        }

    def _ecc(self, gpu: FakeGpu) -> dict[str, Any]:
        if gpu.ecc_correctable is None or gpu.ecc_uncorrectable is None:
            raise self._unsupported()
        return {
            "correctable_count": gpu.ecc_correctable,
            "uncorrectable_count": gpu.ecc_uncorrectable,
            "deferred_count": 0,
        }

    def amdsmi_get_gpu_total_ecc_count(self, processor_handle: object) -> dict[str, Any]:
        return self._ecc(self._gpu("amdsmi_get_gpu_total_ecc_count", processor_handle))

    def amdsmi_get_gpu_ecc_count(self, processor_handle: object, block: object) -> dict[str, Any]:
        return self._ecc(self._gpu("amdsmi_get_gpu_ecc_count", processor_handle))

    def amdsmi_get_gpu_process_list(self, processor_handle: object) -> list[dict[str, Any]]:
        gpu = self._gpu("amdsmi_get_gpu_process_list", processor_handle)
        return [
            {
                "name": f"python{pid}",
                "pid": pid,
                "mem": vram,
                "engine_usage": {"gfx": 0, "enc": 0},
                "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": vram},
                "cu_occupancy": "N/A",
            }
            for pid, vram in gpu.processes
        ]

    # -- topology ---------------------------------------------------------------------

    def _pair(self, function: str, src: object, dst: object) -> tuple[FakeGpu, FakeGpu]:
        a = self._gpu(function, src)
        b = self._gpu(function, dst)
        return a, b

    def amdsmi_topo_get_link_type(self, src: object, dst: object) -> dict[str, int]:
        a, b = self._pair("amdsmi_topo_get_link_type", src, dst)
        if a.uuid == b.uuid:
            return {"hops": 0, "type": AmdSmiLinkType.AMDSMI_LINK_TYPE_INTERNAL.value}
        if a.hive is not None and a.hive == b.hive:
            return {"hops": 1, "type": AmdSmiLinkType.AMDSMI_LINK_TYPE_XGMI.value}
        return {"hops": 2, "type": AmdSmiLinkType.AMDSMI_LINK_TYPE_PCIE.value}

    def amdsmi_topo_get_link_weight(self, src: object, dst: object) -> int:
        a, b = self._pair("amdsmi_topo_get_link_weight", src, dst)
        if a.uuid == b.uuid:
            return 0
        return 15 if a.hive is not None and a.hive == b.hive else 40
