"""Makes every NVML entry point of the FAKE library fail in turn, with each error
given on the command line (JSON: [[entry point, code], ...]), and prints as JSON
what the NVML probe and the running agent did:

- "start": a probe made while the fault is on (the agent starting on a broken
  node): the ProbeError, or what its inventory and samples said;
- "running": one agent, running all along, meets the faults one after another:
  what it sampled while each was on, and how long it took to read cleanly again
  once the fault was gone.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import sys
from decimal import Decimal
from typing import Any

from agent.config import ProviderConfig
from agent.probe.base import Health, Inventory, ProbeError, Reading
from agent.probe.nvml import NvmlProbe
from agent.runner import Agent
from flare.money import Money

library = ctypes.CDLL("libnvidia-ml.so.1")  # the same library pynvml loads
library.fakeNvmlInject.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_long]
library.fakeNvmlInjectedHits.restype = ctypes.c_long


def inject(entry_point: str, code: int) -> None:
    library.fakeNvmlInject(entry_point.encode(), code, 0)


def hits() -> int:
    return int(library.fakeNvmlInjectedHits())


def seen(inventory: Inventory, readings: tuple[Reading, ...]) -> dict[str, Any]:
    return {
        "gpus": len(inventory.gpus),
        "inventory_problems": list(inventory.problems),
        "readings": len(readings),
        "unhealthy": sum(r.health is Health.UNHEALTHY for r in readings),
        "problems": sorted({p for r in readings for p in r.problems}),
    }


def at_start(entry_point: str, code: int) -> dict[str, Any]:
    before = hits()
    inject(entry_point, code)
    try:
        try:
            probe = NvmlProbe(event_timeout_ms=10)
        except ProbeError as error:
            return {"hit": hits() > before, "probe_error": str(error)}
        try:
            probe.inventory()
            probe.sample()
            result = seen(probe.inventory(), probe.sample())
        finally:
            probe.close()
    finally:
        inject("", 0)
    return {"hit": hits() > before, **result}


class Recording:
    """The probe, remembering what it last gave the agent."""

    def __init__(self, probe: NvmlProbe) -> None:
        self.probe = probe
        self.name = probe.name
        self.last: tuple[Inventory, tuple[Reading, ...]] | None = None
        self._inventory: Inventory | None = None
        self.rounds = 0

    def inventory(self) -> Inventory:
        self._inventory = self.probe.inventory()
        return self._inventory

    def sample(self) -> tuple[Reading, ...]:
        readings = self.probe.sample()
        assert self._inventory is not None
        self.last = (self._inventory, readings)
        self.rounds += 1
        return readings

    def close(self) -> None:
        self.probe.close()


async def rounds(probe: Recording, count: int, timeout: float = 5.0) -> None:
    target = probe.rounds + count
    deadline = asyncio.get_running_loop().time() + timeout
    while probe.rounds < target:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the agent took {probe.rounds} of {count} rounds")
        await asyncio.sleep(0.005)


def clean(probe: Recording, gpus: int) -> bool:
    assert probe.last is not None
    inventory, readings = probe.last
    return (
        len(inventory.gpus) == gpus
        and not inventory.problems
        and len(readings) == gpus
        and all(r.health is Health.HEALTHY and not r.problems for r in readings)
    )


async def running(cases: list[tuple[str, int]]) -> dict[str, Any]:
    probe = Recording(NvmlProbe(event_timeout_ms=10))
    config = ProviderConfig("sweep", "local-1", Money(Decimal("1"), "EUR"))
    agent = Agent(probe, config, "node-0", interval=0.005)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await rounds(probe, 2)
    gpus = len(probe.probe.inventory().gpus)
    results = []
    for entry_point, code in cases:
        before = hits()
        inject(entry_point, code)
        await rounds(probe, 3)
        assert probe.last is not None
        during = seen(*probe.last)
        inject("", 0)
        taken = 0
        while taken < 200:
            await rounds(probe, 1)
            taken += 1
            if clean(probe, gpus):
                break
        results.append(
            {
                "entry_point": entry_point,
                "code": code,
                "hit": hits() > before,
                **during,
                "recovered_after_rounds": taken if clean(probe, gpus) else None,
            }
        )
    stop.set()
    report = await task
    return {"gpus": gpus, "cases": results, "probe_failures": report.probe_failures}


def main(argv: list[str]) -> int:
    cases = [(str(e), int(c)) for e, c in json.loads(argv[0])]
    start = [{"entry_point": e, "code": c, **at_start(e, c)} for e, c in cases]
    print(json.dumps({"start": start, "running": asyncio.run(running(cases))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
