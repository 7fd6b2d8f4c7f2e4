"""Choosing a probe backend: `auto` tries NVML, then amdsmi."""

from __future__ import annotations

from agent.probe.base import Probe, ProbeError
from agent.probe.sim import SimProbe

BACKENDS = ("auto", "nvml", "amdsmi", "sim")


def open_probe(
    backend: str, *, sim_model: str = "nvidia-h100", sim_count: int = 8, sim_pattern: str = "steady"
) -> Probe:
    """The probe for `backend`. Raises ProbeError saying what is missing."""
    if backend == "sim":
        return SimProbe(sim_model, sim_count, sim_pattern)
    if backend in ("nvml", "auto"):
        try:
            from agent.probe.nvml import NvmlProbe

            return NvmlProbe()
        except (ImportError, ProbeError) as error:
            if backend == "nvml":
                raise ProbeError(f"the nvml backend cannot start: {error}") from error
            nvml_problem = str(error)
    if backend in ("amdsmi", "auto"):
        try:
            from agent.probe.amdsmi import AmdSmiProbe

            return AmdSmiProbe()
        except ProbeError as error:
            if backend == "amdsmi":
                raise ProbeError(f"the amdsmi backend cannot start: {error}") from error
            raise ProbeError(
                f"no GPU backend works here (nvml: {nvml_problem}; amdsmi: {error}); "
                "use --backend sim for simulated GPUs"
            ) from error
    raise ProbeError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
