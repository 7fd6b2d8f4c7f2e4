"""The `fluidos` federation: FLARE's Federation port over the consumer cluster's
FLUIDOS, Liqo and Capsule resources, through the kubernetes client.

- Offers are the PeeringCandidates in the FLUIDOS namespace, kept current by a
  watch (list, then watch from its resourceVersion; a lost watch lists again).
- reserve(): FLARE has already chosen the candidate by the intent's objective,
  so it does not let a Solver pick "the first match" as the earlier FLARE did:
  it records a Solver for the intent (with the intent's needs as its K8Slice
  selector) and creates the Reservation of exactly that candidate, then waits
  for the contract-manager to reserve and purchase it (phase Solved, a Contract)
  or to fail it. A failed or timed-out reservation blocks the candidate for a
  while, so planning again picks the next one.
- deploy(): an Allocation of the Contract (its peering makes the provider's
  virtual node), the intent's namespace under the tenant's Capsule Tenant, a
  NamespaceOffloading to the contract's cluster, and the workload with its GPU
  limits; RUNNING when its pods run.
- release(): deletes all of it, the Contract included; idempotent.

Waiting is done with watches on the one object waited for, never by polling.
The kubernetes client blocks, so every call and wait runs on the adapter's own
threads, more of them than the engine has workers: a reservation or a deploy
waiting minutes for FLUIDOS never delays another intent's step, nor anything
else the control plane runs on threads (its Lease, its journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from controlplane.errors import FailedPrecondition
from controlplane.federation.fluidos import selector, workload
from controlplane.federation.fluidos.offers import offer_of
from controlplane.federation.port import CapacityGone, CapacityListeners, Deployed, Trouble
from controlplane.placement import requirements, table
from controlplane.placement.offers import Offer
from controlplane.placement.table import OfferTable
from flare import dra
from flare.money import DEFAULT_RATES_PER_EUR
from flare.v1 import intent_pb2

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
T = TypeVar("T")
FLUIDOS = "fluidos"
V1ALPHA1 = "v1alpha1"
KINDS = {
    "peeringcandidates": "advertisement.fluidos.eu",
    "solvers": "nodecore.fluidos.eu",
    "allocations": "nodecore.fluidos.eu",
    "reservations": "reservation.fluidos.eu",
    "contracts": "reservation.fluidos.eu",
}
FAILED_PHASES = frozenset({"Failed", "Timed Out"})
# How long a stale object left under an intent's name may take to go.
STALE_OBJECT_SECONDS = 30.0
# The standing Solver that keeps the PeeringCandidates current (find only, no filters).
DISCOVERY_SOLVER = "flare-discovery"
# Threads for the client's blocking calls and waits: each engine worker (16 by default)
# waits on one at a time, the periodic check on one more.
THREADS = 64


# progress(intent name, reason, message): a step of the way, for the intent's history.
Progress = Callable[[str, str, str], Awaitable[None]]


class AllocationFailed(FailedPrecondition):
    """FLUIDOS or Liqo could not give the intent its resources."""


@dataclass(frozen=True)
class Identity:
    """This consumer's FLUIDOS node identity (the Reservation's buyer)."""

    node_id: str
    domain: str
    ip: str

    def as_json(self) -> dict[str, str]:
        return {"nodeID": self.node_id, "domain": self.domain, "ip": self.ip}


@dataclass
class Timeouts:
    reservation: float = 120.0  # FLUIDOS's own Running timeout is 2 minutes
    allocation: float = 300.0  # and the solver's 5
    pods: float = 300.0
    blocked: float = 600.0  # how long a candidate that failed stays out of placement
    # How long the provider's virtual node may be NotReady under a running workload
    # before the intent moves (Kubernetes has already waited its 40 s grace by then).
    not_ready: float = 30.0


# Why a pod failed that says its provider failed it (the node went, was shut down,
# evicted it, or could not give it its GPUs), not that the workload crashed.
PROVIDER_FAILURES = frozenset(
    {"Evicted", "NodeLost", "Shutdown", "Terminated", "UnexpectedAdmissionError", "NodeAffinity"}
)


class FluidosFederation(CapacityListeners):
    def __init__(
        self,
        api_client: ApiClient,
        identity: Identity,
        *,
        rates: Mapping[str, Decimal] = DEFAULT_RATES_PER_EUR,
        timeouts: Timeouts | None = None,
        namespace: str = FLUIDOS,
        progress: Progress | None = None,
        threads: int = THREADS,
    ) -> None:
        from kubernetes import client

        super().__init__()
        self._api = api_client
        # The client's typed stubs say "object" for custom resources: JSON is read as Any here.
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._identity = identity
        self._rates = rates
        self._timeouts = timeouts or Timeouts()
        self._namespace = namespace
        self._progress = progress
        self._candidates: dict[str, dict[str, Any]] = {}
        self._blocked: dict[str, float] = {}  # candidate name -> monotonic time it is free again
        self._holds: dict[str, tuple[str, int]] = {}  # intent -> (candidate, GPUs)
        self._table: OfferTable | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._synced = threading.Event()
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flare-fluidos")
        # Seconds each intent spent waiting for FLUIDOS, Liqo and the pods (the rest of
        # its way to RUNNING is FLARE's own work), for the allocation benchmark.
        self.waited: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Asks FLUIDOS to discover every K8Slice Flavor (a standing discovery Solver),
        lists the PeeringCandidates, then keeps watching them."""
        self._loop = asyncio.get_running_loop()
        await self._create(
            "solvers",
            {
                "apiVersion": f"{KINDS['solvers']}/{V1ALPHA1}",
                "kind": "Solver",
                "metadata": {"name": DISCOVERY_SOLVER, "namespace": self._namespace},
                "spec": {
                    "intentID": DISCOVERY_SOLVER,
                    "selector": {"flavorType": "K8Slice", "filters": {}},
                    "findCandidate": True,
                    "reserveAndBuy": False,
                    "establishPeering": False,
                },
            },
        )
        self._watcher = threading.Thread(target=self._watch, name="fluidos-watch", daemon=True)
        self._watcher.start()
        await self._blocking(self._synced.wait, 30)

    async def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            await self._blocking(self._watcher.join, 5)
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the adapter's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    def _watch(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        group = KINDS["peeringcandidates"]
        while not self._stop.is_set():
            try:
                listed = self._custom.list_namespaced_custom_object(
                    group, V1ALPHA1, self._namespace, "peeringcandidates"
                )
                items = {c["metadata"]["name"]: c for c in listed["items"]}
                self._publish(functools.partial(self._replace_all, items))
                self._synced.set()
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    group,
                    V1ALPHA1,
                    self._namespace,
                    "peeringcandidates",
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    kind, item = str(event["type"]), event["object"]
                    self._publish(functools.partial(self._changed, kind, item))
            except ApiException as error:
                if error.status != 410:  # 410: the watch fell too far behind; list again
                    log.warning("watching PeeringCandidates failed: %s", error.reason)
                    self._stop.wait(1.0)
            except Exception as error:  # the API server went away: try again
                if self._stop.is_set():
                    return
                log.warning("watching PeeringCandidates failed: %s", error)
                self._stop.wait(1.0)

    def _publish(self, change: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(change)

    def _replace_all(self, items: dict[str, dict[str, Any]]) -> None:
        self._candidates = items
        self._table = None
        self._notify()

    def _changed(self, kind: str, item: dict[str, Any]) -> None:
        name = item["metadata"]["name"]
        if kind == "DELETED":
            self._candidates.pop(name, None)
        else:
            self._candidates[name] = item
        self._table = None
        if kind != "DELETED":
            self._notify()

    def restore(self, holding: Iterable[intent_pb2.Intent]) -> None:
        """Holds the GPUs of intents that held them before a restart."""
        for intent in holding:
            gpus = sum(n.gpu_count for n in intent.placement.nodes)
            self._holds[intent.name] = (_candidate_of(intent.placement.offer), gpus)

    # -- offers --------------------------------------------------------------------

    def _offers(self) -> list[Offer]:
        now = time.monotonic()
        self._blocked = {name: until for name, until in self._blocked.items() if until > now}
        offers = []
        for name, candidate in self._candidates.items():
            offer = offer_of(candidate)
            if offer is None:
                continue
            if name in self._blocked:
                offer = _unavailable(offer)
            offers.append(offer)
        return offers

    async def offers(self) -> OfferTable:
        # The table changes when a candidate does (the watch drops it) or a block ends.
        if self._table is None or (
            self._blocked and time.monotonic() >= min(self._blocked.values())
        ):
            self._table = table.build(self._offers(), self._rates)
        held: dict[str, int] = {}
        for candidate, count in self._holds.values():
            held[candidate] = held.get(candidate, 0) + count
        free = self._table.gpus_free.copy()
        for index, offer in enumerate(self._table.offers):
            free[index] = max(0, free[index] - held.get(_candidate_of(offer.name), 0))
        return self._table.with_free(free)

    # -- reserve -------------------------------------------------------------------

    async def reserve(self, intent: intent_pb2.Intent) -> str:
        candidate_name = _candidate_of(intent.placement.offer)
        candidate = self._candidates.get(candidate_name)
        if candidate is None:
            raise CapacityGone(f"the peering candidate {candidate_name} is gone")
        name = workload.resource_name(intent.name)
        gpus = sum(n.gpu_count for n in intent.placement.nodes)
        if intent.name not in self._holds:
            # Hold first, with no await between the check and the hold, so that intents
            # planned meanwhile see these GPUs taken (one event loop: no other worker runs).
            offer = offer_of(candidate)
            held = sum(n for c, n in self._holds.values() if c == candidate_name)
            free = (offer.gpus_free if offer else 0) - held
            if free < gpus:
                # A leader that stopped mid-reserve may have left a Reservation (even a
                # Contract) for this intent: an intent refused here holds nothing.
                await self.release(intent)
                raise CapacityGone(f"{candidate_name} has {max(free, 0)} free GPUs, {gpus} needed")
            self._holds[intent.name] = (candidate_name, gpus)
        needs = requirements.from_intent(intent)
        resources = intent.workload.resources
        await self._create(
            "solvers",
            {
                "apiVersion": f"{KINDS['solvers']}/{V1ALPHA1}",
                "kind": "Solver",
                "metadata": {"name": name, "namespace": self._namespace},
                "spec": {
                    "intentID": intent.name,
                    "selector": selector.k8slice_selector(
                        needs, cpu=resources.cpu, memory=resources.memory
                    ),
                    # FLARE chose the candidate itself; the Solver records the intent.
                    "findCandidate": False,
                    "reserveAndBuy": False,
                    "establishPeering": False,
                },
            },
        )

        def for_this_candidate(reservation: dict[str, Any]) -> bool:
            return bool(reservation["spec"]["peeringCandidate"]["name"] == candidate_name)

        body = self.reservation_of(intent, candidate)
        try:
            await self._create("reservations", body, made_for=for_this_candidate)
        except AllocationFailed as error:
            await self.release(intent)
            raise CapacityGone(str(error)) from error
        try:
            reservation = await self._wait(
                intent.name,
                "reservations",
                name,
                lambda r: _phase(r) in FAILED_PHASES or _phase(r) == "Solved",
                timeout=self._timeouts.reservation,
                what="the reservation",
            )
        except AllocationFailed as error:
            self._block(candidate_name)
            await self.release(intent)
            raise CapacityGone(str(error)) from error
        if _phase(reservation) != "Solved":
            message = ((reservation.get("status") or {}).get("phase") or {}).get("message", "")
            self._block(candidate_name)
            await self.release(intent)
            raise CapacityGone(f"the reservation {_phase(reservation).lower()}: {message}")
        contract = ((reservation.get("status") or {}).get("contract") or {}).get("name", "")
        return f"reservation {name} solved: contract {contract} for {gpus} GPUs of {candidate_name}"

    def reservation_of(
        self, intent: intent_pb2.Intent, candidate: dict[str, Any]
    ) -> dict[str, Any]:
        """The Reservation that buys the intent's placement on `candidate`."""
        name = workload.resource_name(intent.name)
        offer = offer_of(candidate)
        resources = intent.workload.resources
        return {
            "apiVersion": f"{KINDS['reservations']}/{V1ALPHA1}",
            "kind": "Reservation",
            "metadata": {"name": name, "namespace": self._namespace},
            "spec": {
                "solverID": name,
                "buyer": self._identity.as_json(),
                "seller": candidate["spec"]["flavor"]["spec"]["owner"],
                "peeringCandidate": {
                    "name": candidate["metadata"]["name"],
                    "namespace": self._namespace,
                },
                "reserve": True,
                "purchase": True,
                "configuration": selector.k8slice_configuration(
                    cpu=resources.cpu,
                    memory=resources.memory,
                    gpu_model=intent.placement.gpu_model,
                    gpu_count=sum(n.gpu_count for n in intent.placement.nodes),
                    gpu_memory_gib=offer.gpu_memory_gib if offer else 0.0,
                ),
            },
        }

    def _block(self, candidate: str, seconds: float | None = None) -> None:
        self._blocked[candidate] = time.monotonic() + (seconds or self._timeouts.blocked)
        self._table = None

    def block(self, offer: str, seconds: float) -> None:
        self._block(_candidate_of(offer), seconds)

    # -- check ---------------------------------------------------------------------

    async def check(self, intent: intent_pb2.Intent) -> Trouble | None:
        """A running intent's Allocation in error or gone, a pod its provider failed
        (evicted, node lost, GPUs not given), or its provider's virtual node NotReady
        for `Timeouts.not_ready` mean its provider failed; its namespace or its
        Deployment/Job gone means drift, which deploying repairs."""
        name = workload.resource_name(intent.name)
        allocation = await self._get("allocations", name)
        if allocation is None:
            return Trouble("failed", "AllocationGone", f"the allocation {name} is gone")
        status = allocation.get("status") or {}
        if status.get("status") == "Error":
            message = status.get("message", "")
            return Trouble("failed", "AllocationError", f"the allocation {name} failed: {message}")
        for kind, object_name in await self._blocking(self._missing, intent):
            return Trouble("drift", "WorkloadMissing", f"{kind} {object_name} is gone")
        return await self._blocking(self._pods_trouble, intent)

    def _pods_trouble(self, intent: intent_pb2.Intent) -> Trouble | None:
        """A pod of the intent's current provider that the provider failed, or that
        runs on a virtual node NotReady for too long."""
        space = workload.resource_name(intent.name)
        selector = f"{workload.PROVIDER_LABEL}={workload.provider_label(intent)}"
        nodes: dict[str, Any] = {}
        now = datetime.now(UTC)
        for pod in self._core.list_namespaced_pod(space, label_selector=selector).items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            reason = pod.status.reason or ""
            if pod.status.phase == "Failed" and (
                reason in PROVIDER_FAILURES or reason.startswith("OutOf")
            ):
                return Trouble(
                    "failed",
                    "PodFailed",
                    f"pod {pod.metadata.name} failed on {pod.spec.node_name or 'no node'}: "
                    f"{reason}: {pod.status.message or ''}".rstrip(": "),
                )
            node_name = pod.spec.node_name
            if not node_name:
                continue
            if node_name not in nodes:
                nodes[node_name] = _ready_condition(self._core, node_name)
            ready = nodes[node_name]
            if ready is None or ready.status == "True":
                continue
            since = ready.last_transition_time
            if since is not None and (now - since).total_seconds() >= self._timeouts.not_ready:
                return Trouble(
                    "failed",
                    "ProviderNotReady",
                    f"node {node_name} has not been ready for "
                    f"{(now - since).total_seconds():.0f} s: {ready.message or ready.reason}",
                )
        return None

    def _missing(self, intent: intent_pb2.Intent) -> list[tuple[str, str]]:
        """The namespace and the workload's Deployment or Job that do not exist."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        space = workload.resource_name(intent.name)
        apps: Any = client.AppsV1Api(self._api)
        batch: Any = client.BatchV1Api(self._api)
        readers: dict[str, Callable[..., Any]] = {
            "Deployment": apps.read_namespaced_deployment,
            "Job": batch.read_namespaced_job,
        }
        reads: list[tuple[str, str, Callable[..., Any], tuple[str, ...]]] = [
            ("Namespace", space, self._core.read_namespace, (space,))
        ]
        for manifest in workload.manifests(intent, liqo_id=""):
            kind, object_name = manifest["kind"], manifest["metadata"]["name"]
            if kind in readers:
                reads.append((kind, object_name, readers[kind], (object_name, space)))
        missing = []
        for kind, object_name, read, args in reads:
            try:
                read(*args)
            except ApiException as error:
                if error.status != 404:
                    raise
                missing.append((kind, object_name))
        return missing

    # -- deploy --------------------------------------------------------------------

    async def deploy(self, intent: intent_pb2.Intent) -> Deployed:
        name = workload.resource_name(intent.name)
        reservation = await self._get("reservations", name)
        contract_ref = ((reservation or {}).get("status") or {}).get("contract") or {}
        contract = await self._get("contracts", contract_ref.get("name", ""))
        if contract is None:
            raise AllocationFailed(f"the contract of {name} is gone")
        liqo_id = contract["spec"]["peeringTargetCredentials"]["liqoID"]
        contract_name = contract["metadata"]["name"]

        def for_this_contract(allocation: dict[str, Any]) -> bool:
            return bool(allocation["spec"]["contract"]["name"] == contract_name)

        await self._create(
            "allocations",
            {
                "apiVersion": f"{KINDS['allocations']}/{V1ALPHA1}",
                "kind": "Allocation",
                "metadata": {"name": name, "namespace": self._namespace},
                "spec": {
                    "contract": {
                        "name": contract["metadata"]["name"],
                        "namespace": self._namespace,
                    },
                    "forwarding": False,
                },
            },
            made_for=for_this_contract,
        )
        try:
            allocation = await self._wait(
                intent.name,
                "allocations",
                name,
                lambda a: (a.get("status") or {}).get("status") in ("Active", "Error"),
                timeout=self._timeouts.allocation,
                what="the allocation",
            )
            status = allocation["status"]
            if status["status"] != "Active":
                raise AllocationFailed(f"the allocation failed: {status.get('message', '')}")
        except AllocationFailed:
            # The provider could not peer: planning again must choose another candidate.
            self._block(_candidate_of(intent.placement.offer))
            raise
        await self._say(
            intent, "AllocationActive", f"allocation {name} active: {status.get('message', '')}"
        )
        tenant_name, _ = workload.ids(intent.name)
        tenant_uid = await self._ensure_tenant(tenant_name)
        await self._apply_core(workload.namespace(intent.name, tenant_uid))
        await self._apply_core(workload.offloading(name, liqo_id))
        offloading = await self._wait(
            intent.name,
            "namespaceoffloadings",
            "offloading",
            lambda o: (
                (o.get("status") or {}).get("offloadingPhase")
                in ("Ready", "NoClusterSelected", "AllFailed")
            ),
            timeout=self._timeouts.allocation,
            what="the namespace offloading of",
            where=(workload.LIQO_OFFLOADING_GROUP, workload.LIQO_OFFLOADING_VERSION, name),
        )
        if offloading["status"]["offloadingPhase"] != "Ready":
            raise AllocationFailed(
                f"Liqo could not offload {name}: {offloading['status']['offloadingPhase']}"
            )
        await self._say(intent, "Offloaded", f"namespace {name} offloaded to {liqo_id}")
        claim, reason = await self._blocking(self._gpu_claim, intent, liqo_id)
        access = workload.gpu_access(intent, claim, reason)
        await self._say(intent, "GpuAccess", dra.describe(access))
        for manifest in workload.manifests(intent, liqo_id, claim):
            await self._apply_core(manifest)
        started = time.monotonic()
        try:
            await self._wait_pods_running(name, intent)
        finally:
            self._add_wait(intent.name, time.monotonic() - started)
        return Deployed(workload.endpoint(intent), access)

    def _gpu_claim(
        self, intent: intent_pb2.Intent, liqo_id: str
    ) -> tuple[workload.GpuClaim | None, str]:
        """DRA for the intent's pods where this cluster, which schedules them, has a
        DeviceClass for the vendor's driver and ResourceSlices of that driver publishing
        GPUs of the placed model on the provider's virtual node; else None, and why."""
        from kubernetes.client.exceptions import ApiException

        driver = dra.DRIVERS[workload.vendor(intent)]
        if not workload.gpus_per_pod(intent):
            return None, "the workload asks for no GPU"
        try:
            classes = self._custom.list_cluster_custom_object(
                dra.GROUP, dra.VERSION, "deviceclasses"
            )["items"]
            device_class = dra.device_class_for(classes, driver.name)
            if not device_class:
                return None, f"no DeviceClass selects {driver.name} devices"
            nodes = sorted(
                node.metadata.name
                for node in self._core.list_node(
                    label_selector=f"{workload.REMOTE_CLUSTER_LABEL}={liqo_id}"
                ).items
            )
            slices = self._custom.list_cluster_custom_object(
                dra.GROUP,
                dra.VERSION,
                "resourceslices",
                field_selector=f"spec.driver={driver.name}",
            )["items"]
        except ApiException as error:
            if error.status not in (403, 404):
                raise
            return None, f"DRA is not readable here ({error.status} {error.reason})"
        where = ", ".join(nodes) or f"the virtual node of {liqo_id}"
        published = [
            device
            for node in nodes
            for device in dra.devices(slices, node=node)
            if device.is_whole_gpu()
        ]
        if not published:
            return None, f"no ResourceSlice of {driver.name} publishes GPUs on {where}"
        needs = requirements.from_intent(intent)
        ask = dra.Ask(
            model=intent.placement.gpu_model,
            min_memory_gib=needs.min_memory_gib,
            max_memory_gib=needs.max_memory_gib,
            architecture=needs.architecture,
            min_compute_capability=needs.min_compute_capability,
        )
        selectors = dra.selectors(driver, ask, published)
        if not selectors:
            return None, f"the ResourceSlices of {where} publish no {intent.placement.gpu_model}"
        reason = f"DeviceClass {device_class}; {len(published)} GPUs in ResourceSlices of {where}"
        return workload.GpuClaim(device_class, tuple(selectors), reason), ""

    async def _say(self, intent: intent_pb2.Intent, reason: str, message: str) -> None:
        if self._progress is not None:
            await self._progress(intent.name, reason, message)

    async def _wait_pods_running(self, namespace: str, intent: intent_pb2.Intent) -> None:
        from kubernetes import watch

        _, intent_id = workload.ids(intent.name)
        selector_text = (
            f"{workload.INTENT_LABEL}={intent_id},"
            f"{workload.PROVIDER_LABEL}={workload.provider_label(intent)}"
        )
        wanted = workload.pod_count(intent)
        pending: dict[str, str] = {}  # pod -> why the scheduler leaves it pending

        def watch_pending(pod: Any) -> None:
            why = _unschedulable(pod)
            if why is None or pending.get(pod.metadata.name) == why:
                return
            pending[pod.metadata.name] = why
            if self._loop is not None:
                told = self._say(intent, "PodsPending", f"pod {pod.metadata.name}: {why}")
                asyncio.run_coroutine_threadsafe(told, self._loop)

        def run() -> bool:
            deadline = time.monotonic() + self._timeouts.pods
            while time.monotonic() < deadline:
                listed = self._core.list_namespaced_pod(namespace, label_selector=selector_text)
                running = {p.metadata.name for p in listed.items if _running(p)}
                for pod in listed.items:
                    watch_pending(pod)
                if len(running) >= wanted:
                    return True
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._core.list_namespaced_pod,
                    namespace,
                    label_selector=selector_text,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=max(1, int(deadline - time.monotonic())),
                )
                for event in stream:
                    pod = event["object"]
                    if _running(pod):
                        running.add(pod.metadata.name)
                    else:
                        running.discard(pod.metadata.name)
                        watch_pending(pod)
                    if len(running) >= wanted:
                        return True
            return False

        if not await self._blocking(run):
            message = f"the workload's pods did not run within {self._timeouts.pods:.0f} s"
            if pending:
                # The provider's scheduler cannot give the pods what they ask: planning
                # again must choose another candidate.
                self._block(_candidate_of(intent.placement.offer))
                name, why = sorted(pending.items())[-1]
                message += f": pod {name}: {why}"
            raise AllocationFailed(message)

    # -- release -------------------------------------------------------------------

    async def release(self, intent: intent_pb2.Intent, *, moving: bool = False) -> None:
        name = workload.resource_name(intent.name)
        if moving:
            await self._blocking(self._evacuate, intent)
        else:
            await self._delete_core_namespace(name)
        reservation = await self._get("reservations", name)
        contract = ((reservation or {}).get("status") or {}).get("contract") or {}
        for plural, object_name in (
            ("allocations", name),
            ("contracts", contract.get("name", "")),
            ("reservations", name),
            ("solvers", name),
        ):
            if object_name:
                await self._delete(plural, object_name)
        self.waited.pop(intent.name, None)
        if self._holds.pop(intent.name, None) is not None:
            self._notify()

    def _evacuate(self, intent: intent_pb2.Intent) -> None:
        """Takes the workload off its provider and keeps the namespace for the next
        placement: the Deployment or Job goes (its pods with it, in the background;
        pods of a lost provider may linger and never count, see PROVIDER_LABEL) and the
        NamespaceOffloading, which names the old provider, goes and is waited for."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        space = workload.resource_name(intent.name)
        deleters: dict[str, Callable[..., Any]] = {
            "Deployment": client.AppsV1Api(self._api).delete_namespaced_deployment,
            "Job": client.BatchV1Api(self._api).delete_namespaced_job,
        }
        for manifest in workload.manifests(intent, liqo_id=""):
            delete = deleters.get(manifest["kind"])
            if delete is not None:
                with contextlib.suppress(ApiException):
                    delete(manifest["metadata"]["name"], space, propagation_policy="Background")
        group, version = workload.LIQO_OFFLOADING_GROUP, workload.LIQO_OFFLOADING_VERSION
        deadline = time.monotonic() + self._timeouts.allocation
        while time.monotonic() < deadline:
            try:
                self._custom.delete_namespaced_custom_object(
                    group, version, space, "namespaceoffloadings", "offloading"
                )
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            self._stop.wait(0.1)
        log.warning("the NamespaceOffloading of %s is still being deleted", space)

    # -- Kubernetes helpers ------------------------------------------------------------

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        if not name:
            return None
        try:
            found: dict[str, Any] = await self._blocking(
                self._custom.get_namespaced_custom_object,
                KINDS[plural],
                V1ALPHA1,
                self._namespace,
                plural,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def _create(
        self,
        plural: str,
        body: dict[str, Any],
        *,
        made_for: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Creates `body` unless an object of its name exists (a retried step). With
        `made_for`, an existing object it does not accept is stale — left under this
        name by another placement — and is deleted (with the Contract a stale
        Reservation bought) and made again."""
        from kubernetes.client.exceptions import ApiException

        name = body["metadata"]["name"]
        deadline = time.monotonic() + STALE_OBJECT_SECONDS
        while True:
            try:
                await self._blocking(
                    self._custom.create_namespaced_custom_object,
                    KINDS[plural],
                    V1ALPHA1,
                    self._namespace,
                    plural,
                    body,
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise
            if made_for is None:
                return
            existing = await self._get(plural, name)
            if existing is None:
                continue  # gone meanwhile: make it
            going = bool(existing["metadata"].get("deletionTimestamp"))
            if made_for(existing) and not going:
                return
            if time.monotonic() > deadline:
                raise AllocationFailed(f"the stale {plural} object {name} would not go away")
            if not going:
                log.warning("replacing a stale object", extra={"kind": plural, "object": name})
                contract = ((existing.get("status") or {}).get("contract") or {}).get("name")
                if plural == "reservations" and contract:
                    await self._delete("contracts", contract)
                await self._delete(plural, name)
            await asyncio.sleep(0.2)

    async def _delete(self, plural: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException):
            await self._blocking(
                self._custom.delete_namespaced_custom_object,
                KINDS[plural],
                V1ALPHA1,
                self._namespace,
                plural,
                name,
            )

    def _add_wait(self, intent: str, seconds: float) -> None:
        self.waited[intent] = self.waited.get(intent, 0.0) + seconds

    async def _wait(
        self,
        intent: str,
        plural: str,
        name: str,
        done: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        what: str,
        where: tuple[str, str, str] | None = None,
    ) -> dict[str, Any]:
        """Watches one object until `done` holds; raises AllocationFailed on timeout.
        `where` is (group, version, namespace) when it is not a FLUIDOS resource."""
        from kubernetes import watch

        group, version, namespace = where or (KINDS[plural], V1ALPHA1, self._namespace)
        selected = f"metadata.name={name}"

        def run() -> dict[str, Any] | None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                listed = self._custom.list_namespaced_custom_object(
                    group, version, namespace, plural, field_selector=selected
                )
                for item in listed["items"]:
                    if done(item):
                        return dict(item)
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    group,
                    version,
                    namespace,
                    plural,
                    field_selector=selected,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=max(1, int(deadline - time.monotonic())),
                )
                for event in stream:
                    if event["type"] != "DELETED" and done(event["object"]):
                        return dict(event["object"])
            return None

        started = time.monotonic()
        try:
            found = await self._blocking(run)
        finally:
            self._add_wait(intent, time.monotonic() - started)
        if found is None:
            raise AllocationFailed(f"{what} {name} did not finish within {timeout:.0f} s")
        return found

    async def _ensure_tenant(self, name: str) -> str:
        from kubernetes.client.exceptions import ApiException

        def run() -> str:
            where = ("capsule.clastix.io", "v1beta2", "tenants")
            try:
                found = self._custom.create_cluster_custom_object(*where, workload.tenant(name))
            except ApiException as error:
                if error.status != 409:  # 409: it is there already
                    raise
                found = self._custom.get_cluster_custom_object(*where, name)
            return str(found["metadata"]["uid"])

        return await self._blocking(run)

    async def _apply_core(self, manifest: dict[str, Any]) -> None:
        """Creates a manifest, or leaves it when it exists (a retried step)."""
        from kubernetes import utils
        from kubernetes.client.exceptions import ApiException

        def run() -> None:
            group, _, version = manifest["apiVersion"].rpartition("/")
            if group.endswith((".liqo.io", ".clastix.io")) or group == dra.GROUP:
                try:
                    self._custom.create_namespaced_custom_object(
                        group,
                        version,
                        manifest["metadata"]["namespace"],
                        f"{manifest['kind'].lower()}s",
                        manifest,
                    )
                except ApiException as error:
                    if error.status != 409:
                        raise
                return
            try:
                utils.create_from_dict(self._api, manifest)  # type: ignore[no-untyped-call]
            except utils.FailToCreateError as failure:
                if any(e.status != 409 for e in failure.api_exceptions):
                    raise

        await self._blocking(run)

    async def _delete_core_namespace(self, name: str) -> None:
        """Deletes the namespace and waits until it is gone (its workload with it)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        def run() -> bool:
            try:
                self._core.delete_namespace(name)
            except ApiException as error:
                if error.status == 404:
                    return True
                raise
            deadline = time.monotonic() + self._timeouts.pods
            while time.monotonic() < deadline:
                listed = self._core.list_namespace(field_selector=f"metadata.name={name}")
                if not listed.items:
                    return True
                for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._core.list_namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=max(1, int(deadline - time.monotonic())),
                ):
                    if event["type"] == "DELETED":
                        return True
            return False

        if not await self._blocking(run):
            log.warning("namespace %s is still being deleted", name)


def _ready_condition(core: Any, node_name: str) -> Any:
    """The node's Ready condition (None when the node or the condition is not there:
    a lost peering shows in the Allocation instead)."""
    from kubernetes.client.exceptions import ApiException

    try:
        node = core.read_node(node_name)
    except ApiException as error:
        if error.status != 404:
            raise
        return None
    return next((c for c in node.status.conditions or () if c.type == "Ready"), None)


def _unschedulable(pod: Any) -> str | None:
    """The scheduler's reason for leaving a pod pending ("0/3 nodes are available: 1
    cannot allocate all claims ..."), or None while it is not stuck."""
    if pod.metadata.deletion_timestamp is not None or pod.spec.node_name:
        return None
    for condition in pod.status.conditions or ():
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            return str(condition.message or condition.reason)
    return None


def _running(pod: Any) -> bool:
    return bool(pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


def _phase(resource: Mapping[str, Any]) -> str:
    return str(((resource.get("status") or {}).get("phase") or {}).get("phase") or "")


def _candidate_of(offer_name: str) -> str:
    """providers/{provider}/offers/{candidate} -> candidate."""
    return offer_name.rsplit("/", 1)[-1]


def _unavailable(offer: Offer) -> Offer:
    from dataclasses import replace

    return replace(offer, gpus_free=0, healthy=False)
