"""The normalised offer: one provider node's GPUs, comparable across providers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flare.gpus import GpuSpec


@dataclass(frozen=True, slots=True)
class Offer:
    name: str  # "providers/{provider}/offers/{offer}"
    provider: str
    cluster: str
    node: str
    gpu_model: str  # normalised, "nvidia-h100"
    gpu_vendor: str
    gpu_architecture: str
    gpu_memory_gib: float  # per GPU
    compute_capability: str
    tier: str
    interconnect: str
    topology: str
    fp32_tflops: float  # per GPU
    fp16_tflops: float  # per GPU, dense tensor
    tdp_watts: int  # per GPU
    gpus_total: int
    gpus_free: int
    region: str
    country: str
    continent: str
    zone: str
    price_per_gpu_hour: Decimal
    currency: str
    preemptible: bool
    latency_ms: int
    availability: float  # percent
    carbon_intensity_g_per_kwh: float
    healthy: bool = True
    shared: bool = False
    sharing_strategy: str = "none"
    multi_instance: bool = False


def gpu_facts(spec: GpuSpec, interconnect: str) -> dict[str, Any]:
    """The offer fields the GPU table fixes for a model on an interconnect."""
    fp32, fp16, tdp = spec.figures(interconnect)
    return {
        "gpu_model": spec.model,
        "gpu_vendor": spec.vendor,
        "gpu_architecture": spec.architecture,
        "compute_capability": spec.compute_capability,
        "interconnect": interconnect,
        "fp32_tflops": fp32,
        "fp16_tflops": fp16,
        "tdp_watts": tdp,
    }
