"""Starts a federation of test clusters by hand and keeps it up until Ctrl-C or SIGTERM.

python -m tests.harness [--providers N] [--no-workloads]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from tests.harness.cluster import Options
from tests.harness.federation import Federation
from tests.harness.tools import ToolsMissingError, find_tools


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    parser.add_argument("--providers", type=int, default=2, help="provider clusters (default 2)")
    parser.add_argument(
        "--no-workloads",
        action="store_true",
        help="only etcd and kube-apiserver: no controller-manager, scheduler or kwok",
    )
    return parser.parse_args(argv)


def describe(federation: Federation, seconds: float) -> str:
    lines = [f"federation up in {seconds:.1f}s, {federation.rss_bytes() / 2**20:.0f} MiB RSS"]
    for cluster in federation.clusters:
        lines += [
            "",
            f"{cluster.name}: {cluster.server} ({cluster.rss_bytes() / 2**20:.0f} MiB RSS)",
            f"  export KUBECONFIG={cluster.kubeconfig}",
            f"  kubectl --kubeconfig {cluster.kubeconfig} get nodes,crds",
            f"  logs: {cluster.workdir / 'logs'}",
        ]
    lines += ["", "Ctrl-C or SIGTERM stops every cluster and removes its files."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        tools = find_tools()
    except ToolsMissingError as error:
        print(error, file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    federation = Federation(tools, args.providers, Options(workloads=not args.no_workloads))
    started = time.monotonic()
    try:
        print(f"starting {len(federation.clusters)} clusters...", flush=True)
        federation.start()
        print(describe(federation, time.monotonic() - started), flush=True)
        while not stop.wait(1.0):
            pass
        print("stopping...", flush=True)
    finally:
        federation.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
