"""CreateIntent throughput and latency through gRPC, with several concurrent
clients in separate processes, against a real control plane (subprocess,
embedded default: SQLite + local federation, the engine placing every intent
as it arrives).

In the same run, as a baseline: the gRPC health Check RPC (no auth, no store),
the floor that Python gRPC itself sets on this machine. CreateIntent runs
twice: with SQLite synchronous=FULL (each acknowledged intent survives power
loss; the default) and NORMAL (survives a process crash).

Usage: python -m benchmarks.create_intents [--seconds 10] [--processes 2] [--concurrency 16]
Prints a table and writes benchmarks/results/create_intents.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.common import cpu_seconds, write_results
from flare.v1 import intent_pb2, intent_service_pb2, intent_service_pb2_grpc
from tests.controlplane_process import running


def an_intent(index: int) -> intent_pb2.Intent:
    intent = intent_pb2.Intent(objective=intent_pb2.OBJECTIVE_COST_MINIMIZATION)
    intent.workload.type = intent_pb2.WORKLOAD_TYPE_JOB
    intent.workload.name = f"bench-{index % 1000}"
    intent.workload.image = "pytorch/pytorch:2.4.0"
    intent.workload.resources.gpu.model = "nvidia-a100" if index % 2 else "any"
    intent.workload.resources.gpu.count = 1 + index % 2
    intent.constraints.location = "EU" if index % 3 else ""
    return intent


async def _drive(  # noqa: PLR0917 - the pool passes one tuple
    address: str, token: str, kind: str, seconds: float, concurrency: int, worker: int
) -> list[float]:
    latencies: list[float] = []
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        intents = intent_service_pb2_grpc.IntentServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.perf_counter() + seconds

        async def loop(task: int) -> None:
            index = 0
            while time.perf_counter() < deadline:
                index += 1
                started = time.perf_counter()
                if kind == "health":
                    await health.Check(health_pb2.HealthCheckRequest())
                else:
                    request = intent_service_pb2.CreateIntentRequest(
                        intent=an_intent(index), request_id=f"w{worker}-t{task}-{index}"
                    )
                    await intents.CreateIntent(request, metadata=metadata)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(loop(t) for t in range(concurrency)))
    return latencies


def _worker(args: tuple[str, str, str, float, int, int]) -> list[float]:
    return asyncio.run(_drive(*args))


def run_load(  # noqa: PLR0917 - the load's knobs
    address: str, token: str, kind: str, seconds: float, processes: int, concurrency: int
) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        started = time.perf_counter()
        parts = pool.map(
            _worker, [(address, token, kind, seconds, concurrency, w) for w in range(processes)]
        )
        elapsed = time.perf_counter() - started
    latencies = sorted(x for part in parts for x in part)
    count = len(latencies)
    return {
        "requests": count,
        "throughput_per_s": round(count / seconds, 1),
        "p50_ms": round(latencies[count // 2] * 1000, 2),
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "wall_s": round(elapsed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="in-flight requests per process")
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    for label, kind, sync in (
        ("baseline: health Check", "health", "NORMAL"),
        ("CreateIntent, sync=FULL", "create", "FULL"),
        ("CreateIntent, sync=NORMAL", "create", "NORMAL"),
    ):
        with (
            tempfile.TemporaryDirectory() as data_dir,
            running(Path(data_dir), "--sync", sync, "--log-level", "warning") as server,
        ):
            before = cpu_seconds(server.pid)
            rows[label] = run_load(
                server.address,
                server.admin_token,
                kind,
                args.seconds,
                args.processes,
                args.concurrency,
            )
            rows[label]["server_cpu_cores"] = round(
                (cpu_seconds(server.pid) - before) / args.seconds, 2
            )
    print(
        f"\nCreateIntent through gRPC: {args.processes} client processes"
        f" x {args.concurrency} in flight, "
        f"{args.seconds:.0f} s each, {os.cpu_count()} cores\n"
    )
    header = f"{'case':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'server CPU':>12}"
    print(header)
    print("-" * len(header))
    for label, row in rows.items():
        print(
            f"{label:<28}{row['throughput_per_s']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['server_cpu_cores']:>12}"
        )
    write_results(
        "create_intents",
        {
            "settings": vars(args),
            "target": {"throughput_per_s": 1000, "p99_ms": 50},
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
