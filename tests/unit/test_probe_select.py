from __future__ import annotations

import pytest

from agent.probe.base import ProbeError
from agent.probe.select import open_probe
from agent.probe.sim import SimProbe


def test_sim_is_chosen_by_name() -> None:
    probe = open_probe("sim", sim_model="l4", sim_count=2)
    assert isinstance(probe, SimProbe) and len(probe.inventory().gpus) == 2


def test_auto_without_gpu_libraries_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent")
    with pytest.raises(ProbeError) as caught:
        open_probe("auto")
    message = str(caught.value)
    assert "nvml:" in message and "amdsmi:" in message and "--backend sim" in message


def test_unknown_backend() -> None:
    with pytest.raises(ProbeError, match="unknown backend"):
        open_probe("cuda")
