from __future__ import annotations

import pytest

from agent.probe.base import WATCHED_XIDS, Health, ProbeError
from agent.probe.sim import PATTERNS, Fault, SimProbe
from flare import gpus


def test_inventory_follows_the_specification_table() -> None:
    probe = SimProbe("H100", 8)
    inventory = probe.inventory()
    spec = gpus.BY_MODEL["nvidia-h100"]
    assert inventory.backend == "sim" and len(inventory.gpus) == 8
    assert {g.model for g in inventory.gpus} == {"nvidia-h100"}
    assert {g.memory_bytes for g in inventory.gpus} == {spec.memory_gib[0] * 2**30}
    assert len({g.uuid for g in inventory.gpus}) == 8
    assert len(inventory.links) == 8 * 7 // 2 and {link.link_type for link in inventory.links} == {
        "nvlink"
    }
    assert SimProbe("mi300x", 2).inventory().links[0].link_type == "xgmi"


def test_same_seed_same_readings_and_uuids() -> None:
    first, second = SimProbe("a100", 4, seed=3), SimProbe("a100", 4, seed=3)
    assert [g.uuid for g in first.inventory().gpus] == [g.uuid for g in second.inventory().gpus]
    for _ in range(3):
        a, b = first.sample(), second.sample()
        assert [r.gpu_utilization_percent for r in a] == [r.gpu_utilization_percent for r in b]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_stays_within_physical_bounds(pattern: str) -> None:
    probe = SimProbe("l4", 2, pattern=pattern)
    spec = gpus.BY_MODEL["nvidia-l4"]
    for _ in range(50):
        for reading in probe.sample():
            assert reading.gpu_utilization_percent is not None
            assert 0 <= reading.gpu_utilization_percent <= 100
            assert reading.power_watts is not None and 0 < reading.power_watts <= spec.tdp_watts
            assert reading.memory_used_bytes is not None and reading.memory_free_bytes is not None
            assert (
                reading.memory_used_bytes + reading.memory_free_bytes == spec.memory_gib[0] * 2**30
            )


def test_a_lost_gpu_leaves_the_inventory_and_reads_unhealthy() -> None:
    probe = SimProbe("h100", 4, faults=[Fault(2, "lost", at=1)])
    assert [r.health for r in probe.sample()] == [Health.HEALTHY] * 4
    after = probe.sample()
    assert after[2].health is Health.UNHEALTHY and after[2].gpu_utilization_percent is None
    assert after[2].problems == ("GPU is lost",)
    assert [g.index for g in probe.inventory().gpus] == [0, 1, 3]


def test_xids_are_counted_once_with_explicit_zeros() -> None:
    probe = SimProbe("h100", 2, faults=[Fault(1, "xid", at=1, xid=79)])
    first = probe.sample()
    assert dict(first[1].xid_counts) == dict.fromkeys(WATCHED_XIDS, 0)
    for _ in range(3):
        later = probe.sample()
    assert later[1].xid_counts[79] == 1 and later[1].health is Health.UNHEALTHY
    assert later[0].health is Health.HEALTHY and later[0].xid_counts[79] == 0


def test_uncorrectable_ecc_marks_the_gpu_unhealthy() -> None:
    probe = SimProbe("a100", 1, faults=[Fault(0, "ecc", at=0)])
    reading = probe.sample()[0]
    assert reading.health is Health.UNHEALTHY and reading.ecc_uncorrected_total == 1


def test_bad_settings_are_probe_errors() -> None:
    for kwargs in ({"model": "nvidia-a1000"}, {"pattern": "wobbly"}, {"count": 0}):
        with pytest.raises(ProbeError):
            SimProbe(**kwargs)
