"""The agent's pass over Kubernetes: the node's ResourceSlices read, the Node's
annotations and labels, then the node's Flavor (when the configuration names the
FLUIDOS identity)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.config import ProviderConfig
from agent.kube.flavor import FlavorWriter
from agent.kube.node_writer import NodeWriter, dra_published
from agent.kube.resource_slices import SliceReader
from agent.probe.base import Inventory

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)


def kube_sync(
    api_client: ApiClient, node_name: str, config: ProviderConfig
) -> Callable[[Inventory], None]:
    nodes = NodeWriter(api_client, node_name)
    slices = SliceReader(api_client, node_name)
    flavors = FlavorWriter(api_client, node_name)
    missing = config.fluidos_problems()
    if missing:
        log.warning("no FLUIDOS Flavor will be published: %s", "; ".join(missing))

    def sync(inventory: Inventory) -> None:
        devices = slices.read()
        result = nodes.sync(inventory, config, devices)
        for problem in result.problems:
            log.warning("node annotations: %s", problem)
        if not missing:
            flavors.sync(inventory, config, dra_published(devices or (), inventory))

    return sync


def api_client(kubeconfig: str | None) -> ApiClient:
    """In the cluster, the pod's ServiceAccount; otherwise the kubeconfig."""
    from kubernetes import client, config

    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    made: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig
    )
    return made
