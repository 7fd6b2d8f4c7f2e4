"""An intent's needs in FLUIDOS's words: the Solver's K8Slice selector and the
Reservation's K8Slice configuration. Pure functions.

Upstream FLUIDOS filters a K8Slice on cpu, memory, pods and storage
(`{name: Match|Range, data: {...}}`); the GPU fork adds `gpuFilters`, a list of
`{field, filter, data}` over the Flavor's `characteristics.gpu`. The earlier
FLARE translated GPU needs wrongly: it asked for exactly `count` GPUs (a node
with more was excluded), matched strings such as the tier with a quantity
selector (the fork fails to parse them and drops the filter), and dropped
location and price. Here each need keeps its meaning: the count and every
bound are minimums or maximums, strings are matched as strings, and a boolean
is sent only when the intent states it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from controlplane.placement.requirements import GIB, Requirements
from flare.quantity import format_bytes_gi


def _total_gi(per_gpu_gib: float, count: int) -> str:
    return format_bytes_gi(Decimal(repr(per_gpu_gib)) * GIB * count)


def _string(field: str, value: str) -> dict[str, Any]:
    return {"field": field, "filter": "StringFilter", "data": {"value": value}}


def _range(field: str, *, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if low is not None:
        data["min"] = low
    if high is not None:
        data["max"] = high
    return {"field": field, "filter": "NumberRangeFilter", "data": data}


def gpu_filters(needs: Requirements) -> list[dict[str, Any]]:
    """The GPU fork's gpuFilters for `needs` (empty when the intent wants no GPU)."""
    if needs.gpu_count <= 0:
        return []
    found: list[dict[str, Any]] = [_range("count", low=needs.gpu_count)]
    for field, value in (
        ("model", needs.gpu_model),
        ("vendor", needs.vendor),
        ("tier", needs.tier),
        ("architecture", needs.architecture),
        ("interconnect", needs.interconnect),
        ("topology", needs.topology),
        ("sharing_strategy", needs.sharing_strategy),
    ):
        if value:
            found.append(_string(field, value))
    if needs.min_memory_gib or needs.max_memory_gib:
        # The Flavor's gpu.memory is the node's total: the per-GPU bounds times the count.
        data = {
            bound: _total_gi(gib, needs.gpu_count)
            for bound, gib in (("min", needs.min_memory_gib), ("max", needs.max_memory_gib))
            if gib
        }
        found.append({"field": "memory", "filter": "ResourceRangeSelector", "data": data})
    if needs.min_compute_capability:
        found.append(_range("compute_capability", low=needs.min_compute_capability))
    if needs.min_fp32_tflops:
        found.append(_range("fp32_tflops", low=needs.min_fp32_tflops))
    for field, flag in (("shared", needs.shared), ("multi_instance", needs.multi_instance)):
        if flag is not None:
            found.append({"field": field, "filter": "BooleanFilter", "data": flag})
    if needs.preemptible is False:
        found.append({"field": "pre_emptible", "filter": "BooleanFilter", "data": False})
    if needs.max_latency_ms:
        found.append(_range("network_latency_ms", high=needs.max_latency_ms))
    return found


def k8slice_selector(needs: Requirements, *, cpu: str = "", memory: str = "") -> dict[str, Any]:
    """The Solver's `spec.selector` for a K8Slice with `needs`; `cpu` and `memory` are the
    workload's requests as quantities ("" when it states none)."""
    filters: dict[str, Any] = {}
    if cpu:
        filters["cpuFilter"] = {"name": "Range", "data": {"min": cpu}}
    if memory:
        filters["memoryFilter"] = {"name": "Range", "data": {"min": memory}}
    gpu = gpu_filters(needs)
    if gpu:
        filters["gpuFilters"] = gpu
    return {"flavorType": "K8Slice", "filters": filters}


def k8slice_configuration(
    *, cpu: str, memory: str, gpu_model: str, gpu_count: int, gpu_memory_gib: float, pods: int = 110
) -> dict[str, Any]:
    """The Reservation's `spec.configuration`: the slice of the Flavor being bought."""
    data: dict[str, Any] = {"cpu": cpu or "0", "memory": memory or "0", "pods": str(pods)}
    if gpu_count:
        data["gpu"] = {
            "model": gpu_model,
            "cores": str(gpu_count),
            "memory": _total_gi(gpu_memory_gib, gpu_count),
        }
    return {"type": "K8Slice", "data": data}
