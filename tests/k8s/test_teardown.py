"""Stopping a cluster leaves nothing behind, whether it started or failed to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster, ClusterStartError, Options, scratch_root
from tests.harness.ports import port_is_free
from tests.harness.processes import group_alive
from tests.harness.tools import BINARIES, REPO_ROOT, Tools

pytestmark = pytest.mark.k8s


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stopped_cluster_leaves_no_process_port_or_directory(k8s_tools: Tools) -> None:
    cluster = Cluster("teardown", k8s_tools).start()
    pids, ports, workdir = cluster.pids(), cluster.ports.all(), cluster.workdir
    assert len(pids) == 5
    assert all(pid_exists(pid) for pid in pids)
    assert not any(port_is_free(port) for port in (cluster.ports.etcd_client, ports[2]))

    cluster.stop()

    assert not any(pid_exists(pid) or group_alive(pid) for pid in pids)
    assert all(port_is_free(port) for port in ports)
    assert not workdir.exists()
    assert cluster.pids() == []


def broken_tools(real: Tools, root: Path) -> Tools:
    """The real binaries, except a kube-apiserver that fails at once."""
    (root / "bin").mkdir()
    for name in BINARIES:
        (root / "bin" / name).symlink_to(real.binary(name))
    apiserver = root / "bin" / "kube-apiserver"
    apiserver.unlink()
    apiserver.write_text("#!/bin/sh\necho 'no storage for you' >&2\nexit 3\n")
    apiserver.chmod(0o755)
    (root / "crds").symlink_to(real.crd_dir)
    return Tools(root)


def test_failed_start_stops_what_it_started(k8s_tools: Tools, tmp_path: Path) -> None:
    before = set(scratch_root().glob("flare-k8s-broken-*"))
    cluster = Cluster("broken", broken_tools(k8s_tools, tmp_path), Options(workloads=False))
    with pytest.raises(ClusterStartError, match="no storage for you") as raised:
        cluster.start()
    assert "kube-apiserver" in str(raised.value)
    assert cluster.pids() == []
    assert set(scratch_root().glob("flare-k8s-broken-*")) == before


def test_harness_command_stops_on_sigterm(k8s_tools: Tools) -> None:
    env = {**os.environ, "FLARE_K8S_DIR": str(k8s_tools.root), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tests.harness", "--providers", "1", "--no-workloads"]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        kubeconfigs = [
            Path(line.split("=", 1)[1].strip()) for line in lines if "export KUBECONFIG=" in line
        ]
        assert len(kubeconfigs) == 2, "".join(lines)
        assert all(path.is_file() for path in kubeconfigs)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines) + rest
    assert rest.strip().endswith("stopped")
    assert not any(path.parent.exists() for path in kubeconfigs)
