"""FAKE FLUIDOS and Liqo controllers for the federation tests: a test double,
not FLUIDOS. It advances the custom resources in the consumer cluster the way
the reference describes the real controllers doing it
(docs/fluidos.md), with none of their networking:

- discovery: while a Solver asks to find candidates, every provider cluster's
  Flavors become PeeringCandidates `peeringcandidate-<flavor>` in the
  consumer's `fluidos` namespace (and the Solver's find phase is Solved);
- contract-manager: a Reservation that asks to reserve and purchase gets a
  Transaction in the provider cluster and a Contract `contract-<reservation>-<random>`
  in the consumer, then phase Solved with the contract referenced — or phase
  Failed, for a provider the test marks as refusing;
- rear-manager (Allocation side) and Liqo: an Allocation of a Contract gets the
  provider's virtual node `liqo-<provider>` (a kwok Node carrying the
  contracted GPUs, labelled and tainted like Liqo's), then status Active — or
  Error, for a provider the test marks as unpeerable; when the last Allocation
  of a provider goes, so does its virtual node;
- Liqo: a NamespaceOffloading gets offloadingPhase Ready;
- the provider's storage: a PersistentVolumeClaim in an offloaded namespace
  gets a PersistentVolume of its size, bound to it.

It polls (every `period` seconds) rather than watching: simple, and its delays
are the double's own, which the latency figures leave out.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.harness.custom_resources import CustomResources
from tests.harness.gpu_nodes import gpu_node

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

NAMESPACE = "fluidos"
VIRTUAL_NODE_LABEL = "liqo.io/type"
REMOTE_CLUSTER_LABEL = "liqo.io/remote-cluster-id"
VIRTUAL_NODE_TAINT = {
    "key": "virtual-node.liqo.io/not-allowed",
    "value": "true",
    "effect": "NoExecute",
}
GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _phase(phase: str, message: str) -> dict[str, str]:
    now = _now()
    return {"phase": phase, "message": message, "startTime": now, "lastChangeTime": now}


@dataclass
class Provider:
    name: str  # also its Liqo cluster id
    api: ApiClient


@dataclass
class FakeFluidos:
    consumer: ApiClient
    providers: list[Provider]
    period: float = 0.1
    # Providers whose contract-manager refuses every reservation.
    refusing: set[str] = field(default_factory=set)
    # Providers whose peering fails: their Allocations end in Error.
    unpeerable: set[str] = field(default_factory=set)
    # Providers lost after peering: their Active Allocations turn to Error.
    lost: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def kind(api: ApiClient, group: str, plural: str, version: str = "v1alpha1") -> Any:
            return CustomResources(api, group, version, plural)

        self._flavors = {
            p.name: kind(p.api, "nodecore.fluidos.eu", "flavors") for p in self.providers
        }
        self._transactions = {
            p.name: kind(p.api, "reservation.fluidos.eu", "transactions") for p in self.providers
        }
        self._candidates = kind(self.consumer, "advertisement.fluidos.eu", "peeringcandidates")
        self._reservations = kind(self.consumer, "reservation.fluidos.eu", "reservations")
        self._contracts = kind(self.consumer, "reservation.fluidos.eu", "contracts")
        self._allocations = kind(self.consumer, "nodecore.fluidos.eu", "allocations")
        self._solvers = kind(self.consumer, "nodecore.fluidos.eu", "solvers")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-fluidos", daemon=True)

    def __enter__(self) -> FakeFluidos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for step in (
                self._discover,
                self._contract,
                self._allocate,
                self._offload,
                self._provision,
            ):
                try:
                    step()
                except Exception as error:  # a test double must keep going; the test sees why
                    self.errors.append(f"{step.__name__}: {error}")
            self._stop.wait(self.period)

    # -- discovery -----------------------------------------------------------------

    def _discover(self) -> None:
        # Discovery runs for Solvers that ask to find candidates, as the solver controller's
        # Discovery does; with none, the consumer learns of no Flavor.
        finders = [
            s for s in self._solvers.list(NAMESPACE)["items"] if s["spec"].get("findCandidate")
        ]
        if not finders:
            return
        for solver in finders:
            if (solver.get("status") or {}).get("findCandidate") != "Solved":
                solver["status"] = {
                    "findCandidate": "Solved",
                    "discoveryPhase": "Solved",
                    "solverPhase": _phase("Solved", "candidates found"),
                }
                self._solvers.replace_status(NAMESPACE, solver)
        wanted: dict[str, dict[str, Any]] = {}
        for provider in self.providers:
            for flavor in self._flavors[provider.name].list(NAMESPACE)["items"]:
                wanted[f"peeringcandidate-{flavor['metadata']['name']}"] = flavor
        existing = {c["metadata"]["name"]: c for c in self._candidates.list(NAMESPACE)["items"]}
        for name, flavor in wanted.items():
            body = {
                "apiVersion": "advertisement.fluidos.eu/v1alpha1",
                "kind": "PeeringCandidate",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "flavor": {
                        "metadata": {"name": flavor["metadata"]["name"], "namespace": NAMESPACE},
                        "spec": flavor["spec"],
                    },
                    "available": True,
                    "interestedSolverIDs": [],
                },
            }
            current = existing.get(name)
            if current is None:
                self._candidates.create(NAMESPACE, body)
            elif current["spec"]["flavor"]["spec"] != flavor["spec"]:
                self._candidates.merge_patch(NAMESPACE, name, {"spec": body["spec"]})
        for name in existing.keys() - wanted.keys():
            with contextlib.suppress(Exception):
                self._candidates.delete(NAMESPACE, name)

    # -- contract-manager -------------------------------------------------------------

    def _contract(self) -> None:
        for reservation in self._reservations.list(NAMESPACE)["items"]:
            status = reservation.get("status") or {}
            if (status.get("phase") or {}).get("phase") in ("Solved", "Failed"):
                continue
            spec = reservation["spec"]
            name = reservation["metadata"]["name"]
            candidate = self._candidates.get(NAMESPACE, spec["peeringCandidate"]["name"])
            flavor = candidate["spec"]["flavor"]
            provider = self._provider_of(flavor)
            if provider is None or provider.name in self.refusing:
                why = "the provider refused the reservation" if provider else "unknown provider"
                status["phase"] = _phase("Failed", why)
                reservation["status"] = status
                self._reservations.replace_status(NAMESPACE, reservation)
                continue
            transaction = f"transaction-{name}"
            with contextlib.suppress(Exception):  # already there after a restart
                self._transactions[provider.name].create(
                    NAMESPACE,
                    {
                        "apiVersion": "reservation.fluidos.eu/v1alpha1",
                        "kind": "Transaction",
                        "metadata": {"name": transaction, "namespace": NAMESPACE},
                        "spec": {
                            "flavorID": flavor["metadata"]["name"],
                            "buyer": spec["buyer"],
                            "clusterID": spec["buyer"].get("nodeID", ""),
                            "configuration": spec.get("configuration"),
                        },
                    },
                )
            # Unique, as FLUIDOS's own contract names are: a Reservation made again under
            # an old name never finds the old Contract.
            contract = f"contract-{name}-{secrets.token_hex(3)}"
            with contextlib.suppress(Exception):
                self._contracts.create(
                    NAMESPACE,
                    {
                        "apiVersion": "reservation.fluidos.eu/v1alpha1",
                        "kind": "Contract",
                        "metadata": {"name": contract, "namespace": NAMESPACE},
                        "spec": {
                            "flavor": flavor,
                            "buyer": spec["buyer"],
                            "buyerClusterID": spec["buyer"].get("nodeID", ""),
                            "seller": spec["seller"],
                            "transactionID": transaction,
                            "configuration": spec.get("configuration"),
                            "peeringTargetCredentials": {"liqoID": provider.name, "kubeconfig": ""},
                        },
                    },
                )
            status.update(
                phase=_phase("Solved", "reserved and purchased"),
                reservePhase="Solved",
                purchasePhase="Solved",
                transactionID=transaction,
                contract={"name": contract, "namespace": NAMESPACE},
            )
            reservation["status"] = status
            self._reservations.replace_status(NAMESPACE, reservation)

    def _provider_of(self, flavor: dict[str, Any]) -> Provider | None:
        flavor_name = flavor["metadata"]["name"]
        for provider in self.providers:
            names = {
                f["metadata"]["name"] for f in self._flavors[provider.name].list(NAMESPACE)["items"]
            }
            if flavor_name in names:
                return provider
        return None

    # -- Allocation, virtual nodes, offloading -------------------------------------------

    def _allocate(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.consumer)
        gpus: dict[str, dict[str, int]] = {}
        for allocation in self._allocations.list(NAMESPACE)["items"]:
            try:
                contract = self._contracts.get(NAMESPACE, allocation["spec"]["contract"]["name"])
            except ApiException as error:
                if error.status != 404:
                    raise
                continue  # released meanwhile: its Allocation is on its way out too
            provider = contract["spec"]["peeringTargetCredentials"]["liqoID"]
            status = (allocation.get("status") or {}).get("status")
            if status == "Active" and provider in self.lost:
                status = "Error"
                allocation["status"] = {
                    "status": status,
                    "message": f"lost the peering with {provider}",
                    "lastUpdateTime": _now(),
                }
                self._allocations.replace_status(NAMESPACE, allocation)
            if status is None:
                peered = provider not in self.unpeerable
                status = "Active" if peered else "Error"
                allocation["status"] = {
                    "status": status,
                    "message": f"peered with {provider}"
                    if peered
                    else f"the peering with {provider} failed",
                    "lastUpdateTime": _now(),
                }
                self._allocations.replace_status(NAMESPACE, allocation)
            if status != "Active":
                continue
            configuration = (contract["spec"].get("configuration") or {}).get("data") or {}
            gpu = configuration.get("gpu") or {}
            vendor = str(gpu.get("model", "nvidia-")).split("-", 1)[0]
            resource = GPU_RESOURCE.get(vendor, GPU_RESOURCE["nvidia"])
            held = gpus.setdefault(provider, {})
            held[resource] = held.get(resource, 0) + int(gpu.get("cores") or 0)
        self._virtual_nodes(core, gpus)

    def _virtual_nodes(self, core: Any, gpus: dict[str, dict[str, int]]) -> None:
        existing = {
            n.metadata.name: n
            for n in core.list_node(label_selector=f"{VIRTUAL_NODE_LABEL}=virtual-node").items
        }
        for provider, resources in gpus.items():
            name = f"liqo-{provider}"
            wanted = {k: str(v) for k, v in resources.items()}
            node = existing.pop(name, None)
            if node is None:
                manifest = gpu_node(
                    name,
                    resources,
                    labels={VIRTUAL_NODE_LABEL: "virtual-node", REMOTE_CLUSTER_LABEL: provider},
                )
                manifest["spec"]["taints"] = [VIRTUAL_NODE_TAINT]
                core.create_node(manifest)
                continue
            have = {k: v for k, v in (node.status.allocatable or {}).items() if k in wanted}
            if have != wanted:
                allocatable = {**(node.status.allocatable or {}), **wanted}
                core.patch_node_status(
                    name, {"status": {"allocatable": allocatable, "capacity": allocatable}}
                )
        for name in existing:
            core.delete_node(name)

    def _offload(self) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.consumer)
        listed: Any = custom.list_cluster_custom_object(
            "offloading.liqo.io", "v1beta1", "namespaceoffloadings"
        )
        for offloading in listed["items"]:
            if (offloading.get("status") or {}).get("offloadingPhase") == "Ready":
                continue
            namespace = offloading["metadata"]["namespace"]
            offloading["status"] = {"offloadingPhase": "Ready", "remoteNamespaceName": namespace}
            custom.replace_namespaced_custom_object_status(
                "offloading.liqo.io",
                "v1beta1",
                namespace,
                "namespaceoffloadings",
                offloading["metadata"]["name"],
                offloading,
            )

    def _provision(self) -> None:
        from kubernetes import client

        core: Any = client.CoreV1Api(self.consumer)
        for claim in core.list_persistent_volume_claim_for_all_namespaces().items:
            if claim.spec.volume_name or claim.status.phase != "Pending":
                continue
            name = f"pv-{claim.metadata.namespace}-{claim.metadata.name}"[:63]
            if core.list_persistent_volume(field_selector=f"metadata.name={name}").items:
                continue  # made on an earlier pass; the binder has not caught up yet
            core.create_persistent_volume(
                {
                    "metadata": {"name": name},
                    "spec": {
                        "capacity": {"storage": claim.spec.resources.requests["storage"]},
                        "accessModes": claim.spec.access_modes,
                        "hostPath": {"path": f"/tmp/{name}"},
                        "persistentVolumeReclaimPolicy": "Delete",
                        "storageClassName": claim.spec.storage_class_name or "",
                        "claimRef": {
                            "namespace": claim.metadata.namespace,
                            "name": claim.metadata.name,
                        },
                    },
                }
            )

    def candidates(self) -> Iterable[dict[str, Any]]:
        items: list[dict[str, Any]] = self._candidates.list(NAMESPACE)["items"]
        return items
