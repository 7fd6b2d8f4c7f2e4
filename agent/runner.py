"""The long-running agent: samples the GPUs every interval into the outbox
that the streamer drains, and keeps the Node's annotations and the node's
Flavor current (at start, when the inventory changes, and every resync
period, so drift made by hand is repaired).

On stop it takes no more samples (a round of the probe under way finishes and
is sent), gives the streamer a grace period to have everything acknowledged, and
reports what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

from agent import wire
from agent.config import ProviderConfig
from agent.outbox import Outbox
from agent.probe.base import Inventory, Probe, Reading
from agent.stream import TelemetryStreamer
from flare.v1 import telemetry_service_pb2 as pb

log = logging.getLogger(__name__)


# Writes the node's annotations, labels and Flavor (agent/kube/sync.py).
KubeSync: TypeAlias = Callable[[Inventory], None]


@dataclass
class AgentReport:
    samples: int = 0
    inventories: int = 0
    kube_syncs: int = 0
    kube_failures: int = 0
    last_sequence: int = 0
    acked: int = 0
    dropped: int = 0
    unacked: int = 0
    connects: int = 0
    sent_on_resume: int = 0  # messages waiting in the outbox when a stream (re)opened
    probe_failures: int = 0  # rounds in which the probe raised (none expected)


def beat(path: Path) -> None:
    """Marks the sampling loop alive (the liveness probe reads the file's age)."""
    path.touch()


def alive(path: Path, max_age: float, now: float | None = None) -> bool:
    """Whether the loop marked itself alive within `max_age` seconds."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    return age <= max_age


class Agent:
    def __init__(
        self,
        probe: Probe,
        config: ProviderConfig,
        node_name: str,
        *,
        interval: float = 1.0,
        outbox: Outbox | None = None,
        streamer_factory: Callable[[Outbox, Callable[[], pb.NodeInventory]], TelemetryStreamer]
        | None = None,
        kube_sync: KubeSync | None = None,
        resync_seconds: float = 60.0,
        grace_seconds: float = 10.0,
        heartbeat: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.probe = probe
        self.config = config
        self.node_name = node_name
        self.interval = interval
        self.outbox = outbox or Outbox(capacity=600)
        self.streamer = (
            streamer_factory(self.outbox, self._hello) if streamer_factory is not None else None
        )
        self.kube_sync = kube_sync
        self.resync_seconds = resync_seconds
        self.grace_seconds = grace_seconds
        self.heartbeat = heartbeat
        self.report = AgentReport()
        self._clock = clock
        self._inventory: Inventory | None = None
        self._inventory_changed = asyncio.Event()
        self._problems: dict[str, tuple[str, ...]] = {}

    def _hello(self) -> pb.NodeInventory:
        assert self._inventory is not None, "the first sample comes before the first stream"
        return wire.inventory(self._inventory, self.config, self.node_name, self._clock())

    async def run(self, stop: asyncio.Event) -> AgentReport:
        self._inventory = await asyncio.to_thread(self.probe.inventory)
        stream_stop = asyncio.Event()
        sampling = asyncio.create_task(self._sample_loop(stop))
        tasks = [sampling]
        if self.streamer is not None:
            tasks.append(asyncio.create_task(self.streamer.run(stream_stop)))
        if self.kube_sync is not None:
            tasks.append(asyncio.create_task(self._kube_loop(stop)))
        try:
            await stop.wait()
            # A round of the probe under way when the stop came still lands in the outbox:
            # the drain must wait for it too, or its messages are left unacknowledged.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sampling), self.grace_seconds)
            if self.streamer is not None and not await self.streamer.drained(self.grace_seconds):
                log.warning(
                    "stopping with %d messages not acknowledged by the control plane",
                    len(self.outbox),
                )
        finally:
            stream_stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=self.grace_seconds)
            self.probe.close()
        report = self.report
        report.last_sequence = self.outbox.last_sequence
        report.acked = self.outbox.acked
        report.dropped = self.outbox.dropped
        report.unacked = len(self.outbox)
        if self.streamer is not None:
            report.connects = self.streamer.stats.connects
            report.sent_on_resume = self.streamer.stats.resent
        return report

    async def _sample_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            try:
                self.tick(
                    await asyncio.to_thread(self.probe.inventory),
                    await asyncio.to_thread(self.probe.sample),
                )
            except Exception:  # whatever the GPUs' library does, the agent keeps sampling
                self.report.probe_failures += 1
                log.exception("reading the GPUs failed; trying again next interval")
            if self.heartbeat is not None:
                beat(self.heartbeat)
            due = max(due + self.interval, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), due - loop.time())

    def tick(self, inventory: Inventory, readings: tuple[Reading, ...]) -> None:
        """Takes one round of the probe: an inventory message when it changed,
        then the batch of readings."""
        if inventory != self._inventory:
            if self._inventory is None or inventory.problems != self._inventory.problems:
                for problem in inventory.problems:
                    log.warning("reading the node: %s", problem)
            self._inventory = inventory
            self.outbox.put(wire.inventory(inventory, self.config, self.node_name, self._clock()))
            self.report.inventories += 1
            self._inventory_changed.set()
            log.info("GPU inventory changed: %d GPUs", len(inventory.gpus))
        self.outbox.put(wire.batch(readings))
        self.report.samples += 1
        if self.streamer is not None:
            self.streamer.notify()
        for reading in readings:
            if self._problems.get(reading.uuid, ()) != reading.problems:
                self._problems[reading.uuid] = reading.problems
                if reading.problems:
                    log.warning("GPU %s: %s", reading.uuid, "; ".join(reading.problems))
                else:
                    log.info("GPU %s reads cleanly again", reading.uuid)

    async def _kube_loop(self, stop: asyncio.Event) -> None:
        assert self.kube_sync is not None
        failures = 0
        while not stop.is_set():
            self._inventory_changed.clear()
            inventory = self._inventory
            assert inventory is not None
            try:
                await asyncio.to_thread(self.kube_sync, inventory)
            except Exception as error:  # the API server's trouble must not stop the agent
                failures += 1
                self.report.kube_failures += 1
                log.warning("writing the Node and Flavor failed: %s", error)
            else:
                failures = 0
                self.report.kube_syncs += 1
            wait = self.resync_seconds if not failures else min(self.resync_seconds, 2.0**failures)
            changed = asyncio.ensure_future(self._inventory_changed.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({changed, stopped}, timeout=wait, return_when="FIRST_COMPLETED")
            changed.cancel()
            stopped.cancel()
