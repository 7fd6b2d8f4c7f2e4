"""The control plane's ServiceAccount with exactly the RBAC of deploy/, on the consumer
cluster of the FLUIDOS world: tests run the control plane as it, so that a call the RBAC
does not allow fails there as it would in a real cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import CONTROLPLANE, NAMESPACE_BASE, apply_all, kustomization
from tests.federation.world import World
from tests.harness.waiting import wait_until

NAMESPACE = "flare-system"  # the one deploy/'s RBAC names


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def as_service_account(world: World, root: Path) -> Path:
    """Installs the control plane's namespace and RBAC from deploy/ on the consumer
    cluster and returns a kubeconfig with a token of its ServiceAccount."""
    from kubernetes import client

    api = world.consumer
    apply_all(api, [*kustomization(NAMESPACE_BASE), *documents(CONTROLPLANE / "rbac.yaml")])
    minted: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        "flare-controlplane",
        NAMESPACE,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    cluster = world.federation.consumer
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "consumer",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.workdir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": "flare-controlplane", "user": {"token": minted.status.token}}],
        "contexts": [
            {"name": "consumer", "context": {"cluster": "consumer", "user": "flare-controlplane"}}
        ],
        "current-context": "consumer",
    }
    path = root / "controlplane.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def remove_service_account(world: World) -> None:
    """Deletes the namespace (the next test installs it again) and waits until it is gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(world.consumer)
    core.delete_namespace(NAMESPACE)

    def gone() -> bool:
        try:
            core.read_namespace(NAMESPACE)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_until(gone, timeout=60, what=f"namespace {NAMESPACE} deleted")
