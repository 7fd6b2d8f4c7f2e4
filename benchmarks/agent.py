"""Agent footprint: CPU (share of one core) and memory of flare-agent sampling
8 GPUs at 1 Hz and streaming them to a control plane.

Cases, each its own agent process streaming to one control plane:
- baseline: the Python interpreter with the agent's modules imported, idle
  (the floor that any Python agent pays);
- sim: the sim backend, 8 simulated H100s;
- nvml: the NVML backend through the real nvidia-ml-py bindings against the
  FAKE NVML library (tests/fakes/nvml) with the H100 profile, 8 GPUs.

CPU is measured per window (utime + stime from /proc) and the median window is
reported; memory is the resident set at the end and its peak (VmHWM). Target:
at most 1% of a core and 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_seconds, memory_mb, write_results
from tests.controlplane_process import running
from tests.fakes.nvml_profiles import H100, build_fake_nvml, write_config

TARGET = {"cpu_percent_of_core": 1.0, "rss_mb": 64}
IDLE = (
    "import signal, agent.main, agent.runner, agent.stream, agent.probe.nvml; "
    "signal.sigwait({signal.SIGTERM})"
)


def measure(
    argv: list[str], env: dict[str, str], seconds: float, window: float, warmup: float
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            time.sleep(warmup)
            shares = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                before, start = cpu_seconds(process.pid), time.monotonic()
                time.sleep(window)
                used = cpu_seconds(process.pid) - before
                shares.append(100 * used / (time.monotonic() - start))
            memory = memory_mb(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log.seek(0)
        report = _report(log.read())
    return {
        "cpu_percent_of_core_median": round(statistics.median(shares), 2),
        "cpu_percent_of_core_max": round(max(shares), 2),
        "windows": len(shares),
        **memory,
        "messages_acked": report.get("acked"),
        "unacked_at_stop": report.get("unacked"),
    }


def _report(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "agent stopped":
            report: dict[str, Any] = entry["report"]
            return report
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per case")
    parser.add_argument("--window", type=float, default=10.0, help="CPU measurement window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        running(Path(scratch) / "cp", "--sync", "NORMAL", "--log-level", "warning") as server,
    ):
        token = Path(scratch) / "token"
        token.write_text(server.admin_token)
        nvml_config = write_config(Path(scratch) / "h100.conf", args.gpus, H100)
        agent = [sys.executable, "-m", "agent.main", "--control-plane", server.address]
        agent += ["--token-file", str(token), "--kubernetes", "off", "--interval", "1"]
        base_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        nvml_env = {
            **base_env,
            "FLARE_FAKE_NVML_CONFIG": str(nvml_config),
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(build_fake_nvml()), os.environ.get("LD_LIBRARY_PATH", "")) if p
            ),
        }
        cases = {
            "baseline: idle interpreter": ([sys.executable, "-c", IDLE], base_env),
            f"sim, {args.gpus} GPUs": (
                [*agent, "--backend", "sim", "--sim-count", str(args.gpus), "--node-name", "sim"],
                base_env,
            ),
            f"nvml (fake H100), {args.gpus} GPUs": (
                [*agent, "--backend", "nvml", "--node-name", "nvml"],
                nvml_env,
            ),
        }
        for label, (argv, env) in cases.items():
            rows[label] = measure(argv, env, args.seconds, args.window, args.warmup)
    print(
        f"\nflare-agent at 1 Hz, streaming to a control plane: median of "
        f"{args.window:.0f} s CPU windows over {args.seconds:.0f} s, {os.cpu_count()} cores\n"
    )
    header = f"{'case':<30}{'CPU % core':>12}{'max':>8}{'RSS MB':>9}{'peak MB':>9}{'acked':>8}"
    print(header)
    print("-" * len(header))
    for label, row in rows.items():
        print(
            f"{label:<30}{row['cpu_percent_of_core_median']:>12}"
            f"{row['cpu_percent_of_core_max']:>8}{row['rss_mb']:>9}{row['peak_rss_mb']:>9}"
            f"{row['messages_acked'] if row['messages_acked'] is not None else '-':>8}"
        )
    write_results(
        "agent",
        {
            "settings": vars(args),
            "target": TARGET,
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
