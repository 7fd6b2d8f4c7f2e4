"""The normalised offer: one provider node's GPUs, comparable across providers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


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
