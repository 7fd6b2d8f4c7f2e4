"""A fuzzing campaign against a real control plane process: random bytes,
mutations of valid requests, oversized messages and bad tokens at every RPC,
malformed agent streams, and bad HTTP requests at the REST gateway (mutated
JSON, random bytes, deep nesting, oversized bodies, mangled paths, wrong
methods). Counts the answers by status code; the campaign fails if any is
INTERNAL or UNKNOWN (HTTP: 500 or above) or the server dies. Reports the
server's memory before and after. Writes benchmarks/results/fuzz.json.
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
from tests.api import rest_fuzz
from tests.api.test_fuzz import SEEDS, http_status, mutate
from tests.controlplane_process import free_port, running
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
    parser.add_argument("--http-requests", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = ["random bytes", "mutated request", "oversized", "bad token"]
    weights = [45, 45, 2, 8]
    counts: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in kinds}
    stream_counts: collections.Counter[str] = collections.Counter()
    http_counts: dict[str, collections.Counter[int]] = {
        k: collections.Counter() for k in rest_fuzz.KINDS
    }
    broken: list[dict[str, Any]] = []
    rest = f"127.0.0.1:{free_port()}"
    with (
        tempfile.TemporaryDirectory() as data,
        running(Path(data), "--sync", "NORMAL", "--http-listen", rest) as server,
    ):
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
        for _ in range(args.http_requests):
            request = rest_fuzz.request(rng)
            http_token = token(rng.choices(["valid", "bad token"], [9, 1])[0], admin, rng)
            try:
                status = http_status(f"http://{rest}", request, http_token)
            except OSError as error:  # no answer at all
                status = 0
                broken.append({"kind": f"http {request.kind}", "error": str(error)})
            http_counts[request.kind][status] += 1
            if status >= 500:
                broken.append(
                    {
                        "kind": f"http {request.kind}",
                        "method": request.method,
                        "path": request.path[:200],
                        "body": request.body[:2000].decode(errors="replace"),
                    }
                )
        seconds = time.monotonic() - started
        alive = server.process is not None and server.process.poll() is None
        after = rss_mb(server.pid)
        if broken:
            print(*broken[:10], "\nthe server's log:\n" + server.tail(80), sep="\n")
    print(
        f"\n{args.requests} requests, {args.streams} agent streams and {args.http_requests} "
        f"HTTP requests in {seconds:.0f} s\n"
    )
    for kind, codes in counts.items():
        print(
            f"{kind:<18}{sum(codes.values()):>7}  "
            + ", ".join(f"{c} {n}" for c, n in codes.most_common())
        )
    print(
        f"{'agent streams':<18}{args.streams:>7}  "
        + ", ".join(f"{c} {n}" for c, n in stream_counts.most_common())
    )
    for kind, statuses in http_counts.items():
        print(
            f"http {kind:<13}{sum(statuses.values()):>7}  "
            + ", ".join(f"{c} {n}" for c, n in sorted(statuses.items()))
        )
    print(f"\nINTERNAL or UNKNOWN (HTTP 5xx): {len(broken)}; server alive: {alive}; ", end="")
    print(f"RSS {before} MB -> {after} MB")
    write_results(
        "fuzz",
        {
            "settings": vars(args),
            "requests_by_kind": {k: dict(v) for k, v in counts.items()},
            "agent_streams": dict(stream_counts),
            "http_requests_by_kind": {
                k: {str(status): n for status, n in sorted(v.items())}
                for k, v in http_counts.items()
            },
            "internal_or_unknown": len(broken),
            "server_alive": alive,
            "rss_mb": {"before": before, "after": after},
            "seconds": round(seconds, 1),
        },
    )
    return 0 if not broken and alive else 1


if __name__ == "__main__":
    sys.exit(main())
