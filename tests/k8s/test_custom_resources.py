"""The FLUIDOS, Liqo and Capsule CRDs are served like built-in APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.harness.custom_resources import CustomResources
from tests.harness.fluidos_crds import fluidos_crds
from tests.k8s.conftest import unique

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

GROUP = "nodecore.fluidos.eu"
VERSION = "v1alpha1"


def solvers(api: ApiClient) -> CustomResources:
    return CustomResources(api, GROUP, VERSION, "solvers")


def flavors(api: ApiClient) -> CustomResources:
    return CustomResources(api, GROUP, VERSION, "flavors")


def solver(name: str, intent: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Solver",
        "metadata": {"name": name},
        "spec": {"intentID": intent, "findCandidate": True, "reserveAndBuy": False},
    }


def flavor(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flavor",
        "metadata": {"name": name},
        "spec": {
            "providerID": "provider-1",
            "availability": True,
            "flavorType": {"typeIdentifier": "K8Slice", "typeData": {"gpu": {"count": gpus}}},
            "owner": {"domain": "fluidos.eu", "nodeID": "node-1", "ip": "10.0.0.1"},
            "price": {"amount": "10", "currency": "EUR", "period": "hourly"},
        },
    }


def test_every_crd_is_served(api: ApiClient) -> None:
    from kubernetes import client

    served = {
        (group.name, version.version)
        for group in client.ApisApi(api).get_api_versions().groups
        for version in group.versions
    }
    expected = {
        ("nodecore.fluidos.eu", "v1alpha1"),
        ("advertisement.fluidos.eu", "v1alpha1"),
        ("reservation.fluidos.eu", "v1alpha1"),
        ("network.fluidos.eu", "v1alpha1"),
        ("offloading.liqo.io", "v1beta1"),
        ("capsule.clastix.io", "v1beta2"),
    }
    assert expected <= served
    kinds = {
        resource.kind
        for group, version in [("offloading.liqo.io", "v1beta1"), ("capsule.clastix.io", "v1beta2")]
        for resource in client.CustomObjectsApi(api).get_api_resources(group, version).resources
    }
    assert {"NamespaceOffloading", "VirtualNode", "Tenant"} <= kinds
    fluidos = {
        resource.kind
        for group in sorted({crd["spec"]["group"] for crd in fluidos_crds()})
        for resource in client.CustomObjectsApi(api).get_api_resources(group, "v1alpha1").resources
        if "/" not in resource.name  # not a subresource
    }
    assert fluidos == {crd["spec"]["names"]["kind"] for crd in fluidos_crds()}
    assert len(fluidos) == 11


def test_solver_create_get_patch(api: ApiClient, namespace: str) -> None:
    name = unique("solver")
    solvers(api).create(namespace, solver(name, "i-1"))

    assert solvers(api).get(namespace, name)["spec"]["intentID"] == "i-1"

    solvers(api).merge_patch(namespace, name, {"spec": {"reserveAndBuy": True}})
    patched = solvers(api).get(namespace, name)
    assert patched["spec"] == {"intentID": "i-1", "findCandidate": True, "reserveAndBuy": True}
    assert patched["metadata"]["generation"] == 2


def test_solver_schema_is_enforced(api: ApiClient, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    body = solver(unique("solver"), "i-1")
    del body["spec"]["intentID"]
    with pytest.raises(ApiException) as raised:
        solvers(api).create(namespace, body)
    assert raised.value.status == 422
    assert "spec.intentID" in str(raised.value.body)


def test_watch_sees_flavor_changes_in_order(api: ApiClient, namespace: str) -> None:
    start = flavors(api).list(namespace)["metadata"]["resourceVersion"]
    name = unique("flavor")
    flavors(api).create(namespace, flavor(name, 4))
    flavors(api).merge_patch(namespace, name, {"spec": {"availability": False}})
    flavors(api).delete(namespace, name)

    events: list[tuple[str, str, bool]] = []
    for kind, obj in flavors(api).watch(namespace, resource_version=start):
        events.append((kind, obj["metadata"]["name"], obj["spec"]["availability"]))
        if kind == "DELETED":
            break
    assert events == [("ADDED", name, True), ("MODIFIED", name, False), ("DELETED", name, False)]


def test_status_changes_only_through_the_status_subresource(api: ApiClient, namespace: str) -> None:
    name = unique("solver")
    body = solver(name, "i-2")
    body["status"] = {"solverPhase": {"phase": "Solved"}}
    created = solvers(api).create(namespace, body)
    assert "status" not in created, "create ignores status when the status subresource is on"

    created["status"] = {"solverPhase": {"phase": "Solved"}}
    created["spec"]["findCandidate"] = False
    updated = solvers(api).replace(namespace, created)
    assert updated["spec"]["findCandidate"] is False
    assert "status" not in updated, "a plain update ignores status"

    updated["status"] = {"solverPhase": {"phase": "Running"}, "findCandidate": "Solved"}
    updated["spec"]["intentID"] = "changed-through-status"
    via_status = solvers(api).replace_status(namespace, updated)
    assert via_status["status"] == {"solverPhase": {"phase": "Running"}, "findCandidate": "Solved"}
    assert via_status["spec"]["intentID"] == "i-2", "the status endpoint ignores spec"

    stored = solvers(api).get(namespace, name)
    assert stored["status"]["solverPhase"] == {"phase": "Running"}
    assert stored["spec"] == {"intentID": "i-2", "findCandidate": False, "reserveAndBuy": False}
    assert stored["metadata"]["generation"] == 2, "status updates do not bump generation"
