"""The pure helpers of the harness, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.crds import is_established
from tests.harness.gpu_nodes import AMD_GPU, NVIDIA_GPU, gpu_node, node_schedulable
from tests.harness.plugin import running_in_ci
from tests.harness.ports import free_ports, port_is_free
from tests.harness.tools import REPO_ROOT, Tools, missing_tools, tools_root

pytestmark = pytest.mark.k8s


def test_tools_root_defaults_to_build_dir_and_follows_override() -> None:
    assert tools_root({}) == REPO_ROOT / ".build" / "k8s"
    assert tools_root({"FLARE_K8S_DIR": "/opt/k8s"}) == Path("/opt/k8s")


def test_missing_tools_names_what_is_absent(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "etcd").chmod(0o755)
    (tmp_path / "bin" / "kwok").write_text("not executable")
    missing = missing_tools(Tools(tmp_path))
    assert missing == [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "kustomize",
        "crds",
    ]


def test_ci_is_recognised_only_when_true() -> None:
    assert running_in_ci({"CI": "true"})
    assert not running_in_ci({})
    assert not running_in_ci({"CI": "false"})


def test_free_ports_are_distinct_and_never_repeated() -> None:
    first, second = free_ports(5), free_ports(5)
    assert len(set(first + second)) == 10
    assert all(port_is_free(port) for port in first + second)


def test_gpu_node_offers_its_gpus_as_capacity_and_allocatable() -> None:
    node = gpu_node("n1", {NVIDIA_GPU: 8, AMD_GPU: 2}, labels={"zone": "a"})
    for field in ("capacity", "allocatable"):
        assert node["status"][field][NVIDIA_GPU] == "8"
        assert node["status"][field][AMD_GPU] == "2"
    assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert node["metadata"]["labels"]["zone"] == "a"


def test_node_is_schedulable_only_when_ready_and_untainted() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    tainted = {
        **ready,
        "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
    }
    prefer = {**ready, "spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}
    assert node_schedulable(ready)
    assert node_schedulable(prefer)
    assert not node_schedulable(not_ready)
    assert not node_schedulable(tainted)
    assert not node_schedulable({})


def test_crd_is_established_only_with_a_true_established_condition() -> None:
    assert is_established({"status": {"conditions": [{"type": "Established", "status": "True"}]}})
    assert not is_established(
        {"status": {"conditions": [{"type": "NamesAccepted", "status": "True"}]}}
    )
    assert not is_established({"status": None})
