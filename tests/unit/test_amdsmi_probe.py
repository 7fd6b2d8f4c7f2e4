"""AmdSmiProbe against the FAKE amdsmi module (tests/fakes/amdsmi_fake.py):
no AMD GPU or ROCm library is needed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.probe.amdsmi import AmdSmiProbe
from agent.probe.base import Health, ProbeError
from tests.fakes.amdsmi_fake import (
    AMDSMI_STATUS_DRIVER_NOT_LOADED,
    AMDSMI_STATUS_NOT_SUPPORTED,
    AMDSMI_STATUS_RETRY,
    FakeAmdSmi,
    mi250x,
    mi300x,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _probe(fake: FakeAmdSmi) -> AmdSmiProbe:
    return AmdSmiProbe(module=fake, clock=lambda: NOW)


def _eight_mi300x() -> FakeAmdSmi:
    return FakeAmdSmi([mi300x(i) for i in range(8)])


def test_inventory_of_eight_mi300x_with_xgmi() -> None:
    fake = _eight_mi300x()
    inventory = _probe(fake).inventory()
    assert inventory.backend == "amdsmi"
    assert inventory.driver_version == "6.12.12"
    assert inventory.runtime_version == "7.0.2"
    assert len(inventory.gpus) == 8
    first = inventory.gpus[0]
    assert first.uuid == fake.order[0]
    assert first.raw_name == "AMD Instinct MI300X"
    assert first.model == "amd-mi300x"
    assert first.vendor == "amd"
    assert first.architecture == "cdna3"
    assert first.memory_bytes == 196_592 * 2**20
    assert first.pci_bus_id == "0000:05:00.0"
    assert first.compute_capability == ""
    assert not first.mig_enabled
    assert first.power_limit_watts == 750.0
    assert [g.numa_node for g in inventory.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [g.index for g in inventory.gpus] == list(range(8))
    # Every pair is one XGMI hop apart.
    assert len(inventory.links) == 8 * 7 // 2
    assert {(k.link_type, k.link_count) for k in inventory.links} == {("xgmi", 1)}
    assert {(k.gpu_a, k.gpu_b) for k in inventory.links} == {
        (a, b) for a in range(8) for b in range(a + 1, 8)
    }


def test_gpus_in_different_hives_are_joined_by_pcie() -> None:
    fake = FakeAmdSmi([mi250x(0), mi250x(1), mi250x(2, hive="hive-1")])
    inventory = _probe(fake).inventory()
    kinds = {(k.gpu_a, k.gpu_b): k.link_type for k in inventory.links}
    assert kinds == {(0, 1): "xgmi", (0, 2): "pcie", (1, 2): "pcie"}
    assert inventory.gpus[0].model == "amd-mi250x"
    assert inventory.gpus[0].architecture == "cdna2"


def test_market_name_missing_falls_back_to_device_id() -> None:
    fake = FakeAmdSmi([mi300x(0, market_name="")])
    gpu = _probe(fake).inventory().gpus[0]
    assert gpu.model == "amd-mi300x"
    assert gpu.raw_name == "AMD Instinct MI300X"


def test_unknown_board_keeps_raw_name_and_empty_model() -> None:
    fake = FakeAmdSmi([mi300x(0, market_name="AMD Radeon Pro Mystery", device_id=0x1234)])
    gpu = _probe(fake).inventory().gpus[0]
    assert (gpu.raw_name, gpu.model, gpu.architecture) == ("AMD Radeon Pro Mystery", "", "")


def test_sample_reads_every_metric() -> None:
    fake = FakeAmdSmi([mi300x(0, processes=[(4242, 3 * 2**30)])])
    probe = _probe(fake)
    (reading,) = probe.sample()
    assert reading.health is Health.HEALTHY
    assert reading.time == NOW
    assert reading.gpu_utilization_percent == 40.0
    assert reading.memory_utilization_percent == 20.0
    assert reading.memory_used_bytes == 8 * 2**30
    assert reading.memory_free_bytes == 196_592 * 2**20 - 8 * 2**30
    assert reading.temperature_celsius == 55.0  # hotspot
    assert reading.power_watts == 400.0
    assert reading.sm_clock_mhz == 2100
    assert reading.ecc_corrected_total == 0
    assert reading.ecc_uncorrected_total == 0
    assert [(p.pid, p.memory_used_bytes) for p in reading.processes] == [(4242, 3 * 2**30)]
    assert reading.problems == ()
    assert reading.xid_counts == {}


def test_mi250x_uses_average_power_and_hotspot() -> None:
    (reading,) = _probe(FakeAmdSmi([mi250x(0)])).sample()
    assert reading.power_watts == 300.0
    assert reading.temperature_celsius == 48.0


def test_edge_temperature_when_no_hotspot_sensor() -> None:
    (reading,) = _probe(FakeAmdSmi([mi250x(0, hotspot_c=None)])).sample()
    assert reading.temperature_celsius == 41.0


def test_millidegrees_are_converted() -> None:
    (reading,) = _probe(FakeAmdSmi([mi300x(0, hotspot_c=61_000)])).sample()
    assert reading.temperature_celsius == 61.0


def test_not_supported_metrics_are_none_not_zero() -> None:
    gpu = mi300x(
        0,
        gfx_activity=None,
        umc_activity=None,
        hotspot_c=None,
        edge_c=None,
        current_power_w=None,
        gfx_clock_mhz=None,
        ecc_correctable=None,
        ecc_uncorrectable=None,
        numa_node=None,
        power_cap_w=None,
    )
    fake = FakeAmdSmi([gpu])
    fake.fail("amdsmi_get_gpu_memory_usage", AMDSMI_STATUS_NOT_SUPPORTED)
    fake.fail("amdsmi_get_gpu_process_list", AMDSMI_STATUS_NOT_SUPPORTED)
    probe = _probe(fake)
    info = probe.inventory().gpus[0]
    assert info.numa_node is None
    assert info.power_limit_watts is None
    (reading,) = probe.sample()
    assert reading.health is Health.HEALTHY
    for value in (
        reading.gpu_utilization_percent,
        reading.memory_utilization_percent,
        reading.memory_used_bytes,
        reading.memory_free_bytes,
        reading.temperature_celsius,
        reading.power_watts,
        reading.sm_clock_mhz,
        reading.ecc_corrected_total,
        reading.ecc_uncorrected_total,
    ):
        assert value is None
    assert reading.processes == ()
    assert reading.problems == ()  # "not supported" is not a problem


def test_other_errors_are_none_with_a_problem_line() -> None:
    fake = FakeAmdSmi([mi300x(0)])
    fake.fail("amdsmi_get_power_info", AMDSMI_STATUS_RETRY)
    (reading,) = _probe(fake).sample()
    assert reading.health is Health.HEALTHY
    assert reading.power_watts is None
    assert reading.gpu_utilization_percent == 40.0
    assert len(reading.problems) == 1 and "power" in reading.problems[0]


def test_gpu_that_disappears_is_unhealthy_others_fine_and_reenumerated() -> None:
    fake = _eight_mi300x()
    probe = _probe(fake)
    assert len(probe.inventory().gpus) == 8
    assert probe.enumerations == 1
    lost = fake.order[3]

    fake.remove(lost)
    readings = {r.uuid: r for r in probe.sample()}
    assert len(readings) == 8
    assert readings[lost].health is Health.UNHEALTHY
    assert any("31" in p for p in readings[lost].problems)  # amdsmi "not found"
    assert all(r.health is Health.HEALTHY for u, r in readings.items() if u != lost)

    # The next inventory shuts amdsmi down, initialises it again and lists 7.
    inventory = probe.inventory()
    assert probe.enumerations == 2
    assert fake.init_count == 2
    assert lost not in {g.uuid for g in inventory.gpus}
    assert len(inventory.gpus) == 7
    assert len(inventory.links) == 7 * 6 // 2
    readings = {r.uuid: r for r in probe.sample()}
    assert len(readings) == 8
    assert readings[lost].health is Health.UNHEALTHY
    assert "no longer listed" in readings[lost].problems[0]
    assert all(r.health is Health.HEALTHY for u, r in readings.items() if u != lost)

    # While it is missing every inventory looks again; once back, it is healthy.
    fake.restore(lost)
    inventory = probe.inventory()
    assert probe.enumerations == 3
    assert len(inventory.gpus) == 8
    assert all(r.health is Health.HEALTHY for r in probe.sample())
    probe.inventory()
    assert probe.enumerations == 3  # nothing stale any more


def test_uncorrectable_ecc_is_unhealthy() -> None:
    fake = FakeAmdSmi([mi300x(0, ecc_uncorrectable=2, ecc_correctable=17), mi300x(1)])
    first, second = _probe(fake).sample()
    assert first.health is Health.UNHEALTHY
    assert first.ecc_uncorrected_total == 2
    assert first.ecc_corrected_total == 17
    assert any("uncorrectable" in p for p in first.problems)
    assert second.health is Health.HEALTHY


def test_driver_not_loaded_is_a_probe_error() -> None:
    fake = FakeAmdSmi([mi300x(0)], init_status=AMDSMI_STATUS_DRIVER_NOT_LOADED)
    with pytest.raises(ProbeError, match="amdgpu kernel driver is not loaded"):
        _probe(fake)


def test_missing_package_is_a_probe_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str, package: str | None = None) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr("agent.probe.amdsmi.importlib.import_module", absent)
    with pytest.raises(ProbeError, match="amdsmi Python package"):
        AmdSmiProbe()


@pytest.mark.parametrize(
    "error", [OSError("libamd_smi.so: cannot open"), KeyError("libamd_smi.so")]
)
def test_missing_rocm_library_is_a_probe_error(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def broken(name: str, package: str | None = None) -> Any:
        raise error

    monkeypatch.setattr("agent.probe.amdsmi.importlib.import_module", broken)
    with pytest.raises(ProbeError, match=r"libamd_smi\.so"):
        AmdSmiProbe()


def test_close_shuts_amdsmi_down() -> None:
    fake = FakeAmdSmi([mi300x(0)])
    probe = _probe(fake)
    probe.inventory()
    probe.close()
    assert not fake.initialised
    assert probe.name == "amdsmi"
