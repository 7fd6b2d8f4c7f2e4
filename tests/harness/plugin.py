"""pytest fixtures that give tests real Kubernetes API servers (see docs/harness.md).

Enable with `pytest_plugins = ["tests.harness.plugin"]` in tests/conftest.py. Without the
binaries from scripts/k8s-tools.sh the fixtures skip the test, except under CI=true, where
that is an error."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.cluster import Cluster
from tests.harness.federation import Federation
from tests.harness.tools import Tools, ToolsMissingError, find_tools

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FEDERATION_PROVIDERS = 3


def running_in_ci(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("CI", "").lower() == "true"


def _interrupt_on_sigterm() -> None:
    """Turns SIGTERM into KeyboardInterrupt, so that pytest still tears the clusters down when
    it is terminated (a CI time-out, say) instead of leaving their processes behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def k8s_tools() -> Tools:
    """The built binaries and CRDs; skips the test (fails it under CI=true) when missing."""
    try:
        tools = find_tools()
    except ToolsMissingError as error:
        if running_in_ci():
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))
    _interrupt_on_sigterm()
    return tools


@pytest.fixture(scope="session")
def k8s_bin_dir(k8s_tools: Tools) -> Path:
    return k8s_tools.bin_dir


@pytest.fixture(scope="session")
def k8s_cluster(k8s_tools: Tools) -> Iterator[Cluster]:
    """One cluster with the CRDs, kube-controller-manager, kube-scheduler and kwok."""
    with Cluster("single", k8s_tools) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def k8s_federation(k8s_tools: Tools) -> Iterator[Federation]:
    """A consumer and two provider clusters, each like `k8s_cluster`."""
    with Federation(k8s_tools, providers=FEDERATION_PROVIDERS) as federation:
        yield federation


@pytest.fixture(scope="session")
def k8s_api_client() -> Iterator[Callable[[Cluster], ApiClient]]:
    """Returns an admin `kubernetes.client.ApiClient` for a cluster, one per cluster, closed
    at the end of the session."""
    clients: list[tuple[Cluster, ApiClient]] = []

    def client_for(cluster: Cluster) -> ApiClient:
        for known, api_client in clients:
            if known is cluster:
                return api_client
        api_client = cluster.api_client()
        clients.append((cluster, api_client))
        return api_client

    yield client_for
    for _, api_client in clients:
        api_client.close()  # type: ignore[no-untyped-call]
