"""`flare-agent --once` with the sim backend, as a user runs it: no cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def once(*args: str) -> dict[str, Any]:
    result = agent("--backend", "sim", "--once", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_once_prints_inventory_readings_annotations_and_flavor() -> None:
    report = once(
        "--sim-model",
        "a100",
        "--sim-count",
        "4",
        "--hourly-rate",
        "1.35 EUR",
        "--provider",
        "nordic",
        "--region",
        "eu-north-1",
        "--node-name",
        "gpu-7",
    )
    assert report["node"] == "gpu-7"
    assert [g["model"] for g in report["inventory"]["gpus"]] == ["nvidia-a100"] * 4
    assert len(report["readings"]) == 4 and report["readings"][0]["health"] == "healthy"
    notes = report["annotations"]
    assert notes["gpu.fluidos.eu/count"] == "4"
    assert notes["gpu.fluidos.eu/model"] == "nvidia-a100"
    assert notes["gpu.fluidos.eu/memory-per-gpu"] == "80Gi"
    assert notes["cost.fluidos.eu/hourly-rate"] == "1.35"
    assert notes["location.fluidos.eu/region"] == "eu-north-1"
    assert report["labels"] == {
        "node-role.fluidos.eu/resources": "true",
        "node.fluidos.eu/gpu": "true",
    }
    assert report["problems"] == []
    assert report["flavor"]["spec"]["price"] == {
        "amount": "5.40",
        "currency": "EUR",
        "period": "hourly",
    }


def test_bad_input_says_what_is_wrong() -> None:
    bad_rate = agent("--backend", "sim", "--once", "--hourly-rate", "cheap")
    assert bad_rate.returncode == 1 and "'cheap' is not an amount" in bad_rate.stderr
    unknown = agent("--backend", "sim", "--once", "--sim-model", "nvidia-a1000")
    assert unknown.returncode == 1 and "unknown GPU model" in unknown.stderr
    idle = agent("--backend", "sim", "--kubernetes", "off")
    assert idle.returncode == 1 and "nothing to do" in idle.stderr
    tokenless = agent("--backend", "sim", "--control-plane", "127.0.0.1:1", "--kubernetes", "off")
    assert tokenless.returncode == 1 and "needs a token" in tokenless.stderr
    bad_country = agent("--backend", "sim", "--once", "--country", "France")
    assert bad_country.returncode == 1 and "ISO-3166" in bad_country.stderr


def test_the_health_probe_reads_the_heartbeat_age(tmp_path: Path) -> None:
    from agent.runner import alive, beat

    heartbeat = tmp_path / "heartbeat"
    assert not alive(heartbeat, 60)  # never beaten
    beat(heartbeat)
    assert alive(heartbeat, 60)
    assert not alive(heartbeat, 60, now=heartbeat.stat().st_mtime + 61)
    ok = agent("--health", "--heartbeat-file", str(heartbeat))
    stale = agent("--health", "--heartbeat-file", str(heartbeat), "--health-max-age", "-1")
    assert (ok.returncode, stale.returncode) == (0, 1)
