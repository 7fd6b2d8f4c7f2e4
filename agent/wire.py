"""The probe's plain data as flare.v1 telemetry messages. Pure: what the agent
streams is decided here, nothing is sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from agent.config import ProviderConfig
from agent.probe.base import GpuInfo, Health, Inventory, Reading
from flare.v1 import common_pb2
from flare.v1 import telemetry_service_pb2 as pb

HEALTH = {
    Health.HEALTHY: pb.GPU_HEALTH_HEALTHY,
    Health.DEGRADED: pb.GPU_HEALTH_DEGRADED,
    Health.UNHEALTHY: pb.GPU_HEALTH_UNHEALTHY,
}


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def device(gpu: GpuInfo) -> pb.GpuDevice:
    message = pb.GpuDevice(
        index=gpu.index,
        uuid=gpu.uuid,
        raw_name=gpu.raw_name,
        model=gpu.model,
        vendor=gpu.vendor,
        architecture=gpu.architecture,
        memory_bytes=gpu.memory_bytes,
        compute_capability=gpu.compute_capability,
        pci_bus_id=gpu.pci_bus_id,
        numa_node=-1 if gpu.numa_node is None else gpu.numa_node,
        mig_enabled=gpu.mig_enabled,
        mig_instances=[
            pb.MigInstance(uuid=m.uuid, profile=m.profile, memory_bytes=m.memory_bytes)
            for m in gpu.mig_instances
        ],
    )
    if gpu.power_limit_watts is not None:
        message.power_limit_watts = gpu.power_limit_watts
    return message


def terms(config: ProviderConfig) -> pb.ProviderTerms:
    rate = config.hourly_rate
    message = pb.ProviderTerms(
        hourly_rate=common_pb2.Money(currency_code=rate.currency, amount=str(rate.amount)),
        preemptible=config.preemptible,
        country=config.country,
    )
    if config.availability_percent is not None:
        message.availability_percent = config.availability_percent
    if config.network_latency_ms is not None:
        message.network_latency_ms = config.network_latency_ms
    return message


def inventory(
    found: Inventory, config: ProviderConfig, node: str, moment: datetime
) -> pb.NodeInventory:
    return pb.NodeInventory(
        provider=config.provider_name,
        cluster=config.cluster_name,
        node=node,
        region=config.region,
        zone=config.zone,
        driver_version=found.driver_version,
        runtime_version=found.runtime_version,
        backend=found.backend,
        gpus=[device(gpu) for gpu in found.gpus],
        links=[
            pb.GpuLink(
                gpu_a=link.gpu_a,
                gpu_b=link.gpu_b,
                link_type=link.link_type,
                link_count=link.link_count,
            )
            for link in found.links
        ],
        time=_timestamp(moment),
        terms=terms(config),
    )


def sample(reading: Reading) -> pb.GpuSample:
    message = pb.GpuSample(
        uuid=reading.uuid,
        time=_timestamp(reading.time),
        health=HEALTH[reading.health],
        xid_counts=dict(reading.xid_counts),
        processes=[
            pb.ProcessUsage(pid=p.pid, memory_used_bytes=p.memory_used_bytes or 0)
            for p in reading.processes
        ],
    )
    # "Not supported" stays absent on the wire: only fields with a value are set.
    for name in _OPTIONAL_READINGS:
        value = getattr(reading, name)
        if value is not None:
            setattr(message, name, value)
    return message


_OPTIONAL_READINGS = (
    "gpu_utilization_percent",
    "memory_utilization_percent",
    "memory_used_bytes",
    "memory_free_bytes",
    "temperature_celsius",
    "power_watts",
    "sm_clock_mhz",
    "throttle_reasons",
    "ecc_corrected_total",
    "ecc_uncorrected_total",
)


def batch(readings: Iterable[Reading]) -> pb.SampleBatch:
    return pb.SampleBatch(samples=[sample(r) for r in readings])
