"""Profiles and configuration files of the FAKE NVML library
(tests/fakes/nvml/fake_nvml.c), and building it, for the NVML tests and the
agent benchmark."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "fake-nvml.sh"

# What an H100 SXM5 and an A100 SXM4 answer, as NVML reports them (memory in MiB as the
# driver reports the 80 GB boards; architecture is NVML's enum value).
H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "memory_mib": 81559,
    "cc": "9.0",
    "architecture": 9,
    "nvlinks": 18,
    "numa": 0,
    "power_limit_w": 700,
    "utilization": 40,
    "memory_utilization": 20,
    "memory_used_mib": 1024,
    "temperature": 45,
    "power_w": 350,
    "sm_clock": 1980,
}
A100 = {
    "name": "NVIDIA A100-SXM4-80GB",
    "memory_mib": 81920,
    "cc": "8.0",
    "architecture": 7,
    "nvlinks": 0,
    "numa": 0,
    "power_limit_w": 400,
    "utilization": 70,
    "temperature": 50,
    "power_w": 250,
}


class BuildError(RuntimeError):
    """The fake library could not be built; the message says why."""


def build_fake_nvml() -> Path:
    """The folder holding the fake libnvidia-ml.so.1 (built when missing)."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise BuildError(f"building the fake NVML library failed: {done.stderr.strip()}")
    folder = Path(done.stdout.strip().splitlines()[-1])
    if not (folder / "libnvidia-ml.so.1").is_file():
        raise BuildError(f"no libnvidia-ml.so.1 in {folder}")
    return folder


def write_config(path: Path, gpus: int, defaults: dict[str, object], **per_gpu: object) -> Path:
    """A fake NVML config: `defaults` for every GPU, then `gpu<i>_<field>=value`."""
    lines = [f"gpus = {gpus}", "driver_version = 550.54.15", "cuda_driver_version = 12040"]
    lines += [f"gpu.*.{key} = {value}" for key, value in defaults.items()]
    for key, value in per_gpu.items():
        index, _, name = key.removeprefix("gpu").partition("_")
        lines.append(f"gpu.{int(index)}.{name} = {value}")
    path.write_text("\n".join(lines) + "\n")
    return path
