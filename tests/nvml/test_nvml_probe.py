"""NvmlProbe driven through the real nvidia-ml-py bindings against the FAKE
NVML library (tests/fakes/nvml), one fresh process per scenario."""

from __future__ import annotations

import ctypes.util
from pathlib import Path
from typing import Any

import pytest

from agent.probe.base import FATAL_XIDS, WATCHED_XIDS
from tests.fakes.nvml_profiles import A100, H100, write_config
from tests.nvml.conftest import RunProbe


def _by_uuid(readings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["uuid"]: r for r in readings}


def _uuids(inventory: dict[str, Any]) -> list[str]:
    return [g["uuid"] for g in inventory["gpus"]]


def test_h100_node_inventory_and_sample(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(
        tmp_path / "h100.conf",
        8,
        H100,
        gpu1_processes="4242:1024,4243:512",
        gpu4_numa=1,
        gpu5_numa=1,
        gpu6_numa=1,
        gpu7_numa=1,
    )
    (step_inventory, step_sample) = run_probe(config, "inventory", "sample")
    inventory = step_inventory["inventory"]
    assert step_inventory["enumerations"] == 1
    assert inventory["backend"] == "nvml"
    assert inventory["driver_version"] == "550.54.15"
    assert inventory["runtime_version"] == "12.4"
    assert len(inventory["gpus"]) == 8
    assert len(set(_uuids(inventory))) == 8
    for index, gpu in enumerate(inventory["gpus"]):
        assert gpu["index"] == index
        assert gpu["raw_name"] == "NVIDIA H100 80GB HBM3"
        assert gpu["model"] == "nvidia-h100"
        assert gpu["vendor"] == "nvidia"
        assert gpu["architecture"] == "hopper"
        assert gpu["memory_bytes"] == 81559 * 2**20
        assert gpu["compute_capability"] == "9.0"
        assert gpu["pci_bus_id"].endswith(":00.0")
        assert gpu["numa_node"] == (0 if index < 4 else 1)
        assert gpu["mig_enabled"] is False
        assert gpu["mig_instances"] == []
        assert gpu["power_limit_watts"] == 700.0
    # All 18 links of every GPU go to NVSwitches: every pair is NVLink-connected.
    links = inventory["links"]
    assert len(links) == 8 * 7 // 2
    assert {(link["link_type"], link["link_count"]) for link in links} == {("nvlink", 18)}

    readings = step_sample["sample"]
    assert len(readings) == 8
    for reading in readings:
        assert reading["health"] == "healthy"
        assert reading["problems"] == []
        assert reading["gpu_utilization_percent"] == 40.0
        assert reading["memory_utilization_percent"] == 20.0
        assert reading["memory_used_bytes"] == 1024 * 2**20
        assert reading["memory_free_bytes"] == (81559 - 1024) * 2**20
        assert reading["temperature_celsius"] == 45.0
        assert reading["power_watts"] == 350.0
        assert reading["sm_clock_mhz"] == 1980
        assert reading["throttle_reasons"] == 0
        assert reading["ecc_corrected_total"] == 0
        assert reading["ecc_uncorrected_total"] == 0
        assert reading["xid_counts"] == {str(x): 0 for x in WATCHED_XIDS}
    gpu1 = _by_uuid(readings)[inventory["gpus"][1]["uuid"]]
    assert gpu1["processes"] == [
        {"pid": 4242, "memory_used_bytes": 1024 * 2**20},
        {"pid": 4243, "memory_used_bytes": 512 * 2**20},
    ]


def test_pcie_topology_without_nvlink(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(tmp_path / "pcie.conf", 3, A100, gpu2_numa=1)
    ((step,),) = [run_probe(config, "inventory")]
    links = {(ln["gpu_a"], ln["gpu_b"]): ln for ln in step["inventory"]["links"]}
    assert links[(0, 1)]["link_type"] == "node"
    assert links[(0, 2)]["link_type"] == "system"
    assert all(ln["link_count"] == 0 for ln in links.values())


def test_not_supported_is_absent_never_zero(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(
        tmp_path / "old.conf",
        1,
        {**A100, "ecc": 0, "numa": -1, "not_supported": "power,temperature,processes"},
    )
    step_inventory, step_sample = run_probe(config, "inventory", "sample")
    assert step_inventory["inventory"]["gpus"][0]["numa_node"] is None
    (reading,) = step_sample["sample"]
    assert reading["health"] == "healthy"
    assert reading["problems"] == []
    for key in ("power_watts", "temperature_celsius", "ecc_corrected_total"):
        assert reading[key] is None, key
    assert reading["ecc_uncorrected_total"] is None
    assert reading["processes"] == []
    assert reading["gpu_utilization_percent"] == 70.0


def test_a100_with_mig(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(
        tmp_path / "mig.conf",
        2,
        A100,
        gpu0_mig=1,
        gpu0_mig_instances="3g.40gb:40192,2g.20gb:19968,1g.10gb:9728",
    )
    step_inventory, step_sample = run_probe(config, "inventory", "sample")
    parent, plain = step_inventory["inventory"]["gpus"]
    assert parent["model"] == "nvidia-a100"
    assert parent["architecture"] == "ampere"
    assert parent["compute_capability"] == "8.0"
    assert parent["mig_enabled"] is True
    assert [(m["profile"], m["memory_bytes"]) for m in parent["mig_instances"]] == [
        ("3g.40gb", 40192 * 2**20),
        ("2g.20gb", 19968 * 2**20),
        ("1g.10gb", 9728 * 2**20),
    ]
    assert all(m["uuid"].startswith("MIG-") for m in parent["mig_instances"])
    assert len({m["uuid"] for m in parent["mig_instances"]}) == 3
    assert plain["mig_enabled"] is False
    assert plain["mig_instances"] == []

    readings = _by_uuid(step_sample["sample"])
    on_parent = readings[parent["uuid"]]
    # NVML does not report utilisation for a MIG parent: absent, not 0.
    assert on_parent["gpu_utilization_percent"] is None
    assert on_parent["memory_utilization_percent"] is None
    assert on_parent["health"] == "healthy"
    assert on_parent["temperature_celsius"] == 50.0
    assert readings[plain["uuid"]]["gpu_utilization_percent"] == 70.0


def test_lost_gpu_is_unhealthy_and_the_next_inventory_re_enumerates(
    tmp_path: Path, run_probe: RunProbe
) -> None:
    # GPU 2 answers its first 60 calls (the inventory and a sample or two), then is lost.
    config = write_config(tmp_path / "lost.conf", 8, H100, gpu2_lost_after_calls=60)
    first, samples_step, second, after = run_probe(
        config, "inventory", "until-unhealthy:20", "inventory", "sample"
    )
    uuids = _uuids(first["inventory"])
    lost = uuids[2]
    samples = samples_step["samples"]
    assert all(r["health"] == "healthy" for r in samples[0])
    last = _by_uuid(samples[-1])
    assert len(samples) > 1
    assert last[lost]["health"] == "unhealthy"
    assert any("GPU is lost" in p for p in last[lost]["problems"])
    assert last[lost]["xid_counts"] == {str(x): 0 for x in WATCHED_XIDS}
    for uuid in uuids:
        if uuid != lost:
            assert last[uuid]["health"] == "healthy"
            assert last[uuid]["gpu_utilization_percent"] == 40.0

    # The next inventory re-initialises NVML and enumerates again without the lost GPU.
    assert second["enumerations"] == 2
    assert _uuids(second["inventory"]) == [u for u in uuids if u != lost]
    assert all((ln["gpu_a"], ln["gpu_b"]) != (2, 2) for ln in second["inventory"]["links"])
    assert all(2 not in (ln["gpu_a"], ln["gpu_b"]) for ln in second["inventory"]["links"])

    # The probe keeps going: still one reading per GPU, the lost one UNHEALTHY.
    readings = _by_uuid(after["sample"])
    assert set(readings) == set(uuids)
    assert readings[lost]["health"] == "unhealthy"
    assert any("GPU is lost" in p for p in readings[lost]["problems"])
    assert all(readings[u]["health"] == "healthy" for u in uuids if u != lost)


def test_gpu_fallen_off_the_bus(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(tmp_path / "bus.conf", 4, H100, gpu1_fallen_off_bus=1)
    first, sampled, second, after = run_probe(
        config, "inventory", "until-xid:5", "inventory", "sample"
    )
    uuids = [f"GPU-fa4e0000-0000-4000-8000-{i:012x}" for i in range(1, 5)]
    fallen = uuids[1]
    # Its identity is readable but its telemetry is not: not in the inventory.
    assert _uuids(first["inventory"]) == [u for u in uuids if u != fallen]
    readings = _by_uuid(sampled["sample"])
    assert set(readings) == set(uuids)
    reading = readings[fallen]
    assert reading["health"] == "unhealthy"
    assert any("Unknown Error" in p for p in reading["problems"])
    assert any("Xid 79" in p for p in reading["problems"])
    assert reading["xid_counts"]["79"] == 1
    assert reading["gpu_utilization_percent"] is None
    assert all(readings[u]["health"] == "healthy" for u in uuids if u != fallen)
    assert second["enumerations"] == 2
    assert fallen not in _uuids(second["inventory"])
    again = _by_uuid(after["sample"])
    assert again[fallen]["health"] == "unhealthy"
    assert again[fallen]["xid_counts"]["79"] == 1


def test_uncorrectable_ecc_is_counted(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(
        tmp_path / "ecc.conf", 2, H100, gpu0_ecc_uncorrectable=3, gpu0_ecc_corrected=17
    )
    step_inventory, step_sample = run_probe(config, "inventory", "sample")
    bad, good = _uuids(step_inventory["inventory"])
    readings = _by_uuid(step_sample["sample"])
    assert readings[bad]["ecc_uncorrected_total"] == 3
    assert readings[bad]["ecc_corrected_total"] == 17
    assert readings[bad]["health"] == "unhealthy"
    assert any("uncorrectable ECC" in p for p in readings[bad]["problems"])
    assert readings[good]["ecc_uncorrected_total"] == 0
    assert readings[good]["health"] == "healthy"


def test_thermal_slowdown_is_degraded(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(tmp_path / "hot.conf", 1, {**H100, "clocks_event_reasons": "0x40"})
    (step,) = run_probe(config, "sample")
    (reading,) = step["sample"]
    assert reading["throttle_reasons"] == 0x40
    assert reading["health"] == "degraded"


def test_xid_79_is_delivered_once(tmp_path: Path, run_probe: RunProbe) -> None:
    config = write_config(tmp_path / "xid.conf", 2, H100, gpu1_xid=79)
    first, later, reinventoried, last = run_probe(
        config, "until-xid:5", "until-unhealthy:3", "inventory", "sample"
    )
    uuids = [f"GPU-fa4e0000-0000-4000-8000-{i:012x}" for i in (1, 2)]
    readings = _by_uuid(first["sample"])
    expected = {str(x): 0 for x in WATCHED_XIDS}
    assert readings[uuids[0]]["xid_counts"] == expected
    assert readings[uuids[0]]["health"] == "healthy"
    assert readings[uuids[1]]["xid_counts"] == {**expected, "79": 1}
    assert 79 in FATAL_XIDS
    assert readings[uuids[1]]["health"] == "unhealthy"
    assert any("Xid 79" in p for p in readings[uuids[1]]["problems"])
    # Delivered once: later samples, and a re-registration, do not count it again.
    for readings_now in (*later["samples"], last["sample"]):
        assert _by_uuid(readings_now)[uuids[1]]["xid_counts"]["79"] == 1
    assert reinventoried["enumerations"] == 1  # nothing was lost: no re-enumeration


def test_missing_library_is_a_probe_error(tmp_path: Path, run_probe: RunProbe) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has a real NVML library on its default search path")
    config = write_config(tmp_path / "none.conf", 1, H100)
    result = run_probe(config, "inventory", library=False)
    assert "libnvidia-ml.so.1 not found" in result["probe_error"]


def test_missing_config_is_a_probe_error(tmp_path: Path, run_probe: RunProbe) -> None:
    result = run_probe(tmp_path / "absent.conf", "inventory")
    assert "driver is not loaded" in result["probe_error"]
