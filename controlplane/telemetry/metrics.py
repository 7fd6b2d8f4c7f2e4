"""Prometheus exposition of the federation's GPUs and of the control plane.

GPU series carry DCGM exporter's metric names and labels (`gpu`, `UUID`,
`pci_bus_id`, `device`, `modelName`, `Hostname`), so existing DCGM dashboards
work, plus FLARE's (`provider`, `cluster`, `node`, `intent`, `tenant`). DCGM
keeps only the last Xid; FLARE adds counters per Xid and per ECC kind, with
explicit zeros. A field the GPU does not support has no series (never 0).

A federation can hold tens of thousands of GPUs, so the GPU part is written
by hand in the text format: the event loop only takes a snapshot of
references (the hub replaces samples, it never mutates them) and the text is
formatted in a worker thread. Control-plane metrics use prometheus-client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.names import tenant_of
from controlplane.telemetry.hub import NodeState, TelemetryHub
from flare.v1 import telemetry_service_pb2 as pb
from flare.xids import WATCHED_XIDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MIB = 2**20
IntentOf = Callable[[str, str], str]

ValueOf = Callable[[pb.GpuSample], float | None]


def _reading(field: str, per: int = 1) -> ValueOf:
    """The sample's `field` (divided by `per`), or None when the GPU did not give it."""

    def value(sample: pb.GpuSample) -> float | None:
        if not sample.HasField(field):  # type: ignore[arg-type]
            return None
        reading: float = getattr(sample, field)
        return reading // per if per != 1 else reading

    return value


# (name, type, help, value of a sample or None when absent)
GPU_FIELDS: tuple[tuple[str, str, str, ValueOf], ...] = (
    (
        "DCGM_FI_DEV_GPU_UTIL",
        "gauge",
        "GPU utilization (in %).",
        _reading("gpu_utilization_percent"),
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        _reading("memory_utilization_percent"),
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        "gauge",
        "Framebuffer memory used (in MiB).",
        _reading("memory_used_bytes", _MIB),
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        "gauge",
        "Framebuffer memory free (in MiB).",
        _reading("memory_free_bytes", _MIB),
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", _reading("temperature_celsius")),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", _reading("power_watts")),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", _reading("sm_clock_mhz")),
    (
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "gauge",
        "Throttle reasons bit mask.",
        _reading("throttle_reasons"),
    ),
    (
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "counter",
        "Corrected (single-bit) ECC errors.",
        _reading("ecc_corrected_total"),
    ),
    (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "counter",
        "Uncorrected (double-bit) ECC errors.",
        _reading("ecc_uncorrected_total"),
    ),
    (
        "flare_gpu_healthy",
        "gauge",
        "1 when the agent reports the GPU usable, 0 when unhealthy.",
        lambda s: 0.0 if s.health == pb.GPU_HEALTH_UNHEALTHY else 1.0,
    ),
)
XID_NAME = "flare_gpu_xid_errors_total"
LAST_XID_NAME = "DCGM_FI_DEV_XID_ERRORS"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class _Row:
    labels: str  # the rendered label set, without braces
    sample: pb.GpuSample


def _labels(state: NodeState, gpu: pb.GpuDevice, intent: str) -> str:
    inventory = state.inventory
    pairs = (
        ("gpu", str(gpu.index)),
        ("UUID", gpu.uuid),
        ("pci_bus_id", gpu.pci_bus_id),
        ("device", f"{'nvidia' if gpu.vendor == 'nvidia' else 'card'}{gpu.index}"),
        ("modelName", gpu.raw_name),
        ("Hostname", inventory.node),
        ("provider", inventory.provider),
        ("cluster", inventory.cluster or inventory.provider),
        ("node", inventory.node),
        ("intent", intent),
        ("tenant", tenant_of(intent) if intent else ""),
    )
    return ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)


def snapshot(hub: TelemetryHub, intent_of: IntentOf) -> list[_Row]:
    """References to the latest sample of every GPU that has one (cheap; in the loop)."""
    rows = []
    for state in hub.nodes.values():
        if state.stale:
            continue  # no reading is current; flare_agent_stale says so
        for gpu in state.inventory.gpus:
            sample = state.latest.get(gpu.uuid)
            if sample is not None:
                rows.append(_Row(_labels(state, gpu, intent_of(state.key, gpu.uuid)), sample))
    return rows


def render_gpus(rows: Iterable[_Row]) -> str:
    """The text exposition of the GPU series (pure; run in a thread)."""
    rows = list(rows)
    out: list[str] = []
    for name, kind, text, value_of in GPU_FIELDS:
        out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
        for row in rows:
            value = value_of(row.sample)
            if value is not None:
                out.append(f"{name}{{{row.labels}}} {value}\n")
    out.append(
        f"# HELP {XID_NAME} Xid errors seen since the agent started, by Xid "
        f"(the watched ones with explicit zeros).\n# TYPE {XID_NAME} counter\n"
    )
    last: list[str] = []
    for row in rows:
        counts = dict.fromkeys(WATCHED_XIDS, 0)
        counts.update(row.sample.xid_counts)
        for xid in sorted(counts):
            out.append(f'{XID_NAME}{{{row.labels},xid="{xid}"}} {counts[xid]}\n')
        seen = [xid for xid, count in counts.items() if count]
        last.append(f"{LAST_XID_NAME}{{{row.labels}}} {max(seen) if seen else 0}\n")
    out.append(
        f"# HELP {LAST_XID_NAME} Highest Xid seen (0: none), as DCGM's last-Xid gauge.\n"
        f"# TYPE {LAST_XID_NAME} gauge\n"
    )
    out += last
    return "".join(out)


Figures = dict[str, float | dict[str, float]]

# name -> (kind, label of a by-key gauge, help)
CONTROL_PLANE = {
    "flare_intents": ("gauge", "state", "Live intents by state."),
    "flare_agents": ("gauge", "status", "Nodes with an agent, live or stale."),
    "flare_telemetry_streams": ("gauge", "", "Agent streams open now."),
    "flare_telemetry_messages": ("counter", "", "Agent messages taken into the journal."),
    "flare_telemetry_duplicates": ("counter", "", "Agent messages dropped as duplicates."),
    "flare_telemetry_missing": ("counter", "", "Sequence numbers agents skipped (lost)."),
    "flare_telemetry_samples": ("counter", "", "GPU samples taken in."),
    "flare_watchers": ("gauge", "", "WatchUtilization streams open now."),
    "flare_watch_resyncs": ("counter", "", "Watchers that fell behind and were resynced."),
    "flare_metrics_scrape_seconds": ("gauge", "", "Time the previous scrape took."),
}


class _Figures(Collector):
    """The control plane's own figures as of the scrape (nothing on the hot path)."""

    def __init__(self) -> None:
        self.current: Figures = {}

    def collect(self) -> Iterator[Metric]:
        for name, value in self.current.items():
            kind, label, text = CONTROL_PLANE[name]
            if isinstance(value, dict):
                family = GaugeMetricFamily(name, text, labels=[label])
                for key, amount in sorted(value.items()):
                    family.add_metric([key], amount)
                yield family
            elif kind == "counter":
                yield CounterMetricFamily(name, text, value=value)
            else:
                yield GaugeMetricFamily(name, text, value=value)


class Metrics:
    """The control plane's registry, plus the GPU series; `render` is one scrape."""

    def __init__(self, hub: TelemetryHub, intent_of: IntentOf) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.placement_seconds = Histogram(
            "flare_placement_seconds",
            "Time to plan one intent against the federation's offers.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self._figures = _Figures()
        self.registry.register(self._figures)
        self._hub = hub
        self._intent_of = intent_of
        self.scrape_seconds = 0.0

    async def render(self, figures: Figures) -> str:
        started = time.perf_counter()
        rows = snapshot(self._hub, self._intent_of)
        gpus = await asyncio.to_thread(render_gpus, rows)
        self._figures.current = {**figures, "flare_metrics_scrape_seconds": self.scrape_seconds}
        own = generate_latest(self.registry).decode()
        self.scrape_seconds = time.perf_counter() - started
        return own + gpus
