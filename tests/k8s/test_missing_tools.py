"""Without the binaries the fixtures skip, except under CI=true, where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.tools import REPO_ROOT

pytestmark = pytest.mark.k8s

NEEDS_CLUSTER = """
def test_needs_a_cluster(k8s_bin_dir):
    assert k8s_bin_dir.is_dir()
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_cluster.py").write_text(NEEDS_CLUSTER)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env |= {"FLARE_K8S_DIR": str(tmp_path / "nothing-built"), "PYTHONPATH": str(REPO_ROOT)}
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-p", "tests.harness.plugin", "-rs", "-q"]
    command += ["-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )


def test_missing_binaries_skip_with_a_hint(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "scripts/k8s-tools.sh" in result.stdout


def test_missing_binaries_fail_under_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "scripts/k8s-tools.sh" in result.stdout
