"""`flare-relay`: carries the telemetry streams of a provider cluster's agents to
the control plane over one connection.

Agents stream to the relay as they would to the control plane (it serves them
the same StreamTelemetry RPC, so an agent's --control-plane names either); the
relay gathers what they sent over --flush-interval into one RelayTelemetry
message and passes the control plane's answers back to each. It keeps nothing:
an agent's messages are acknowledged by the control plane once they are durable
there, as on a direct stream, so a relay that dies loses nothing an agent was
told is safe; the agents reconnect and resend from their outboxes. While the
control plane cannot be reached the relay holds agents' new streams for up to
--hold-seconds, so that they go on as soon as it is back instead of backing off
further with every refusal; then it refuses them (UNAVAILABLE).

Agents present the relay's own token (the cluster's telemetry:write token,
from the same Secret); the relay forwards their bytes without parsing them, so
agents of any version pass through.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from agent.stream import (
    STEADY_SECONDS,
    Backoff,
    credentials_of,
    first_of,
    open_channel,
    token_of,
)
from flare import logs, tls
from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc as pb_grpc

log = logging.getLogger("relay")
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
SERVICE = "flare.v1.TelemetryService"
FLUSH_INTERVAL = 0.1
# How long an agent's new stream waits for the control plane while the relay reconnects.
HOLD_SECONDS = 10.0
# A batch is sent before the flush interval is up once it holds this many messages or bytes;
# the bytes stay well under the 4 MiB a control plane takes in one message.
MAX_BATCH = 512
MAX_BATCH_BYTES = 1 << 20
_UNAVAILABLE = status_pb2.Status(
    code=code_pb2.UNAVAILABLE, message="the relay cannot reach the control plane"
)


@dataclass
class _AgentStream:
    number: int = 0  # the relay's number for it, once its first message came
    # What the control plane answered, serialized, or the status it ended the stream with.
    answers: asyncio.Queue[bytes | status_pb2.Status] = field(default_factory=asyncio.Queue)


@dataclass
class RelayStats:
    agent_streams: int = 0  # open now
    forwarded: int = 0  # agents' messages sent upstream
    batches: int = 0
    upstream_connects: int = 0
    upstream_failures: int = 0


class Relay:
    def __init__(
        self,
        target: str,
        token: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        hold_seconds: float = HOLD_SECONDS,
        backoff: Backoff | None = None,
    ) -> None:
        self.target = target
        self.stats = RelayStats()
        self._token = token
        self._credentials = credentials
        self._flush_interval = flush_interval
        self._hold_seconds = hold_seconds
        self._backoff = backoff or Backoff()
        self._streams: dict[int, _AgentStream] = {}
        # The last agent stream's number. Never reset: numbers only grow on every upstream
        # stream, and one left over from a lost stream can never name a new agent's.
        self._numbers = 0
        self._pending: list[pb.RelayedMessage] = []
        self._pending_bytes = 0
        self._full = asyncio.Event()  # a batch is due before the interval is up
        self.up = asyncio.Event()  # the upstream stream is open

    # The agents' side.

    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "present the relay's token")
        if not self.up.is_set():
            await first_of((self.up,), self._hold_seconds)
            if not self.up.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE, _UNAVAILABLE.message)
        stream = _AgentStream()
        self.stats.agent_streams += 1
        reader = asyncio.create_task(self._forward(stream, requests))
        try:
            while isinstance(answer := await stream.answers.get(), bytes):
                yield answer
            if answer.code != code_pb2.OK:
                await context.abort_with_status(rpc_status.to_status(answer))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if stream.number and self._streams.pop(stream.number, None) is not None:
                self._send(pb.RelayedMessage(stream=stream.number, closed=True))
            self.stats.agent_streams -= 1

    def _authorized(self, context: Context) -> bool:
        if not self._token:
            return True
        given = next(
            (value for key, value in context.invocation_metadata() or () if key == "authorization"),
            "",
        )
        return hmac.compare_digest(str(given).encode(), f"Bearer {self._token}".encode())

    async def _forward(self, stream: _AgentStream, requests: AsyncIterator[bytes]) -> None:
        async for raw in requests:
            if not stream.number:
                # Numbered at its first message, so numbers reach the control plane in
                # increasing order whatever order the agents' streams opened in.
                if not self.up.is_set():
                    stream.answers.put_nowait(_UNAVAILABLE)
                    return
                self._numbers += 1
                stream.number = self._numbers
                self._streams[stream.number] = stream
            elif stream.number not in self._streams:
                return  # ended by the control plane or a lost upstream
            self._send(pb.RelayedMessage(stream=stream.number, request=raw))
        if stream.number in self._streams:
            # The agent is done sending; the control plane's last answers still come back.
            self._send(pb.RelayedMessage(stream=stream.number, closed=True))

    def _send(self, message: pb.RelayedMessage) -> None:
        self._pending.append(message)
        self._pending_bytes += len(message.request)
        if len(self._pending) >= MAX_BATCH or self._pending_bytes >= MAX_BATCH_BYTES:
            self._full.set()

    # The control plane's side.

    async def run(self, stop: asyncio.Event) -> None:
        """Keeps the upstream stream open until `stop` is set."""
        channel = open_channel(self.target, self._credentials)
        loop = asyncio.get_running_loop()
        attempt = 0
        async with channel:
            stub: Any = pb_grpc.TelemetryServiceStub(channel)
            while not stop.is_set():
                started = loop.time()
                try:
                    await self._session(stub, stop)
                except grpc.aio.AioRpcError as error:
                    self.stats.upstream_failures += 1
                    log.warning("control plane stream down: %s", error.details() or error.code())
                finally:
                    self._lost()
                if stop.is_set():
                    break
                attempt = 0 if loop.time() - started >= STEADY_SECONDS else attempt + 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._backoff.delay(attempt))

    async def _session(self, stub: Any, stop: asyncio.Event) -> None:
        metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        call = stub.RelayTelemetry(metadata=metadata)
        await call.wait_for_connection()
        self.stats.upstream_connects += 1
        self.up.set()
        log.info("relaying to %s", self.target)
        receiver = asyncio.create_task(self._receive(call))
        try:
            while not stop.is_set() and not receiver.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._flush_interval)
                try:
                    await self._flush(call)
                except asyncio.InvalidStateError:
                    await asyncio.wait([receiver])  # the call ended; the receiver knows why
            if receiver.done():
                await receiver  # raises why the control plane ended the stream
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await receiver
            call.cancel()

    async def _flush(self, call: Any) -> None:
        self._full.clear()
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for batch in batches(pending):
            await call.write(pb.RelayTelemetryRequest(messages=batch))
            self.stats.batches += 1
            self.stats.forwarded += sum(1 for message in batch if not message.closed)

    async def _receive(self, call: Any) -> None:
        async for response in call:
            for answer in response.answers:
                stream = self._streams.get(answer.stream)
                if stream is None:
                    continue
                if answer.HasField("ended"):
                    del self._streams[answer.stream]  # nothing more goes upstream for it
                    stream.answers.put_nowait(answer.ended)
                else:
                    stream.answers.put_nowait(answer.response)

    def _lost(self) -> None:
        """The upstream stream ended: every agent stream on it ends too, and the
        agents resend what was not acknowledged when they reconnect."""
        self.up.clear()
        self._pending, self._pending_bytes = [], 0
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.answers.put_nowait(_UNAVAILABLE)


def batches(messages: list[pb.RelayedMessage]) -> list[list[pb.RelayedMessage]]:
    """The messages in order, cut into batches of at most MAX_BATCH messages and, unless
    one message alone is larger, MAX_BATCH_BYTES."""
    out: list[list[pb.RelayedMessage]] = []
    size = 0
    for message in messages:
        if not out or len(out[-1]) == MAX_BATCH or size + len(message.request) > MAX_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(message)
        size += len(message.request)
    return out


def add_to_server(relay: Relay, server: grpc.aio.Server) -> None:
    """Serves StreamTelemetry to agents with the bytes as they come: the relay never
    parses an agent's messages."""
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
        relay.StreamTelemetry
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"StreamTelemetry": handler}),)
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="flare-relay", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen",
        default=env("FLARE_RELAY_LISTEN", "0.0.0.0:7443"),
        help="where agents stream to (FLARE_RELAY_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--control-plane",
        default=env("FLARE_CONTROL_PLANE", ""),
        help="host:port of the control plane's gRPC API (FLARE_CONTROL_PLANE)",
    )
    parser.add_argument(
        "--token-file",
        default=env("FLARE_TOKEN_FILE", ""),
        help="file with a token holding the telemetry:write scope; agents present the same "
        "token (FLARE_TOKEN_FILE; or the token itself in FLARE_TOKEN)",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=float(env("FLARE_RELAY_FLUSH_INTERVAL", str(FLUSH_INTERVAL))),
        help="seconds agents' messages wait to travel together (default %(default)s)",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=float(env("FLARE_RELAY_HOLD_SECONDS", str(HOLD_SECONDS))),
        help="how long an agent's stream waits while the control plane cannot be reached, "
        "before it is refused (FLARE_RELAY_HOLD_SECONDS; default %(default)s)",
    )
    parser.add_argument(
        "--tls-ca",
        default=env("FLARE_TLS_CA", ""),
        help="PEM CA of the control plane's certificate: relay over TLS (FLARE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        default=env("FLARE_TLS_CERT", ""),
        help="PEM client certificate naming this cluster, for a control plane that asks for "
        "mutual TLS; with --tls-key and --tls-ca (FLARE_TLS_CERT)",
    )
    parser.add_argument("--tls-key", default=env("FLARE_TLS_KEY", ""), help="(FLARE_TLS_KEY)")
    parser.add_argument(
        "--listen-tls-cert",
        default=env("FLARE_RELAY_LISTEN_TLS_CERT", ""),
        help="PEM certificate of the agents' port; with --listen-tls-key: agents connect "
        "over TLS (FLARE_RELAY_LISTEN_TLS_CERT)",
    )
    parser.add_argument(
        "--listen-tls-key",
        default=env("FLARE_RELAY_LISTEN_TLS_KEY", ""),
        help="(FLARE_RELAY_LISTEN_TLS_KEY)",
    )
    parser.add_argument("--log-level", default=env("FLARE_LOG_LEVEL", "info"))
    parser.add_argument(
        "--log-format", choices=("json", "text"), default=env("FLARE_LOG_FORMAT", "json")
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    relay = Relay(
        args.control_plane,
        token_of(args),
        credentials=credentials_of(args),
        flush_interval=args.flush_interval,
        hold_seconds=args.hold_seconds,
    )
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
    add_to_server(relay, server)
    if args.listen_tls_cert:
        listening = tls.server_credentials(Path(args.listen_tls_cert), Path(args.listen_tls_key))
        port = server.add_secure_port(args.listen, listening)
    else:
        port = server.add_insecure_port(args.listen)
    await server.start()
    log.info("relay serving agents", extra={"port": port, "control_plane": args.control_plane})
    upstream = asyncio.create_task(relay.run(stop))
    await stop.wait()
    await server.stop(5.0)
    await upstream
    log.info("relay stopped", extra={"stats": vars(relay.stats)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if not args.control_plane:
        print("flare-relay: --control-plane (FLARE_CONTROL_PLANE) is required", file=sys.stderr)
        return 2
    if bool(args.listen_tls_cert) != bool(args.listen_tls_key):
        print("flare-relay: --listen-tls-cert and --listen-tls-key go together", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(args, stop)

    try:
        asyncio.run(run())
    except (OSError, ValueError) as error:  # ValueError: TLS flags that do not go together
        print(f"flare-relay: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
