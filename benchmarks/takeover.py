"""Leader takeover in cluster mode: two `flare-controlplane` processes keep their
state in FlareIntent objects of a real kube-apiserver (the test harness's, with
etcd); a client creates intents on the follower at a steady pace; the leader is
`kill -9`ed. Each round reports the time from the kill until the follower holds
the Lease (takeover) and until an intent created after the kill is RUNNING
(the engine drives again), then restarts the killed replica as the new follower.
Target: takeover ≤ 10 s. The embedded local federation places the intents, so
the figures are the control plane's own. Writes benchmarks/results/takeover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.common import write_results
from controlplane.cluster.admin import ADMIN_SECRET
from controlplane.intents import lifecycle
from flare.v1 import intent_service_pb2, intent_service_pb2_grpc
from tests.controlplane_process import ControlPlaneProcess
from tests.harness.cluster import Cluster, Options
from tests.harness.tools import find_tools
from tests.intents import gpu_job

NAMESPACE = "flare-system"
TARGET_SECONDS = 10.0


class Bench:
    def __init__(self, cluster: Cluster, root: Path, lease_seconds: float) -> None:
        from kubernetes import client

        self.cluster, self.root, self.lease_seconds = cluster, root, lease_seconds
        self.api = cluster.api_client()
        self.core: Any = client.CoreV1Api(self.api)
        self.leases: Any = client.CoordinationV1Api(self.api)
        self.started = 0

    def replica(self) -> tuple[str, ControlPlaneProcess]:
        self.started += 1
        identity = f"replica-{self.started}"
        process = ControlPlaneProcess(
            self.root / identity,
            flags=(
                "--store", "kubernetes",
                "--federation", "local",
                "--kubeconfig", str(self.cluster.kubeconfig),
                "--namespace", NAMESPACE,
                "--identity", identity,
                "--lease-duration", str(self.lease_seconds),
            ),
        )  # fmt: skip
        process.start()
        return identity, process

    def holder(self) -> str:
        try:
            lease = self.leases.read_namespaced_lease("flare-controlplane", NAMESPACE)
        except Exception:
            return ""
        return str(lease.spec.holder_identity or "")

    def token(self) -> str:
        secret = self.core.read_namespaced_secret(ADMIN_SECRET, NAMESPACE)
        return base64.b64decode(secret.data["token"]).decode().strip()


async def until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def round_(
    bench: Bench, leader: ControlPlaneProcess, follower: ControlPlaneProcess, number: int
) -> dict[str, float]:
    md = (("authorization", f"Bearer {bench.token()}"),)
    async with grpc.aio.insecure_channel(follower.address) as channel:
        stub = intent_service_pb2_grpc.IntentServiceStub(channel)
        follower_id = f"replica-{bench.started}"

        async def create(index: int) -> str:
            reply = await stub.CreateIntent(
                intent_service_pb2.CreateIntentRequest(
                    intent=gpu_job("bench"), request_id=f"round{number}-{index}"
                ),
                metadata=md,
            )
            return reply.intent.name

        async def running(name: str) -> bool:
            reply = await stub.GetIntent(
                intent_service_pb2.GetIntentRequest(name=name), metadata=md
            )
            return reply.intent.state == lifecycle.RUNNING

        before = await create(0)
        await until(lambda: running(before))  # the leader drives
        leader.kill()
        killed = time.monotonic()
        after = await create(1)

        async def follower_leads() -> bool:
            return bench.holder() == follower_id

        await until(follower_leads)
        takeover = time.monotonic() - killed
        await until(lambda: running(after))
        recovered = time.monotonic() - killed
        return {"takeover_s": round(takeover, 3), "running_again_s": round(recovered, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease-duration", type=float, default=6.0)
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    print(f"{'round':>5}{'takeover s':>12}{'running again s':>17}")
    with (
        tempfile.TemporaryDirectory() as root,
        Cluster("takeover", find_tools(), Options(workloads=False)) as cluster,
    ):
        bench = Bench(cluster, Path(root), args.lease_duration)
        from kubernetes import client

        bench.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        leader_id, leader = bench.replica()
        while bench.holder() != leader_id:
            time.sleep(0.05)
        _, follower = bench.replica()
        try:
            for number in range(1, args.rounds + 1):
                row = asyncio.run(round_(bench, leader, follower, number))
                rows.append(row)
                print(f"{number:>5}{row['takeover_s']:>12.2f}{row['running_again_s']:>17.2f}")
                leader = follower
                _, follower = bench.replica()  # the killed one comes back as a follower
        finally:
            for process in (leader, follower):
                process.stop()
    takeover = [r["takeover_s"] for r in rows]
    again = [r["running_again_s"] for r in rows]
    summary = {
        "takeover_median_s": round(statistics.median(takeover), 3),
        "takeover_max_s": max(takeover),
        "running_again_median_s": round(statistics.median(again), 3),
    }
    print(
        f"\ntakeover: median {summary['takeover_median_s']} s, max {summary['takeover_max_s']} s "
        f"(target ≤ {TARGET_SECONDS} s, lease {args.lease_duration} s); "
        f"running again: median {summary['running_again_median_s']} s"
    )
    write_results(
        "takeover",
        {"settings": vars(args), "target": {"takeover_s": TARGET_SECONDS}, **summary, "runs": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
