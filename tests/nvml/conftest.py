"""Fixtures for the NVML probe tests: the FAKE libnvidia-ml.so.1 built from
tests/fakes/nvml/fake_nvml.c, and a runner that drives an NvmlProbe in a fresh
Python process against it (NVML is loaded once per process)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.nvml_profiles import BuildError, build_fake_nvml

ROOT = Path(__file__).resolve().parents[2]

RunProbe = Callable[..., Any]


def _unavailable(reason: str) -> None:
    hint = f"{reason} (the NVML probe tests need gcc to build the fake NVML library)"
    if os.environ.get("CI") == "true":
        pytest.fail(hint)
    pytest.skip(hint)


@pytest.fixture(scope="session")
def fake_nvml_dir() -> Path:
    """The folder holding the fake libnvidia-ml.so.1, built when missing."""
    if importlib.util.find_spec("pynvml") is None:
        _unavailable("nvidia-ml-py is not installed")
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        _unavailable("no C compiler found")
    try:
        return build_fake_nvml()
    except BuildError as error:
        _unavailable(str(error))
        raise


@pytest.fixture
def run_probe(fake_nvml_dir: Path, tmp_path: Path) -> RunProbe:
    """run_probe(config, *steps, library=True) -> the runner's JSON output."""

    def run(config: Path, *steps: str, library: bool = True) -> Any:
        env = dict(os.environ)
        env["FLARE_FAKE_NVML_CONFIG"] = str(config)
        if library:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(fake_nvml_dir), env.get("LD_LIBRARY_PATH", "")) if p
            )
        else:
            # An empty folder first, and no fake anywhere on the search path.
            empty = tmp_path / "no-nvml"
            empty.mkdir(exist_ok=True)
            env["LD_LIBRARY_PATH"] = str(empty)
        done = subprocess.run(
            [sys.executable, "-m", "tests.nvml.runner", *steps],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run
