"""`flarectl top`: the federation's GPUs live, like nvtop for a federation.

The view is plain state fed by WatchUtilization: a SNAPSHOT replaces it, an
UPDATE changes the GPUs it names, a RESYNC is followed by a snapshot. Rendering
is a pure function of that state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from flare.v1 import telemetry_service_pb2 as pb

_GIB = 2**30
_BAR = 10


@dataclass
class TopView:
    gpus: dict[str, pb.GpuState] = field(default_factory=dict)
    resyncs: int = 0

    def apply(self, event: pb.WatchUtilizationResponse) -> None:
        if event.type == pb.WATCH_EVENT_TYPE_SNAPSHOT:
            self.gpus = {g.device.uuid: g for g in event.gpus}
        elif event.type == pb.WATCH_EVENT_TYPE_UPDATE:
            for gpu in event.gpus:
                self.gpus[gpu.device.uuid] = gpu
        elif event.type == pb.WATCH_EVENT_TYPE_RESYNC:
            self.resyncs += 1

    def rows(self) -> list[pb.GpuState]:
        return sorted(
            self.gpus.values(), key=lambda g: (g.provider, g.cluster, g.node, g.device.index)
        )


def _bar(percent: float | None) -> Text:
    if percent is None:
        return Text("n/a", style="dim")
    filled = round(max(0.0, min(100.0, percent)) / 100 * _BAR)
    style = "red" if percent >= 90 else "yellow" if percent >= 60 else "green"
    text = Text("█" * filled, style=style)
    text.append("░" * (_BAR - filled), style="dim")
    text.append(f" {percent:3.0f}%")
    return text


def _health(state: pb.GpuState) -> Text:
    if state.stale:
        return Text("stale", style="yellow")
    health = state.latest.health
    if health == pb.GPU_HEALTH_UNHEALTHY:
        return Text("UNHEALTHY", style="bold red")
    if health == pb.GPU_HEALTH_DEGRADED:
        return Text("degraded", style="yellow")
    return Text("ok", style="green")


def _optional(sample: pb.GpuSample, name: str) -> float | None:
    return float(getattr(sample, name)) if sample.HasField(name) else None  # type: ignore[arg-type]


def _memory(state: pb.GpuState) -> str:
    used = _optional(state.latest, "memory_used_bytes")
    total = state.device.memory_bytes
    if used is None or not total:
        return "n/a"
    return f"{used / _GIB:.0f}/{total / _GIB:.0f} GiB"


def _minute(state: pb.GpuState) -> str:
    window = state.last_minute
    if state.stale or not window.HasField("gpu_utilization_percent"):
        return "n/a"
    return f"{window.gpu_utilization_percent:.0f}%"


def summary(rows: Iterable[pb.GpuState]) -> Text:
    rows = list(rows)
    providers = {r.provider for r in rows}
    nodes = {(r.provider, r.cluster, r.node) for r in rows}
    readings = [
        r.latest.gpu_utilization_percent
        for r in rows
        if not r.stale and r.latest.HasField("gpu_utilization_percent")
    ]
    mean = f"{sum(readings) / len(readings):.0f}%" if readings else "n/a"
    trouble = sum(1 for r in rows if r.stale or r.latest.health == pb.GPU_HEALTH_UNHEALTHY)
    in_use = sum(1 for r in rows if r.intent)
    text = Text(
        f"{len(providers)} providers  {len(nodes)} nodes  {len(rows)} GPUs  "
        f"{in_use} in use  mean utilisation {mean}  "
    )
    text.append(f"{trouble} unhealthy or stale", style="red" if trouble else "green")
    return text


def render(view: TopView) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("PROVIDER", "NODE", "GPU", "MODEL", "UTIL", "1 MIN", "MEMORY", "TEMP", "POWER"):
        table.add_column(column, no_wrap=True)
    table.add_column("HEALTH", no_wrap=True)
    table.add_column("INTENT", overflow="fold")
    for state in view.rows():
        sample = state.latest
        temperature = _optional(sample, "temperature_celsius")
        power = _optional(sample, "power_watts")
        table.add_row(
            Text(state.provider),
            Text(state.node),
            Text(str(state.device.index)),
            Text(state.device.model or state.device.raw_name),
            _bar(None if state.stale else _optional(sample, "gpu_utilization_percent")),
            Text(_minute(state)),
            Text(_memory(state)),
            Text("n/a" if temperature is None else f"{temperature:.0f}°C"),
            Text("n/a" if power is None else f"{power:.0f} W"),
            _health(state),
            Text(state.intent),
        )
    return Group(summary(view.gpus.values()), table)
