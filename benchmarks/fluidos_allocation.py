"""CreateIntent → RUNNING through FLUIDOS on real API servers: a consumer and
three provider clusters of the test harness, the FAKE FLUIDOS and Liqo
controllers, and a control plane in `fluidos` mode. Each intent (the seeds'
training and inference intents, alternately) is created, followed to RUNNING
and cancelled, one at a time.

Reported per intent: the total time from CreateIntent to RUNNING (from the
intent's history), the time the control plane waited on others (the
controllers' reservation, allocation and offloading, and the pods starting on
the virtual node: the fake polls every 100 ms and kwok starts pods on its own
schedule), and the difference — the time spent in FLARE itself (planning, the
store, and its own requests to the API server). Target: ≤ 1 s in FLARE.
Writes benchmarks/results/fluidos_allocation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_results
from controlplane.app import ControlPlane, Settings
from controlplane.clock import utc_now
from controlplane.engine import IntentEngine
from controlplane.intents import lifecycle
from flare.v1 import intent_pb2
from tests.federation.world import OFFERINGS, fake_fluidos
from tests.harness.federation import Federation
from tests.harness.tools import find_tools
from tests.intents import SEED_INFERENCE, SEED_TRAINING, intent_from

TARGET_SECONDS = 1.0


async def follow(
    plane: ControlPlane, name: str, state: int, timeout: float = 120
) -> intent_pb2.Intent:
    deadline = time.monotonic() + timeout
    while True:
        intent = await plane.store.get(name)
        assert intent is not None
        if intent.state == state:
            return intent
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} is {lifecycle.name(intent.state)}: {intent.state_message}")
        await asyncio.sleep(0.01)


async def run(args: argparse.Namespace, federation: Federation) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as data_dir:
        plane = ControlPlane(
            Settings(
                listen="127.0.0.1:0",
                http_listen="",
                metrics_listen="",
                data_dir=Path(data_dir),
                synchronous="NORMAL",
                kubeconfig=federation.consumer.kubeconfig,
            )
        )
        await plane.start()
        try:
            assert plane.fluidos is not None and isinstance(plane.engine, IntentEngine)
            while {o.provider for o in (await plane.federation.offers()).offers} < set(OFFERINGS):
                await asyncio.sleep(0.1)
            rows = []
            for number in range(args.intents):
                document = SEED_TRAINING if number % 2 == 0 else SEED_INFERENCE
                intent = intent_from(document)
                intent.name = f"tenants/bench/intents/run-{number}"
                stored, _ = await plane.store.create(
                    lifecycle.created(intent, now=utc_now()), tenant="bench", request_id=""
                )
                plane.engine.kick(stored.name)
                running = await follow(plane, stored.name, lifecycle.RUNNING)
                created = running.history[0].time.ToDatetime()
                ran = running.history[-1].time.ToDatetime()
                total = (ran - created).total_seconds()
                waited = plane.fluidos.waited.get(stored.name, 0.0)
                rows.append(
                    {
                        "intent": document["intent"]["workload"]["name"],
                        "provider": running.placement.provider,
                        "total_s": round(total, 3),
                        "waited_on_others_s": round(waited, 3),
                        "in_flare_s": round(total - waited, 3),
                    }
                )
                print(
                    f"{number:>3} {rows[-1]['intent']:<14} {rows[-1]['provider']:<11}"
                    f"{total:>9.3f}{waited:>9.3f}{total - waited:>9.3f}",
                    flush=True,
                )
                cancelled = await plane.store.update(
                    stored.name,
                    lambda i: lifecycle.transition(
                        i, lifecycle.CANCELLING, reason="Benchmark", message="next", now=utc_now()
                    ),
                )
                plane.engine.kick(cancelled.name)
                await follow(plane, stored.name, lifecycle.CANCELLED)
            return rows
        finally:
            await plane.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=10)
    args = parser.parse_args()
    tools = find_tools()
    print(f"{'#':>3} {'intent':<14} {'provider':<11}{'total s':>9}{'waited':>9}{'FLARE':>9}")
    with Federation(tools, providers=len(OFFERINGS)) as federation:
        apis: dict[str, Any] = {}

        def api(cluster: Any) -> Any:
            if cluster.name not in apis:
                apis[cluster.name] = cluster.api_client()
            return apis[cluster.name]

        with fake_fluidos(federation, api):
            rows = asyncio.run(run(args, federation))
    own = [r["in_flare_s"] for r in rows]
    total = [r["total_s"] for r in rows]
    summary = {
        "in_flare_median_s": round(statistics.median(own), 3),
        "in_flare_max_s": max(own),
        "total_median_s": round(statistics.median(total), 3),
    }
    print(
        f"\nin FLARE: median {summary['in_flare_median_s']} s, max {summary['in_flare_max_s']} s "
        f"(target ≤ {TARGET_SECONDS} s); total median {summary['total_median_s']} s"
    )
    write_results(
        "fluidos_allocation",
        {"settings": vars(args), "target": {"in_flare_s": TARGET_SECONDS}, **summary, "runs": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
