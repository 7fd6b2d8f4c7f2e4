"""What every benchmark script shares: the process CPU clock and the results file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process now and at its peak, in MB (Linux /proc)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(found["VmRSS"], 1), "peak_rss_mb": round(found["VmHWM"], 1)}


def rss_mb(pid: int) -> float:
    return memory_mb(pid)["rss_mb"]


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Writes benchmarks/results/<name>.json with the machine it ran on; returns the path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return path
