"""The agent's manifests under deploy/, rendered by kustomize from the provider overlay and
applied with server-side apply to a real API server: the DaemonSet lands on GPU nodes only,
and the admission policy is enforced by the API server itself — the agent's identity may patch
FLARE's keys on its own Node and nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.deploy.manifests import PROVIDER, apply_all, kustomize_build, named, unique
from tests.harness.cluster import Cluster
from tests.harness.gpu_nodes import NVIDIA_GPU, create_gpu_node
from tests.harness.tools import Tools

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

AGENT_USER = "system:serviceaccount:flare-system:flare-agent"
NODE_NAME_EXTRA = "authentication.kubernetes.io%2fnode-name"  # percent-encoded "/"


@pytest.fixture(scope="module")
def provider_objects(k8s_tools: Tools) -> list[dict[str, Any]]:
    return kustomize_build(k8s_tools, PROVIDER)


@pytest.fixture(scope="module")
def agent_installed(
    k8s_cluster: Cluster,
    k8s_api_client: Callable[[Cluster], ApiClient],
    provider_objects: list[dict[str, Any]],
) -> Iterator[ApiClient]:
    api = k8s_api_client(k8s_cluster)
    apply_all(api, provider_objects)
    yield api


def agent_client(cluster: Cluster, node: str | None) -> ApiClient:
    """A client acting as the agent's ServiceAccount, its token bound to `node`."""
    api = cluster.api_client()
    headers = {"Impersonate-User": AGENT_USER, "Impersonate-Group": "system:serviceaccounts"}
    if node is not None:
        headers[f"Impersonate-Extra-{NODE_NAME_EXTRA}"] = node
    api.default_headers.update(headers)
    return api


def patch(api: ApiClient, node: str, body: dict[str, Any]) -> int:
    """Merge-patches a Node; the HTTP status (200, or the refusal's)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).patch_node(node, body)
    except ApiException as error:
        return int(error.status)
    return 200


def annotate(key: str, value: str = "1") -> dict[str, Any]:
    return {"metadata": {"annotations": {key: value}}}


def test_every_manifest_applies_to_a_real_api_server(
    agent_installed: ApiClient, provider_objects: list[dict[str, Any]]
) -> None:
    from kubernetes import client

    kinds = {o["kind"] for o in provider_objects}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "DaemonSet"} <= kinds
    deployments = [o["metadata"]["name"] for o in provider_objects if o["kind"] == "Deployment"]
    assert deployments == ["flare-relay"], "the provider overlay has no control plane"
    apps: Any = client.AppsV1Api(agent_installed)
    daemonset = apps.read_namespaced_daemon_set("flare-agent", "flare-system")
    [container] = daemonset.spec.template.spec.containers
    assert container.resources.requests == {"cpu": "10m", "memory": "64Mi"}
    assert container.security_context.read_only_root_filesystem is True
    assert daemonset.spec.template.spec.security_context.run_as_non_root is True
    # The overlay's patch replaced the provider's facts and kept the base's other keys.
    core: Any = client.CoreV1Api(agent_installed)
    config = core.read_namespaced_config_map("flare-agent", "flare-system").data
    patch = named(provider_objects, "ConfigMap", "flare-agent")["data"]
    assert config["FLARE_PROVIDER"] == patch["FLARE_PROVIDER"] != "example-provider"
    assert config["FLARE_TOKEN_FILE"] == "/var/run/flare/token"


def test_agents_stream_through_the_relays_which_reach_the_control_plane(
    agent_installed: ApiClient, provider_objects: list[dict[str, Any]]
) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(agent_installed)
    apps: Any = client.AppsV1Api(agent_installed)
    agent_config = core.read_namespaced_config_map("flare-agent", "flare-system").data
    relay_config = core.read_namespaced_config_map("flare-relay", "flare-system").data
    service = core.read_namespaced_service("flare-relay", "flare-system")
    [port] = service.spec.ports
    assert agent_config["FLARE_CONTROL_PLANE"] == f"flare-relay.flare-system.svc:{port.port}"
    assert relay_config["FLARE_RELAY_LISTEN"].endswith(f":{port.port}")
    assert relay_config["FLARE_CONTROL_PLANE"] == "flare.consumer.example:50051"  # the overlay's
    assert relay_config["FLARE_TOKEN_FILE"] == agent_config["FLARE_TOKEN_FILE"]
    relay = apps.read_namespaced_deployment("flare-relay", "flare-system")
    assert relay.spec.replicas == 2
    assert service.spec.selector == relay.spec.selector.match_labels
    [container] = relay.spec.template.spec.containers
    assert container.command == ["flare-relay"]
    assert container.ports[0].container_port == port.port
    assert container.security_context.read_only_root_filesystem is True
    [volume] = relay.spec.template.spec.volumes
    assert volume.secret.secret_name == "flare-agent-token"


def test_the_daemonset_runs_on_gpu_nodes_only(
    agent_installed: ApiClient, k8s_cluster: Cluster
) -> None:
    from kubernetes import client

    gpu = unique("gpu-node")
    plain = unique("cpu-node")
    create_gpu_node(
        agent_installed, gpu, {NVIDIA_GPU: 8}, labels={"nvidia.com/gpu.present": "true"}
    )
    create_gpu_node(agent_installed, plain, {})
    core: Any = client.CoreV1Api(agent_installed)
    try:
        deadline = time.monotonic() + 60
        while True:
            pods = core.list_namespaced_pod(
                "flare-system", label_selector="app.kubernetes.io/name=flare-agent"
            ).items
            on = {p.spec.node_name for p in pods}
            if gpu in on:
                break
            assert time.monotonic() < deadline, f"no agent pod on {gpu}; pods on {on}"
            time.sleep(0.2)
        assert plain not in on
    finally:
        core.delete_node(gpu)
        core.delete_node(plain)


def test_the_agent_may_change_only_flares_keys_on_its_own_node(
    agent_installed: ApiClient, k8s_cluster: Cluster
) -> None:
    own = unique("own-node")
    other = unique("other-node")
    for name in (own, other):
        create_gpu_node(agent_installed, name, {NVIDIA_GPU: 1})
    agent = agent_client(k8s_cluster, own)
    unbound = agent_client(k8s_cluster, None)
    try:
        # The policy takes a moment to be enforced after it is created.
        deadline = time.monotonic() + 30
        while patch(agent, other, annotate("gpu.fluidos.eu/count", "8")) != 403:
            assert time.monotonic() < deadline, "the admission policy is not enforced"
            time.sleep(0.2)
        assert patch(agent, own, annotate("gpu.fluidos.eu/count", "8")) == 200
        assert patch(agent, own, {"metadata": {"labels": {"node.fluidos.eu/gpu": "true"}}}) == 200
        assert patch(agent, own, annotate("example.com/owner", "me")) == 403
        assert patch(agent, own, {"metadata": {"labels": {"kubernetes.io/os": "plan9"}}}) == 403
        assert patch(agent, own, {"spec": {"unschedulable": True}}) == 403
        assert patch(unbound, own, annotate("gpu.fluidos.eu/count", "8")) == 403
        # The admin (not the agent) is not bound by the policy.
        assert patch(agent_installed, own, annotate("example.com/owner", "ops")) == 200
    finally:
        from kubernetes import client

        for name in (own, other):
            client.CoreV1Api(agent_installed).delete_node(name)
        agent.close()  # type: ignore[no-untyped-call]
        unbound.close()  # type: ignore[no-untyped-call]


def test_the_real_agent_code_works_under_that_policy(
    agent_installed: ApiClient, k8s_cluster: Cluster
) -> None:
    from decimal import Decimal

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from agent.config import ProviderConfig
    from agent.kube.node_writer import NodeWriter
    from agent.kube.resource_slices import SliceReader
    from agent.probe.sim import SimProbe
    from flare.money import Money

    own = unique("own-node")
    other = unique("other-node")
    for name in (own, other):
        create_gpu_node(agent_installed, name, {NVIDIA_GPU: 4})
    config = ProviderConfig(
        provider_name="acme", region="eu-west-1", hourly_rate=Money(Decimal("2"), "EUR")
    )
    inventory = SimProbe("h100", 4).inventory()
    agent = agent_client(k8s_cluster, own)
    try:
        result = NodeWriter(agent, own).sync(inventory, config)
        assert result.wrote
        # The DRA cross-check may read the node's ResourceSlices (None: it may not).
        assert SliceReader(agent, own).read() == []
        core: Any = client.CoreV1Api(agent_installed)
        annotations = core.read_node(own).metadata.annotations
        assert annotations["gpu.fluidos.eu/count"] == "4"
        with pytest.raises(ApiException) as refused:
            NodeWriter(agent, other).sync(inventory, config)
        assert refused.value.status == 403
    finally:
        for name in (own, other):
            client.CoreV1Api(agent_installed).delete_node(name)
        agent.close()  # type: ignore[no-untyped-call]
