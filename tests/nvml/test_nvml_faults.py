"""Every NVML entry point the probe calls fails in turn, with each class of NVML
error (FAKE library, tests/fakes/nvml/fake_nvml.c): the agent survives all of
them, reports each one it met, and reads cleanly again once it is gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.nvml_profiles import write_config
from tests.nvml.conftest import ROOT

FAKE = ROOT / "tests/fakes/nvml/fake_nvml.c"
ABSENT = 3  # NOT_SUPPORTED: the value does not exist here
TIMEOUT = 10
# NO_PERMISSION, TIMEOUT, NO_DATA: one value unreadable; GPU_IS_LOST, RESET_REQUIRED,
# UNKNOWN, DRIVER_NOT_LOADED: the GPU (or the driver) gone.
ERRORS = (ABSENT, 4, TIMEOUT, 21, 15, 16, 999, 9)
# Failures with nothing to report: nvmlShutdown is called only to close or to start
# again (its failure changes nothing), and a TIMEOUT is how the event wait says
# "no event".
NOTHING_TO_REPORT = {("nvmlShutdown", code) for code in ERRORS} | {
    ("nvmlEventSetWait_v2", TIMEOUT),
    ("nvmlEventSetWait_v2", ABSENT),
}
# The Xid event wait runs in its own thread: a probe sampled at once may not have met
# its failure yet (the running agent below waits for it).
ASYNCHRONOUS = {"nvmlEventSetWait_v2"}
H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "cc": "9.0", "nvlinks": 18}


def entry_points() -> list[str]:
    return re.findall(r"^int (nvml\w+)\(", FAKE.read_text(), flags=re.MULTILINE)


@pytest.fixture(scope="module")
def sweep(fake_nvml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = write_config(tmp_path_factory.mktemp("sweep") / "h100.conf", 4, H100)
    cases = [[entry, code] for entry in entry_points() for code in ERRORS]
    env = {
        **os.environ,
        "FLARE_FAKE_NVML_CONFIG": str(config),
        "LD_LIBRARY_PATH": str(fake_nvml_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.nvml.fault_sweep", json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def must_report(case: dict[str, Any]) -> bool:
    """A failure the agent met (the call was made while it was on) that means something."""
    fault = (case["entry_point"], case["code"])
    return case["hit"] and case["code"] != ABSENT and fault not in NOTHING_TO_REPORT


def visible(seen: dict[str, Any]) -> bool:
    return bool(
        seen.get("probe_error")
        or seen["inventory_problems"]
        or seen["problems"]
        or seen["unhealthy"]
    )


def test_the_sweep_covers_every_entry_point_with_every_error(sweep: dict[str, Any]) -> None:
    assert len(entry_points()) >= 30
    assert (
        len(sweep["start"]) == len(sweep["running"]["cases"]) == len(entry_points()) * len(ERRORS)
    )


def test_a_probe_started_on_a_failing_library_reports_what_it_met(sweep: dict[str, Any]) -> None:
    unreported = [
        (case["entry_point"], case["code"])
        for case in sweep["start"]
        if must_report(case) and case["entry_point"] not in ASYNCHRONOUS and not visible(case)
    ]
    assert unreported == []
    refused = {c["entry_point"] for c in sweep["start"] if c.get("probe_error")}
    # Only a library that cannot start stops the agent from starting (it exits, saying why).
    assert refused <= {"nvmlInit_v2", "nvmlInitWithFlags"}


def test_a_running_agent_survives_reports_and_recovers(sweep: dict[str, Any]) -> None:
    running = sweep["running"]
    assert running["gpus"] == 4
    assert running["probe_failures"] == 0
    unreported = [
        (c["entry_point"], c["code"]) for c in running["cases"] if must_report(c) and not visible(c)
    ]
    assert unreported == []
    # No GPU silently disappears from the readings while the library fails.
    assert [c for c in running["cases"] if c["readings"] < running["gpus"]] == []
    stuck = [
        (c["entry_point"], c["code"])
        for c in running["cases"]
        if c["recovered_after_rounds"] is None
    ]
    assert stuck == []
