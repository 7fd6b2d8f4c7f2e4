"""Telemetry ingest under load: how many agents (8 GPUs each, one batch a
second) the control plane sustains on this machine, with the load generator
(benchmarks/telemetry_load.py, its own process) on the same cores.

Three curves: agents streaming straight to the control plane (`flare`), the same
agents through relays of --relay-size agents each (`relayed`: the RelayTelemetry
stream of flare-relay, one per provider cluster, simulated by the generator as
the relays would run on the providers' machines), and the naive baseline.

A step with N agents runs for --seconds after every stream is open. It is
sustained when every message sent was acknowledged (the journal made it
durable), the control plane saw no gap, the generator kept its schedule
(p99 lag at most 1 s: past that the machine is saturated), and p99 agent→watcher
latency (probe agents stamp their samples, a
WatchUtilization watcher reads them) is at most 1 s. The naive baseline
(benchmarks/telemetry_naive.py: a thread per stream, an fsync per message) runs
in the same run, with the same rules minus the watcher. Prints the curve and
writes benchmarks/results/telemetry.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import cpu_seconds, rss_mb, write_results
from tests.controlplane_process import ControlPlaneProcess, free_port

TARGET = {"agents": 10_000, "gpu_samples_per_s": 80_000, "p99_latency_s": 1.0}
GPUS = 8


def server_figures(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    wanted = {"flare_telemetry_missing", "flare_telemetry_duplicates"}
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name in wanted
    }


def generate(
    address: str, token: str, agents: int, seconds: float, probes: int, *, relay_size: int
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.telemetry_load",
            "--target", address, "--token", token,
            "--agents", str(agents), "--seconds", str(seconds), "--probes", str(probes),
            "--relay-size", str(relay_size),
        ],
        capture_output=True, text=True, check=False, timeout=seconds + 300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measured(
    pid: int,
    address: str,
    token: str,
    agents: int,
    seconds: float,
    *,
    probes: int,
    relay_size: int = 0,
) -> dict[str, Any]:
    """One load step against the server `pid`, with its CPU share and memory."""
    before = cpu_seconds(pid)
    started = time.monotonic()
    load = generate(address, token, agents, seconds, probes, relay_size=relay_size)
    wall = time.monotonic() - started
    return {
        **load,
        "server_cpu_cores": round((cpu_seconds(pid) - before) / wall, 2),
        "server_rss_mb": rss_mb(pid),
    }


def step_flare(agents: int, seconds: float, relay_size: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        metrics_port = free_port()
        server = ControlPlaneProcess(
            Path(data_dir),
            free_port(),
            ("--log-level", "warning", "--metrics-listen", f"127.0.0.1:{metrics_port}"),
        )
        server.start()
        try:
            row = measured(
                server.pid,
                server.address,
                server.admin_token,
                agents,
                seconds,
                probes=10,
                relay_size=relay_size,
            )
            row.update(server_figures(metrics_port))
        finally:
            server.stop()
    return row


def step_naive(agents: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable, "-m", "benchmarks.telemetry_naive",
                "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
                "--threads", str(agents + 8),
            ],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "serving"
            row = measured(server.pid, f"127.0.0.1:{port}", "none", agents, seconds, probes=0)
        finally:
            server.terminate()
            server.wait(30)
    return row


def sustained(row: dict[str, Any]) -> bool:
    latency = row.get("latency_p99_s")
    return (
        row["unacked"] == 0
        and not row["stream_failures"]
        and row.get("flare_telemetry_missing", 0) == 0
        and row["messages_sent"] == row["messages_expected"]
        and (row["schedule_lag_p99_s"] or 0) <= TARGET["p99_latency_s"]
        and (latency is None or latency <= TARGET["p99_latency_s"])
    )


def curve(name: str, run: Any, steps: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    for agents in steps:
        row = run(agents, seconds)
        row["sustained"] = sustained(row)
        rows.append(row)
        print(
            f"{name:<8}{agents:>7}{agents * GPUS:>10}{row['messages_sent'] / seconds:>10.0f}"
            f"{row['unacked']:>9}{row['schedule_lag_p99_s']:>9}{row.get('latency_p99_s') or '-':>9}"
            f"{row['server_cpu_cores']:>8}{row['server_rss_mb']:>9}"
            f"{row['generator_cpu_s'] / seconds:>8.2f}  {'yes' if row['sustained'] else 'NO'}",
            flush=True,
        )
        if not row["sustained"]:
            break
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--steps", default="250,500,1000,2000,3000,4000,6000,8000,10000")
    parser.add_argument("--naive-steps", default="250,500,1000,2000,3000,4000,6000")
    parser.add_argument("--relayed-steps", default="2000,4000,6000,8000,10000,12000,16000,20000")
    parser.add_argument("--relay-size", type=int, default=250, help="agents per relay")
    args = parser.parse_args()
    header = (
        f"{'server':<8}{'agents':>7}{'GPUs':>10}{'msgs/s':>10}{'unacked':>9}{'lag p99':>9}"
        f"{'p99 s':>9}"
        f"{'CPU':>8}{'RSS MB':>9}{'gen CPU':>8}  sustained"
    )
    print(header)
    print("-" * len(header))
    flare = curve("flare", step_flare, [int(n) for n in args.steps.split(",")], args.seconds)
    relayed = curve(
        "relayed",
        lambda agents, seconds: step_flare(agents, seconds, args.relay_size),
        [int(n) for n in args.relayed_steps.split(",")],
        args.seconds,
    )
    naive = curve("naive", step_naive, [int(n) for n in args.naive_steps.split(",")], args.seconds)
    best = max((r["agents"] for r in flare if r["sustained"]), default=0)
    best_relayed = max((r["agents"] for r in relayed if r["sustained"]), default=0)
    best_naive = max((r["agents"] for r in naive if r["sustained"]), default=0)
    print(f"\nlargest sustained: FLARE {best} agents ({best * GPUS} GPU samples/s), ", end="")
    print(f"through relays of {args.relay_size} {best_relayed} ({best_relayed * GPUS}), ", end="")
    print(f"naive {best_naive} agents")
    write_results(
        "telemetry",
        {
            "settings": vars(args),
            "target": TARGET,
            "largest_sustained": {"flare": best, "relayed": best_relayed, "naive": best_naive},
            "flare": flare,
            "relayed": relayed,
            "naive": naive,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
