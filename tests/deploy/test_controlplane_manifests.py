"""The control plane's manifests under deploy/, rendered by kustomize from the consumer
overlay and applied with server-side apply to a real API server: both replicas are scheduled,
on different nodes; the Service sends to both and the disruption budget lets one go at a time;
and the API server's own authorizer gives the control plane's ServiceAccount what the control
plane uses and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.deploy.manifests import (
    AGENT,
    CLUSTER,
    CONSUMER,
    CONTROLPLANE,
    CONTROLPLANE_GROUPS,
    CONTROLPLANE_NEEDS,
    CONTROLPLANE_USER,
    EVERY_NAMESPACE,
    NAMESPACE_BASE,
    apply_all,
    composed,
    kustomize_build,
    named,
    unique,
)
from tests.harness.cluster import Cluster
from tests.harness.gpu_nodes import create_gpu_node
from tests.harness.tools import Tools
from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

NAME = "flare-controlplane"
NAMESPACE = "flare-system"
SELECTOR = "app.kubernetes.io/name=flare-controlplane"
# Where a namespaced grant of the ClusterRole is checked: an intent's namespace, made at run
# time (it need not exist for an access review).
INTENT_NAMESPACE = "flare-acme-3f2a1c"
TIMEOUT = 60.0


# (verb, group, resource, namespace, name): one request an access review asks about.
Access = tuple[str, str, str, str, str]


@dataclass
class Consumer:
    api: ApiClient
    objects: list[dict[str, Any]]
    nodes: list[str]


def ensure_namespace(api: ApiClient, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="module")
def consumer(
    k8s_tools: Tools, k8s_cluster: Cluster, k8s_api_client: Callable[[Cluster], ApiClient]
) -> Iterator[Consumer]:
    """The consumer overlay applied to a cluster with two fresh nodes (created before the
    Deployment, so the scheduler has the choice of two) and FLUIDOS's namespace."""
    from kubernetes import client

    if not (CONTROLPLANE / "crds.yaml").is_file():
        pytest.skip("deploy/base/controlplane/crds.yaml is not generated yet (scripts/gen_crds.py)")
    objects = kustomize_build(k8s_tools, CONSUMER)
    api = k8s_api_client(k8s_cluster)
    ensure_namespace(api, "fluidos")  # made by the FLUIDOS node, a prerequisite
    nodes = [unique("consumer-node") for _ in range(2)]
    for node in nodes:
        create_gpu_node(api, node, {})
    apply_all(api, objects)
    yield Consumer(api, objects, nodes)
    apps: Any = client.AppsV1Api(api)
    apps.delete_namespaced_deployment(NAME, NAMESPACE)
    core: Any = client.CoreV1Api(api)
    for node in nodes:
        core.delete_node(node)


def running_pods(api: ApiClient) -> list[Any]:
    """The Deployment's pods once both run, each on a node."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)

    def both() -> list[Any] | None:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        running = [p for p in live if p.status.phase == "Running" and p.spec.node_name]
        return running if len(live) == len(running) == 2 else None

    return wait_until(both, timeout=TIMEOUT, what="two running control-plane pods")


def test_every_object_of_the_overlay_is_on_the_api_server(consumer: Consumer) -> None:
    from kubernetes import dynamic

    kinds = {o["kind"] for o in consumer.objects}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "Service"} <= kinds
    assert {"PodDisruptionBudget", "Role", "RoleBinding", "ClusterRole"} <= kinds
    assert "DaemonSet" not in kinds, "the consumer overlay has no agent"
    found = dynamic.DynamicClient(consumer.api)  # type: ignore[no-untyped-call]
    for body in consumer.objects:
        metadata = body["metadata"]
        resource = found.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        got = resource.get(name=metadata["name"], namespace=metadata.get("namespace"))
        assert got.metadata.name == metadata["name"]
    # The overlay's patch set the FLUIDOS identity; the base's settings stay.
    data = named(consumer.objects, "ConfigMap", NAME)["data"]
    assert data["FLARE_FLUIDOS_NODE_ID"] == "acme-consumer"
    assert data["FLARE_STORE"] == "kubernetes"
    deployment = named(consumer.objects, "Deployment", NAME)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "flare/controlplane:0.1.0"


def test_the_flare_resources_are_served(consumer: Consumer) -> None:
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    found = dynamic.DynamicClient(consumer.api)  # type: ignore[no-untyped-call]

    def served() -> bool:
        try:
            for kind in ("FlareIntent", "FlareToken"):
                resource = found.resources.get(api_version="flare.fluidos.eu/v1alpha1", kind=kind)
                resource.get(namespace=NAMESPACE)
        except (ResourceNotFoundError, ApiException):
            return False  # not established yet
        return True

    assert wait_until(served, timeout=TIMEOUT, what="FlareIntent and FlareToken to be served")


def test_the_replicas_run_on_two_nodes(consumer: Consumer) -> None:
    from kubernetes import client

    pods = running_pods(consumer.api)
    nodes = {p.spec.node_name for p in pods}
    assert len(nodes) == 2, f"both replicas on {nodes}"
    apps: Any = client.AppsV1Api(consumer.api)

    def available() -> bool:
        status = apps.read_namespaced_deployment(NAME, NAMESPACE).status
        return bool(status.available_replicas == 2)

    assert wait_until(available, timeout=TIMEOUT, what="the Deployment to report 2 available")


def test_the_service_sends_to_both_replicas(consumer: Consumer) -> None:
    """kwok plays the kubelet: it marks a running pod Ready without running its probes, so
    this shows that the Service selects the pods and names their ports; the probes' shape is
    checked in tests/unit/test_controlplane_manifests.py."""
    from kubernetes import client

    pods = running_pods(consumer.api)
    pod_ips = {p.status.pod_ip for p in pods}
    discovery: Any = client.DiscoveryV1Api(consumer.api)

    def ready_addresses() -> tuple[set[str], Any] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={NAME}"
        ).items
        addresses = {
            address
            for endpoint_slice in slices
            for endpoint in endpoint_slice.endpoints or []
            if endpoint.conditions.ready
            for address in endpoint.addresses
        }
        return (addresses, slices) if addresses == pod_ips else None

    _, slices = wait_until(ready_addresses, timeout=TIMEOUT, what="both pods behind the Service")
    ports = {p.name: p for s in slices for p in s.ports}
    assert {name: p.port for name, p in ports.items()} == {
        "grpc": 50051,
        "http": 8080,
        "metrics": 9401,
    }
    assert ports["grpc"].app_protocol == "grpc"


def test_the_disruption_budget_lets_one_replica_go_at_a_time(consumer: Consumer) -> None:
    from kubernetes import client

    running_pods(consumer.api)
    policy: Any = client.PolicyV1Api(consumer.api)

    def settled() -> Any:
        status = policy.read_namespaced_pod_disruption_budget(NAME, NAMESPACE).status
        return status if status.expected_pods == 2 and status.current_healthy == 2 else None

    status = wait_until(settled, timeout=TIMEOUT, what="the budget to count both pods")
    assert status.desired_healthy == 1
    assert status.disruptions_allowed == 1


def allowed(api: ApiClient, access: Access) -> bool:
    """What the API server's authorizer answers for the control plane's ServiceAccount."""
    verb, group, resource, namespace, name = access
    from kubernetes import client

    attributes = client.V1ResourceAttributes(
        verb=verb, group=group, resource=resource, namespace=namespace or None, name=name or None
    )
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=CONTROLPLANE_USER,
            groups=list(CONTROLPLANE_GROUPS),
            resource_attributes=attributes,
        )
    )
    authorization: Any = client.AuthorizationV1Api(api)
    return bool(authorization.create_subject_access_review(review).status.allowed)


def needed() -> list[Access]:
    """(verb, group, resource, namespace, name) for everything the control plane uses."""
    out = []
    for grant in CONTROLPLANE_NEEDS:
        for namespace, group, resource, verb, name in grant.accesses():
            where = INTENT_NAMESPACE if namespace == EVERY_NAMESPACE else namespace
            out.append((verb, group, resource, where, name))
    return out


def test_the_service_account_may_do_what_the_control_plane_does(consumer: Consumer) -> None:
    # The authorizer learns of new roles from a watch: wait for the first, then ask for all.
    first = needed()[0]
    wait_until(lambda: allowed(consumer.api, first), timeout=TIMEOUT, what="RBAC to apply")
    refused = [access for access in needed() if not allowed(consumer.api, access)]
    assert not refused, f"refused: {refused}"
    # The examples the runtime contract gives, spelled out.
    for example in [
        ("create", "reservation.fluidos.eu", "reservations", "fluidos", ""),
        ("create", "authentication.k8s.io", "tokenreviews", CLUSTER, ""),
        ("update", "coordination.k8s.io", "leases", NAMESPACE, NAME),
    ]:
        assert allowed(consumer.api, example), example


def test_the_lease_is_listed_and_watched_by_name_only(
    consumer: Consumer, k8s_cluster: Cluster
) -> None:
    """list and watch are granted on the one Lease: a request that names it with a field
    selector passes, one for every Lease of the namespace does not."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    first = needed()[0]
    wait_until(lambda: allowed(consumer.api, first), timeout=TIMEOUT, what="RBAC to apply")
    acting = k8s_cluster.api_client()
    acting.default_headers.update(
        {"Impersonate-User": CONTROLPLANE_USER, "Impersonate-Group": "system:serviceaccounts"}
    )
    try:
        leases: Any = client.CoordinationV1Api(acting)
        by_name = f"metadata.name={NAME}"
        leases.list_namespaced_lease(NAMESPACE, field_selector=by_name)
        stream = leases.list_namespaced_lease(
            NAMESPACE,
            field_selector=by_name,
            watch=True,
            timeout_seconds=1,
            _preload_content=False,
        )
        assert stream.status == 200
        stream.release_conn()
        with pytest.raises(ApiException) as refused:
            leases.list_namespaced_lease(NAMESPACE)
        assert refused.value.status == 403
    finally:
        acting.close()  # type: ignore[no-untyped-call]


UNRELATED: list[Access] = [
    ("delete", "", "nodes", CLUSTER, ""),
    ("patch", "", "nodes", CLUSTER, ""),
    ("get", "", "secrets", "kube-system", ""),
    ("list", "", "secrets", NAMESPACE, ""),
    ("get", "", "secrets", NAMESPACE, "flare-agent-token"),
    ("update", "", "secrets", NAMESPACE, "flare-agent-token"),
    ("patch", "nodecore.fluidos.eu", "flavors", "fluidos", ""),
    ("list", "nodecore.fluidos.eu", "flavors", "fluidos", ""),
    ("update", "reservation.fluidos.eu", "reservations", "fluidos", ""),
    ("create", "reservation.fluidos.eu", "contracts", "fluidos", ""),
    ("create", "reservation.fluidos.eu", "reservations", "default", ""),
    ("create", "nodecore.fluidos.eu", "solvers", INTENT_NAMESPACE, ""),
    ("update", "coordination.k8s.io", "leases", "kube-system", "kube-scheduler"),
    ("update", "coordination.k8s.io", "leases", NAMESPACE, "another-lease"),
    ("list", "coordination.k8s.io", "leases", NAMESPACE, ""),
    ("get", "flare.fluidos.eu", "flareintents", "default", ""),
    ("create", "flare.fluidos.eu", "flaretokens", INTENT_NAMESPACE, ""),
    ("create", "", "pods", INTENT_NAMESPACE, ""),
    ("get", "", "pods", INTENT_NAMESPACE, ""),
    ("update", "apps", "deployments", INTENT_NAMESPACE, ""),
    ("patch", "apps", "deployments", "kube-system", ""),
    ("update", "", "namespaces", CLUSTER, ""),
    ("delete", "capsule.clastix.io", "tenants", CLUSTER, ""),
    ("update", "capsule.clastix.io", "tenants", CLUSTER, ""),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", CLUSTER, ""),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", CLUSTER, ""),
    ("impersonate", "", "users", CLUSTER, ""),
    ("create", "authorization.k8s.io", "subjectaccessreviews", CLUSTER, ""),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", CLUSTER, ""),
]


def test_the_service_account_may_do_nothing_else(consumer: Consumer) -> None:
    first = needed()[0]
    wait_until(lambda: allowed(consumer.api, first), timeout=TIMEOUT, what="RBAC to apply")
    granted = [access for access in UNRELATED if allowed(consumer.api, access)]
    assert not granted, f"granted: {granted}"


def test_the_namespace_enforces_restricted_pod_security(consumer: Consumer) -> None:
    """The control plane's pods run under Pod Security "restricted" (they were admitted, see
    above); a pod that asks for more is refused in flare-system."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    running_pods(consumer.api)
    pod = {
        "metadata": {"name": unique("privileged")},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }
    core: Any = client.CoreV1Api(consumer.api)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NAMESPACE, pod, dry_run="All")
    assert refused.value.status == 403
    assert "restricted" in str(refused.value.body)


def test_both_bases_compose_in_one_cluster(k8s_tools: Tools, tmp_path: Path) -> None:
    """A cluster that is consumer and provider includes the namespace once and both bases."""
    if not (CONTROLPLANE / "crds.yaml").is_file():
        pytest.skip("deploy/base/controlplane/crds.yaml is not generated yet (scripts/gen_crds.py)")
    objects = kustomize_build(k8s_tools, composed(tmp_path, NAMESPACE_BASE, AGENT, CONTROLPLANE))
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Namespace") == 1
    assert {"DaemonSet", "Deployment"} <= set(kinds)
    identities = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
    ]
    assert len(identities) == len(set(identities))
