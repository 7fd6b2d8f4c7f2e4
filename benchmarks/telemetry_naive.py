"""The naive baseline of benchmarks/telemetry: the same ingest rules (FLARE's
TelemetryHub, behind one lock) served the obvious way, a thread per agent
stream on the synchronous gRPC server, each message written to the journal
file and fsynced before its acknowledgement (no group commit, no coalesced
answers). Runs until SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from controlplane.telemetry.hub import TelemetryHub
from controlplane.telemetry.journal import Kind, frame
from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc as pb_grpc


class NaiveTelemetry(pb_grpc.TelemetryServiceServicer):
    def __init__(self, journal: Path) -> None:
        self.hub = TelemetryHub()
        self.lock = threading.Lock()
        self.journal = journal.open("ab")

    def StreamTelemetry(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[pb.StreamTelemetryRequest], context: Any
    ) -> Iterator[pb.StreamTelemetryResponse]:
        hello = next(request_iterator)
        with self.lock:
            state, stream = self.hub.hello(hello)
            acked = state.durable
        yield pb.StreamTelemetryResponse(acked_sequence=acked)
        for request in request_iterator:
            with self.lock:
                verdict = self.hub.accept(state, stream, request)
                if verdict.fresh:
                    self.journal.write(frame(Kind.MESSAGE, state.key, request.SerializeToString()))
                    self.journal.flush()
                    os.fdatasync(self.journal.fileno())
                    self.hub.committed(state, request.sequence)
                acked = state.durable
            yield pb.StreamTelemetryResponse(
                acked_sequence=acked, missing_sequences=verdict.missing
            )

    def RelayTelemetry(  # noqa: N802
        self, request_iterator: Iterator[pb.RelayTelemetryRequest], context: Any
    ) -> Iterator[pb.RelayTelemetryResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the naive baseline has no relays")
        yield pb.RelayTelemetryResponse()  # unreachable: abort raises

    def WatchUtilization(  # noqa: N802
        self, request: pb.WatchUtilizationRequest, context: Any
    ) -> Iterator[pb.WatchUtilizationResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the naive baseline has no watchers")
        yield pb.WatchUtilizationResponse()  # unreachable: abort raises


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True, help="one per agent stream")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.threads),
        maximum_concurrent_rpcs=args.threads,
    )
    pb_grpc.add_TelemetryServiceServicer_to_server(
        NaiveTelemetry(args.data_dir / "journal.seg"), server
    )
    server.add_insecure_port(args.listen)
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print("serving", flush=True)
    stopped.wait()
    server.stop(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
