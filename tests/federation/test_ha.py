"""Two control-plane replicas in cluster mode on the consumer cluster of the
FLUIDOS federation, each running as the control plane's ServiceAccount with
exactly the RBAC of deploy/: the leader is `kill -9`ed while clients create
intents. A follower takes the Lease and carries on; every acknowledged intent
is there once, and no GPU is allocated twice."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.cluster import resources
from controlplane.cluster.admin import ADMIN_SECRET
from controlplane.federation.fluidos import workload
from controlplane.intents import lifecycle
from flare.v1 import intent_pb2, intent_service_pb2, intent_service_pb2_grpc
from tests.controlplane_process import ControlPlaneProcess
from tests.federation.service_account import NAMESPACE, as_service_account, remove_service_account
from tests.federation.world import OFFERINGS, World
from tests.harness.waiting import wait_until
from tests.intents import gpu_job

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
LEASE_SECONDS = 6
TAKEOVER_TARGET = 10.0


class Replicas:
    def __init__(self, world: World, root: Path) -> None:
        self.world, self.namespace, self.root = world, NAMESPACE, root
        self.kubeconfig = as_service_account(world, root)
        self.processes: dict[str, ControlPlaneProcess] = {}

    def start(self, identity: str) -> ControlPlaneProcess:
        kubeconfig = str(self.kubeconfig)
        process = ControlPlaneProcess(
            self.root / identity,
            flags=(
                "--store", "kubernetes",
                "--federation", "fluidos",
                "--kubeconfig", kubeconfig,
                "--namespace", self.namespace,
                "--identity", identity,
                "--lease-duration", str(LEASE_SECONDS),
            ),
        )  # fmt: skip
        process.start()
        self.processes[identity] = process
        return process

    def holder(self) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            lease: Any = client.CoordinationV1Api(self.world.consumer).read_namespaced_lease(
                "flare-controlplane", self.namespace
            )
        except ApiException:
            return ""
        return str(lease.spec.holder_identity or "")

    def admin_token(self) -> str:
        from kubernetes import client

        secret: Any = client.CoreV1Api(self.world.consumer).read_namespaced_secret(
            ADMIN_SECRET, self.namespace
        )
        return base64.b64decode(secret.data["token"]).decode().strip()

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture
def replicas(fluidos_world: World, tmp_path: Path) -> Iterator[Replicas]:
    running = Replicas(fluidos_world, tmp_path)
    try:
        yield running
    finally:
        running.stop()
        remove_service_account(fluidos_world)


def flare_intents(world: World, namespace: str) -> list[dict[str, Any]]:
    from kubernetes import client

    listed: Any = client.CustomObjectsApi(world.consumer).list_namespaced_custom_object(
        resources.GROUP, resources.VERSION, namespace, resources.INTENTS
    )
    return list(listed["items"])


def reservations_of(world: World, names: set[str]) -> Counter[str]:
    from kubernetes import client

    listed: Any = client.CustomObjectsApi(world.consumer).list_namespaced_custom_object(
        "reservation.fluidos.eu", "v1alpha1", "fluidos", "reservations"
    )
    wanted = {workload.resource_name(n): n for n in names}
    return Counter(
        wanted[r["metadata"]["name"]] for r in listed["items"] if r["metadata"]["name"] in wanted
    )


def story(intent: intent_pb2.Intent) -> str:
    """An intent's state and whole history, for a failure's message."""
    steps = "\n".join(
        f"    {lifecycle.name(t.from_state)} -> {lifecycle.name(t.to_state)} "
        f"{t.reason}: {t.message}"
        for t in intent.history
    )
    return f"  {intent.name} {lifecycle.name(intent.state)}\n{steps}"


@dataclass(frozen=True)
class Load:
    intents: int
    gpus: int  # each; more than the federation's 20 GPUs in all, so some must queue
    clients: int
    kill_after: int  # acknowledged intents before the leader dies
    pause: float  # between a client's creates


@pytest.mark.parametrize(
    "load",
    [
        Load(intents=12, gpus=2, clients=4, kill_after=4, pause=0.3),
        # Hundreds in flight: 100 acknowledged when the leader dies, reservations,
        # allocations and deploys under way, the rest still coming.
        Load(intents=200, gpus=1, clients=8, kill_after=100, pause=0.0),
    ],
    ids=["12-intents", "200-intents"],
)
async def test_the_leader_killed_while_intents_are_created(
    replicas: Replicas, fluidos_world: World, load: Load
) -> None:
    leader = replicas.start("replica-a")
    wait_until(lambda: replicas.holder() == "replica-a", timeout=30, what="replica-a leads")
    wait_until(lambda: bool(replicas.admin_token()), timeout=30, what="the admin token Secret")
    follower = replicas.start("replica-b")
    md = (("authorization", f"Bearer {replicas.admin_token()}"),)
    channels = [grpc.aio.insecure_channel(p.address) for p in (leader, follower)]
    stubs = [intent_service_pb2_grpc.IntentServiceStub(c) for c in channels]
    acknowledged: dict[str, str] = {}  # request id -> intent name
    killed = asyncio.Event()
    takeover: list[float] = []

    async def create(request_id: str, first: int) -> None:
        """A client that retries the same request on the other replica, as a client
        behind a Service would."""
        deadline = time.monotonic() + 60
        attempt = 0
        while True:
            stub = stubs[(first + attempt) % 2]
            try:
                reply = await stub.CreateIntent(
                    intent_service_pb2.CreateIntentRequest(
                        intent=gpu_job("train", count=load.gpus), request_id=request_id
                    ),
                    metadata=md,
                    timeout=5,
                )
            except grpc.aio.AioRpcError:
                assert time.monotonic() < deadline, f"{request_id} never acknowledged"
                attempt += 1
                await asyncio.sleep(0.1)
                continue
            acknowledged[request_id] = reply.intent.name
            return

    async def client(number: int) -> None:
        for index in range(number, load.intents, load.clients):
            await create(f"{load.intents}-r-{index}", number)
            await asyncio.sleep(load.pause)

    async def kill_the_leader() -> None:
        while len(acknowledged) < load.kill_after:
            await asyncio.sleep(0.02)
        leader.kill()
        died = time.monotonic()
        killed.set()
        while replicas.holder() != "replica-b":
            await asyncio.sleep(0.05)
        takeover.append(time.monotonic() - died)

    try:
        await asyncio.gather(kill_the_leader(), *(client(n) for n in range(load.clients)))
        stub = stubs[1]

        async def settled() -> list[intent_pb2.Intent]:
            while True:
                listed = await stub.ListIntents(
                    intent_service_pb2.ListIntentsRequest(page_size=1000), metadata=md
                )
                intents = [i for i in listed.intents if i.name in set(acknowledged.values())]
                if len(intents) == len(acknowledged) and all(
                    i.state in (lifecycle.RUNNING, lifecycle.QUEUED) for i in intents
                ):
                    return intents
                await asyncio.sleep(0.5)

        try:
            intents = await asyncio.wait_for(settled(), 300)
        except TimeoutError:
            listed = await stub.ListIntents(
                intent_service_pb2.ListIntentsRequest(page_size=1000), metadata=md
            )
            at_rest = (lifecycle.RUNNING, lifecycle.QUEUED)
            stuck = [i for i in listed.intents if i.state not in at_rest]
            raise AssertionError(
                f"{len(stuck)} intents never settled:\n" + "\n".join(map(story, stuck[:5]))
            ) from None
        objects = flare_intents(fluidos_world, replicas.namespace)
        running = [i for i in intents if i.state == lifecycle.RUNNING]
        per_provider = Counter[str]()
        for intent in running:
            per_provider[intent.placement.provider] += load.gpus
        capacity = sum(o.gpus for o in OFFERINGS.values())

        # Every acknowledged intent is there, once.
        assert len(acknowledged) == load.intents
        by_request = Counter(o["status"].get("requestId") for o in objects)
        assert all(by_request[r] == 1 for r in acknowledged), by_request
        assert len(objects) == load.intents
        # Nothing placed twice, no provider sold beyond its GPUs, and the federation full.
        assert all(per_provider[p] <= o.gpus for p, o in OFFERINGS.items()), per_provider
        assert len(running) == capacity // load.gpus
        assert reservations_of(fluidos_world, {i.name for i in running}) == Counter(
            {i.name: 1 for i in running}
        )
        queued = [i for i in intents if i.state == lifecycle.QUEUED]
        holding = reservations_of(fluidos_world, {i.name for i in queued})
        assert holding == Counter(), "\n".join(story(i) for i in queued if i.name in holding)
        # The follower took over within the target.
        assert killed.is_set() and takeover[0] <= TAKEOVER_TARGET, takeover
        print(f"{load.intents} intents, takeover after kill -9: {takeover[0]:.2f} s")

        for intent in running:
            await stub.CancelIntent(
                intent_service_pb2.CancelIntentRequest(name=intent.name), metadata=md
            )

        async def cancelled() -> None:
            for intent in running:
                while (
                    await stub.GetIntent(
                        intent_service_pb2.GetIntentRequest(name=intent.name), metadata=md
                    )
                ).intent.state != lifecycle.CANCELLED:
                    await asyncio.sleep(0.3)

        await asyncio.wait_for(cancelled(), 300)
    finally:
        for channel in channels:
            await channel.close()
