"""The control plane's manifests under deploy/base/controlplane, read without a cluster: its
RBAC grants exactly what the control plane uses, every variable it is given is one that
flare-controlplane reads, and the Deployment, Service, budget and probes agree with each
other. tests/deploy/test_controlplane_manifests.py applies them to a real API server."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.manifests import (
    AGENT,
    CLUSTER,
    CONTROLPLANE,
    CONTROLPLANE_NEEDS,
    EVERY_NAMESPACE,
    kustomization,
    named,
)
from tests.harness.tools import REPO_ROOT

NAME = "flare-controlplane"
OBJECTS = kustomization(CONTROLPLANE)
DEPLOYMENT = named(OBJECTS, "Deployment", NAME)
POD = DEPLOYMENT["spec"]["template"]["spec"]
[CONTAINER] = POD["containers"]
CONFIG = named(OBJECTS, "ConfigMap", NAME)


def granted() -> set[tuple[str, str, str, str, str]]:
    """(scope, group, resource, verb, name) for every rule bound to the ServiceAccount; the
    scope is a Role's namespace, or "*" for the ClusterRole."""
    subject = {"kind": "ServiceAccount", "name": NAME, "namespace": "flare-system"}
    out: set[tuple[str, str, str, str, str]] = set()
    for binding in OBJECTS:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        assert binding["subjects"] == [subject]
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = named(OBJECTS, ref["kind"], ref["name"], namespace)
        scope = namespace or "*"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames", [""]):
                            out.add((scope, group, resource, verb, name))
    return out


def needed() -> set[tuple[str, str, str, str, str]]:
    out = set()
    for grant in CONTROLPLANE_NEEDS:
        for namespace, group, resource, verb, name in grant.accesses():
            scope = "*" if namespace in (CLUSTER, EVERY_NAMESPACE) else namespace
            out.add((scope, group, resource, verb, name))
    return out


def test_rbac_grants_exactly_what_the_control_plane_uses() -> None:
    have, want = granted(), needed()
    assert not want - have, f"missing: {sorted(want - have)}"
    assert not have - want, f"more than needed: {sorted(have - want)}"
    assert not any("*" in access[1:] for access in have), "no wildcards"


def test_every_role_lives_where_its_binding_is() -> None:
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in OBJECTS}
    assert ("Role", "flare-system", NAME) in roles
    assert ("Role", "fluidos", NAME) in roles  # FLUIDOS keeps its objects in `fluidos`
    assert ("ClusterRole", None, NAME) in roles
    assert POD["serviceAccountName"] == NAME


def variables() -> set[str]:
    """Every environment variable the Deployment sets, directly or from the ConfigMap."""
    names = {entry["name"] for entry in CONTAINER["env"]}
    [source] = CONTAINER["envFrom"]
    assert source["configMapRef"]["name"] == NAME
    return names | set(CONFIG["data"])


def test_every_variable_is_one_the_control_plane_reads() -> None:
    read = set(
        re.findall(r"\bFLARE_[A-Z_]+\b", (REPO_ROOT / "controlplane" / "main.py").read_text())
    )
    assert variables() <= read, f"not read by controlplane/main.py: {variables() - read}"
    # Cluster mode, as the runtime contract names it.
    assert {"FLARE_STORE", "FLARE_FEDERATION", "FLARE_NAMESPACE", "FLARE_IDENTITY"} <= read
    assert "FLARE_KUBECONFIG" not in variables(), "in the cluster it uses its ServiceAccount"


def test_cluster_mode_and_the_pods_own_identity() -> None:
    assert CONFIG["data"]["FLARE_STORE"] == "kubernetes"
    assert CONFIG["data"]["FLARE_FEDERATION"] == "fluidos"
    assert CONFIG["data"]["FLARE_LOG_FORMAT"] == "json"
    assert {"FLARE_FLUIDOS_NODE_ID", "FLARE_FLUIDOS_DOMAIN", "FLARE_FLUIDOS_IP"} <= set(
        CONFIG["data"]
    )
    from_pod = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in CONTAINER["env"]
        if "valueFrom" in e
    }
    assert from_pod == {"FLARE_NAMESPACE": "metadata.namespace", "FLARE_IDENTITY": "metadata.name"}


def env(name: str) -> str:
    [value] = [e["value"] for e in CONTAINER["env"] if e["name"] == name]
    return str(value)


def port(name: str) -> int:
    [number] = [p["containerPort"] for p in CONTAINER["ports"] if p["name"] == name]
    return int(number)


def test_the_listeners_are_the_ports_the_probes_and_the_service_use() -> None:
    assert env("FLARE_LISTEN") == f"0.0.0.0:{port('grpc')}" == "0.0.0.0:50051"
    assert env("FLARE_HTTP_LISTEN") == f"0.0.0.0:{port('http')}" == "0.0.0.0:8080"
    assert env("FLARE_METRICS_LISTEN") == f"0.0.0.0:{port('metrics')}" == "0.0.0.0:9401"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert CONTAINER[probe]["grpc"] == {"port": 50051}, probe
    service = named(OBJECTS, "Service", NAME)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {name: p["targetPort"] for name, p in ports.items()} == {
        "grpc": "grpc",
        "http": "http",
        "metrics": "metrics",
    }
    assert ports["grpc"]["port"] == 50051
    assert ports["grpc"]["appProtocol"] == "grpc"


def test_the_agents_default_address_is_the_service() -> None:
    [agent_config] = [o for o in kustomization(AGENT) if o["kind"] == "ConfigMap"]
    assert agent_config["data"]["FLARE_CONTROL_PLANE"] == f"{NAME}.flare-system.svc:50051"


def test_service_and_budget_select_the_pods() -> None:
    labels: dict[str, Any] = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert named(OBJECTS, "Service", NAME)["spec"]["selector"] == selector
    budget = named(OBJECTS, "PodDisruptionBudget", NAME)
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    assert DEPLOYMENT["spec"]["replicas"] == 2
    [term] = POD["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector


def test_the_pod_is_locked_down() -> None:
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert POD["securityContext"]["runAsUser"] == 65532
    assert POD["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert CONTAINER["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "cpu" not in CONTAINER["resources"]["limits"]
    assert CONTAINER["resources"]["limits"]["memory"] == "1Gi"
    # Longer than the server's 5 s grace for calls in flight.
    assert POD["terminationGracePeriodSeconds"] > 5


def test_the_writable_paths_are_empty_dirs() -> None:
    volumes = {v["name"]: v for v in POD["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in CONTAINER["volumeMounts"]}
    assert set(mounts) == {env("FLARE_DATA_DIR"), "/tmp"}
    assert all("emptyDir" in volumes[name] for name in mounts.values())
