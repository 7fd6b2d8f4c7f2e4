"""A fuzzing campaign against a real control plane process: random bytes,
mutations of valid requests, oversized messages and bad tokens at every RPC,
and malformed agent streams. Counts the answers by status code; the campaign
fails if any is INTERNAL or UNKNOWN or the server dies. Reports the server's
memory before and after. Writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.common import rss_mb, write_results
from tests.api.test_fuzz import SEEDS, mutate
from tests.controlplane_process import running
from tests.telemetry_support import hello, inventory

BROKEN = {"INTERNAL", "UNKNOWN"}
MAX_MESSAGE = 4 * 2**20


def payload(kind: str, method: str, rng: random.Random) -> bytes:
    if kind == "random bytes":
        return rng.randbytes(rng.randrange(0, 300))
    if kind == "mutated request":
        return mutate(SEEDS[method], rng)
    if kind == "oversized":
        return b"\x0a" + b"\xff\xff\xff\x02" + rng.randbytes(64) * (MAX_MESSAGE // 64 + 1)
    return SEEDS[method]  # a valid request, with a bad token


def token(kind: str, admin: str, rng: random.Random) -> str:
    if kind != "bad token":
        return admin
    return rng.choice(
        [
            "",
            "flr.default.nope.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            admin[:-1] + ("A" if admin[-1] != "A" else "B"),
            "Bearer",
            "x" * 10_000,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = ["random bytes", "mutated request", "oversized", "bad token"]
    weights = [45, 45, 2, 8]
    counts: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in kinds}
    stream_counts: collections.Counter[str] = collections.Counter()
    broken: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as data, running(Path(data), "--sync", "NORMAL") as server:
        admin = server.admin_token
        before = rss_mb(server.pid)
        started = time.monotonic()
        with grpc.insecure_channel(
            server.address, options=[("grpc.max_send_message_length", 2 * MAX_MESSAGE)]
        ) as channel:
            for _ in range(args.requests):
                kind = rng.choices(kinds, weights)[0]
                method = rng.choice(sorted(SEEDS))
                call: Any = channel.unary_unary(method)
                try:
                    call(
                        payload(kind, method, rng),
                        metadata=(("authorization", f"Bearer {token(kind, admin, rng)}"),),
                        timeout=10,
                    )
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                counts[kind][code] += 1
                if code in BROKEN:
                    broken.append({"kind": kind, "method": method, "code": code})
            for _ in range(args.streams):
                messages = [
                    hello(inventory(f"fuzz-{rng.randrange(50)}")).SerializeToString(),
                    *(rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.randrange(1, 6))),
                ]
                if rng.random() < 0.5:
                    messages[0] = mutate(messages[0], rng)
                stream: Any = channel.stream_stream("/flare.v1.TelemetryService/StreamTelemetry")
                try:
                    for _ in stream(
                        iter(messages), metadata=(("authorization", f"Bearer {admin}"),), timeout=10
                    ):
                        pass
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                stream_counts[code] += 1
                if code in BROKEN:
                    broken.append({"kind": "agent stream", "code": code})
        seconds = time.monotonic() - started
        alive = server.process is not None and server.process.poll() is None
        after = rss_mb(server.pid)
    print(f"\n{args.requests} requests and {args.streams} agent streams in {seconds:.0f} s\n")
    for kind, codes in counts.items():
        print(
            f"{kind:<18}{sum(codes.values()):>7}  "
            + ", ".join(f"{c} {n}" for c, n in codes.most_common())
        )
    print(
        f"{'agent streams':<18}{args.streams:>7}  "
        + ", ".join(f"{c} {n}" for c, n in stream_counts.most_common())
    )
    print(f"\nINTERNAL or UNKNOWN: {len(broken)}; server alive: {alive}; ", end="")
    print(f"RSS {before} MB -> {after} MB")
    write_results(
        "fuzz",
        {
            "settings": vars(args),
            "requests_by_kind": {k: dict(v) for k, v in counts.items()},
            "agent_streams": dict(stream_counts),
            "internal_or_unknown": len(broken),
            "server_alive": alive,
            "rss_mb": {"before": before, "after": after},
            "seconds": round(seconds, 1),
        },
    )
    return 0 if not broken and alive else 1


if __name__ == "__main__":
    sys.exit(main())
