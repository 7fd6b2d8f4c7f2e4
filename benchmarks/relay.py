"""What a flare-relay costs, and what it saves the control plane: N agents (8 GPUs,
1 Hz, from benchmarks/telemetry_load in its own process) stream first straight to
a control plane, then to a real flare-relay process in front of another one. Prints
a table of each process's CPU and memory and writes benchmarks/results/relay.json.

The relay spends on each agent message about what the control plane would have
(gRPC's per-message work); it runs in the provider's cluster, so that work leaves
the control plane's machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_seconds, rss_mb, write_results
from benchmarks.telemetry import generate
from tests.controlplane_process import ControlPlaneProcess, free_port


def step(agents: int, seconds: float, *, through_relay: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        server = ControlPlaneProcess(Path(data_dir), free_port(), ("--log-level", "warning"))
        server.start()
        relay: subprocess.Popen[bytes] | None = None
        target = server.address
        try:
            if through_relay:
                token = Path(data_dir) / "token"
                token.write_text(server.admin_token)
                target = f"127.0.0.1:{free_port()}"
                relay = subprocess.Popen(
                    [
                        sys.executable, "-m", "agent.relay", "--listen", target,
                        "--control-plane", server.address, "--token-file", str(token),
                        "--log-level", "warning",
                    ],
                )  # fmt: skip
                time.sleep(2.0)  # connected upstream
            pids = {"control_plane": server.pid, **({"relay": relay.pid} if relay else {})}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            load = generate(target, server.admin_token, agents, seconds, 0, relay_size=0)
            wall = time.monotonic() - started
            row: dict[str, Any] = {
                "agents": agents,
                "through_relay": through_relay,
                "unacked": load["unacked"],
                "stream_failures": load["stream_failures"],
            }
            for name, pid in pids.items():
                row[f"{name}_cpu_cores"] = round((cpu_seconds(pid) - before[name]) / wall, 2)
                row[f"{name}_rss_mb"] = rss_mb(pid)
        finally:
            if relay is not None:
                relay.terminate()
                relay.wait(30)
            server.stop()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows = [step(args.agents, args.seconds, through_relay=via) for via in (False, True)]
    print(f"{'agents':>7}  {'path':<14}{'control plane':>20}{'relay':>20}{'unacked':>9}")
    for row in rows:
        relay = (
            f"{row['relay_cpu_cores']} core {row['relay_rss_mb']:.0f} MB"
            if row["through_relay"]
            else "-"
        )
        plane = f"{row['control_plane_cpu_cores']} core {row['control_plane_rss_mb']:.0f} MB"
        path = "through relay" if row["through_relay"] else "direct"
        print(f"{row['agents']:>7}  {path:<14}{plane:>20}{relay:>20}{row['unacked']:>9}")
    write_results("relay", {"settings": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
