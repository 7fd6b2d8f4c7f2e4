"""Reading deploy/'s kustomizations and applying them, shared by the manifest tests; and what
the control plane's ServiceAccount must be allowed to do, from its runtime contract."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.harness.tools import REPO_ROOT, Tools

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE_BASE = DEPLOY / "base" / "namespace"
AGENT = DEPLOY / "base" / "agent"
CONTROLPLANE = DEPLOY / "base" / "controlplane"
PROVIDER = DEPLOY / "overlays" / "provider"
CONSUMER = DEPLOY / "overlays" / "consumer"
FIELD_MANAGER = "flare-deploy"


def kustomization(folder: Path) -> list[dict[str, Any]]:
    """The objects of a base whose kustomization is a list of files, in order, read without
    kustomize (for the tests that run without the Kubernetes tools)."""
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    return [
        doc
        for name in listed
        for doc in yaml.safe_load_all((folder / name).read_text())
        if doc is not None
    ]


def kustomize_build(tools: Tools, folder: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build` renders from `folder`, in its order (Namespaces and CRDs
    first)."""
    rendered = subprocess.run(
        [str(tools.binary("kustomize")), "build", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if rendered.returncode != 0:
        raise AssertionError(f"kustomize build {folder} failed:\n{rendered.stderr}")
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc is not None]


def composed(tmp: Path, *folders: Path) -> Path:
    """A kustomization in `tmp` that includes `folders` (kustomize wants them relative)."""
    resources = [os.path.relpath(folder, tmp) for folder in folders]
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({"resources": resources}))
    return tmp


def apply_all(api: ApiClient, objects: list[dict[str, Any]]) -> None:
    """Server-side applies every object, in order."""
    from kubernetes import dynamic

    client = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    for body in objects:
        resource = client.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        resource.server_side_apply(
            body=body,
            name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )


def named(
    objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None
) -> dict[str, Any]:
    """The one object of that kind and name (and namespace, when given)."""
    [found] = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and namespace in (None, o["metadata"].get("namespace"))
    ]
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- what the control plane's ServiceAccount needs -------------------------------------------

CONTROLPLANE_USER = "system:serviceaccount:flare-system:flare-controlplane"
CONTROLPLANE_GROUPS = (
    "system:serviceaccounts",
    "system:serviceaccounts:flare-system",
    "system:authenticated",
)
CLUSTER = ""  # a cluster-scoped resource
EVERY_NAMESPACE = "*"  # a namespaced resource in namespaces made at run time (the intents')


@dataclass(frozen=True)
class Grant:
    """Verbs on a resource, in a namespace (or CLUSTER, or EVERY_NAMESPACE), optionally on
    one object only."""

    namespace: str
    group: str
    resource: str
    verbs: tuple[str, ...]
    name: str = ""

    def accesses(self) -> Iterator[tuple[str, str, str, str, str]]:
        for verb in self.verbs:
            yield (self.namespace, self.group, self.resource, verb, self.name)


# The runtime contract of the control plane in cluster mode, and the calls of
# controlplane/store/kubernetes.py, controlplane/cluster/ (lease.py, admin.py,
# serviceaccounts.py) and controlplane/federation/fluidos/adapter.py (every object waited for
# is listed by name, then watched; a create that conflicts is left as is).
CONTROLPLANE_NEEDS: tuple[Grant, ...] = (
    # The store: intents and tokens as FLARE's custom objects in its namespace.
    Grant(
        "flare-system",
        "flare.fluidos.eu",
        "flareintents",
        ("get", "list", "watch", "create", "update"),
    ),
    Grant(
        "flare-system",
        "flare.fluidos.eu",
        "flaretokens",
        ("get", "list", "watch", "create", "update"),
    ),
    # Leader election on the Lease flare-controlplane.
    Grant("flare-system", "coordination.k8s.io", "leases", ("create",)),
    Grant(
        "flare-system",
        "coordination.k8s.io",
        "leases",
        ("get", "list", "watch", "update"),
        "flare-controlplane",
    ),
    # The bootstrap admin token (replaced when it holds a token the store does not know).
    Grant("flare-system", "", "secrets", ("create",)),
    Grant("flare-system", "", "secrets", ("get", "update"), "flare-admin-token"),
    # The webhooks' cursor (what is owed to whom), kept by the leader.
    Grant("flare-system", "", "configmaps", ("create",)),
    Grant("flare-system", "", "configmaps", ("get", "update"), "flare-state-webhooks"),
    # ServiceAccount-token authentication of API callers.
    Grant(CLUSTER, "authentication.k8s.io", "tokenreviews", ("create",)),
    Grant(CLUSTER, "capsule.clastix.io", "tenants", ("get", "list", "watch", "create")),
    # FLUIDOS: offers, and the Solver -> Reservation -> Contract -> Allocation chain.
    Grant("fluidos", "advertisement.fluidos.eu", "peeringcandidates", ("list", "watch")),
    Grant("fluidos", "nodecore.fluidos.eu", "solvers", ("create", "delete")),
    Grant(
        "fluidos",
        "reservation.fluidos.eu",
        "reservations",
        ("get", "list", "watch", "create", "delete"),
    ),
    Grant("fluidos", "reservation.fluidos.eu", "contracts", ("get", "delete")),
    Grant(
        "fluidos",
        "nodecore.fluidos.eu",
        "allocations",
        ("get", "list", "watch", "create", "delete"),
    ),
    # The intent's namespace, its Liqo offloading and its workload.
    Grant(CLUSTER, "", "namespaces", ("get", "list", "watch", "create", "delete")),
    Grant(
        EVERY_NAMESPACE,
        "offloading.liqo.io",
        "namespaceoffloadings",
        ("list", "watch", "create", "delete"),
    ),
    Grant(EVERY_NAMESPACE, "", "persistentvolumeclaims", ("create",)),
    Grant(EVERY_NAMESPACE, "", "services", ("create",)),
    Grant(EVERY_NAMESPACE, "apps", "deployments", ("get", "create", "delete")),
    Grant(EVERY_NAMESPACE, "batch", "jobs", ("get", "create", "delete")),
    Grant(EVERY_NAMESPACE, "autoscaling", "horizontalpodautoscalers", ("create",)),
    Grant(EVERY_NAMESPACE, "networking.k8s.io", "ingresses", ("create",)),
    Grant(EVERY_NAMESPACE, "", "pods", ("list", "watch")),
    Grant(CLUSTER, "", "nodes", ("get", "list")),
    # GPUs through DRA: the DeviceClasses and ResourceSlices read, the claims' template made.
    Grant(CLUSTER, "resource.k8s.io", "deviceclasses", ("list",)),
    Grant(CLUSTER, "resource.k8s.io", "resourceslices", ("list",)),
    Grant(EVERY_NAMESPACE, "resource.k8s.io", "resourceclaimtemplates", ("create",)),
)
