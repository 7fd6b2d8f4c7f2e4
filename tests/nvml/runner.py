"""Runs an NvmlProbe in a fresh process (NVML is loaded once per process) and
prints what it saw as JSON. Steps, in order, from the command line:

  inventory                 the inventory, plus how many enumerations so far
  sample                    one sample
  until-unhealthy:N         up to N samples, stopping after one with an UNHEALTHY GPU
  until-xid:SECONDS         samples until some GPU has counted an Xid, or time runs out
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

from agent.probe.base import Health, ProbeError, Reading
from agent.probe.nvml import NvmlProbe


def _reading(reading: Reading) -> dict[str, Any]:
    data = dataclasses.asdict(reading)
    data["time"] = reading.time.isoformat()
    data["health"] = reading.health.value
    data["xid_counts"] = {str(k): v for k, v in reading.xid_counts.items()}
    return data


def main(steps: list[str]) -> int:
    try:
        probe = NvmlProbe(event_timeout_ms=50)
    except ProbeError as error:
        print(json.dumps({"probe_error": str(error)}))
        return 0
    out: list[dict[str, Any]] = []
    try:
        for step in steps:
            name, _, argument = step.partition(":")
            if name == "inventory":
                inventory = dataclasses.asdict(probe.inventory())
                out.append({"inventory": inventory, "enumerations": probe.enumerations})
            elif name == "sample":
                out.append({"sample": [_reading(r) for r in probe.sample()]})
            elif name == "until-unhealthy":
                samples = []
                for _ in range(int(argument)):
                    readings = probe.sample()
                    samples.append([_reading(r) for r in readings])
                    if any(r.health is Health.UNHEALTHY for r in readings):
                        break
                out.append({"samples": samples})
            elif name == "until-xid":
                deadline = time.monotonic() + float(argument)
                readings = probe.sample()
                while time.monotonic() < deadline and not any(
                    any(r.xid_counts.values()) for r in readings
                ):
                    time.sleep(0.05)
                    readings = probe.sample()
                out.append({"sample": [_reading(r) for r in readings]})
            else:
                raise SystemExit(f"unknown step {step!r}")
    finally:
        probe.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
