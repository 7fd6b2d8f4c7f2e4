"""The agent's TelemetryService client: keeps one stream to the control plane
open, resends what was not acknowledged after every reconnect, and backs off
with jitter while the control plane is away.

Each stream opens with a hello (the current inventory, sequence 0); the
control plane answers with the highest sequence it holds for this agent
instance, and the streamer resends from there. Acknowledged messages leave
the outbox; nothing else does, except the oldest when the outbox is full.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from agent.outbox import Outbox
from flare import tls
from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
Call: TypeAlias = grpc.aio.StreamStreamCall[pb.StreamTelemetryRequest, pb.StreamTelemetryResponse]
# A stream that got this far counts as healthy: the next failure starts the backoff afresh.
STEADY_SECONDS = 10.0
# While the agent drains its outbox to exit, it waits at most this long between attempts:
# a backoff grown to many seconds would outlast its grace period.
DRAIN_RETRY_SECONDS = 0.5
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly in
    [0, min(cap, base * 2**n)], so a fleet of agents does not reconnect in step."""

    base: float = 0.5
    cap: float = 30.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        return float(self.rand() * min(self.cap, self.base * 2 ** min(attempt, 32)))


@dataclass
class StreamStats:
    connects: int = 0
    failures: int = 0
    resent: int = 0  # messages waiting when a stream (re)opened
    gaps_reported: int = 0
    last_error: str = ""


class TelemetryStreamer:
    def __init__(
        self,
        target: str,
        token: str,
        outbox: Outbox,
        hello: Callable[[], pb.NodeInventory],
        *,
        credentials: grpc.ChannelCredentials | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.target = target
        self.outbox = outbox
        self.stats = StreamStats()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._hello = hello
        self._credentials = credentials
        self._backoff = backoff or Backoff()
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()
        self._acked = asyncio.Condition()
        self.connected = False

    def notify(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    async def drained(self, timeout: float) -> bool:
        """Waits until every message put so far is acknowledged; a stream that is down
        is tried again at once, and then every DRAIN_RETRY_SECONDS."""
        self._draining.set()
        goal = self.outbox.last_sequence

        async def settled() -> None:
            async with self._acked:
                await self._acked.wait_for(lambda: self.outbox.acked >= goal)

        try:
            await asyncio.wait_for(settled(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Streams until `stop` is set, reconnecting as long as it takes."""
        channel = open_channel(self.target, self._credentials)
        attempt = 0
        loop = asyncio.get_running_loop()
        async with channel:
            while not stop.is_set():
                started = loop.time()
                try:
                    # The generated stub is typed for the synchronous API; on an aio channel
                    # it makes aio calls.
                    stub: Any = pb_grpc.TelemetryServiceStub(channel)
                    await self._session(stub, stop)
                except grpc.aio.AioRpcError as error:
                    self._failed(f"{error.code().name}: {error.details()}")
                except (ConnectionError, ValueError) as error:
                    self._failed(str(error))
                finally:
                    self.connected = False
                if stop.is_set():
                    break
                attempt = 0 if loop.time() - started >= STEADY_SECONDS else attempt + 1
                await self._back_off(stop, self._backoff.delay(attempt))

    async def _back_off(self, stop: asyncio.Event, delay: float) -> None:
        """Waits `delay` before the next attempt, less once `stop` is set or the outbox
        is being drained."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        if not self._draining.is_set():
            await first_of((stop, self._draining), delay)
        left = min(deadline - loop.time(), DRAIN_RETRY_SECONDS)
        if left > 0 and not stop.is_set():
            await first_of((stop,), left)

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        if reason != self.stats.last_error:
            log.warning("telemetry stream down: %s", reason)
        self.stats.last_error = reason

    async def _session(self, stub: Any, stop: asyncio.Event) -> None:
        call: Call = stub.StreamTelemetry(metadata=self._metadata)
        try:
            await write(call, self.outbox.hello(self._hello()))
            first = await call.read()
            if not isinstance(first, pb.StreamTelemetryResponse):
                raise ConnectionError("the control plane closed the stream before answering")
            await self._take(first)
            self.connected = True
            self.stats.connects += 1
            if self.stats.last_error:
                log.info("telemetry stream up again, resuming after %d", first.acked_sequence)
                self.stats.last_error = ""
            receiver = asyncio.create_task(self._receive(call))
            try:
                await self._send(call, first.acked_sequence, stop, receiver)
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver
                # A receiver that failed carries the reason the stream ended.
                if receiver.done() and not receiver.cancelled() and receiver.exception():
                    raise receiver.exception()  # type: ignore[misc]
        finally:
            call.cancel()

    async def _send(
        self,
        call: Call,
        resume_after: int,
        stop: asyncio.Event,
        receiver: asyncio.Task[None],
    ) -> None:
        sent = resume_after
        first_pass = True
        while not stop.is_set() and not receiver.done():
            self._wake.clear()
            batch = self.outbox.after(sent)
            if first_pass:
                self.stats.resent += len(batch)
                first_pass = False
            for message in batch:
                await write(call, message)
                sent = message.sequence
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait([*waiters, receiver], return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _receive(
        self,
        call: Call,
    ) -> None:
        while True:
            response = await call.read()
            if not isinstance(response, pb.StreamTelemetryResponse):
                raise ConnectionError("the control plane ended the stream")
            await self._take(response)

    async def _take(self, response: pb.StreamTelemetryResponse) -> None:
        if response.missing_sequences:
            self.stats.gaps_reported += len(response.missing_sequences)
            log.warning(
                "the control plane misses %d messages the outbox had dropped",
                len(response.missing_sequences),
            )
        self.outbox.acknowledge(min(response.acked_sequence, self.outbox.last_sequence))
        async with self._acked:
            self._acked.notify_all()


async def write(call: Call, message: pb.StreamTelemetryRequest) -> None:
    """Writes `message`; a stream the other side has already ended (grpc says only
    "RPC already finished") raises ConnectionError with the status it ended with."""
    try:
        await call.write(message)
    except asyncio.InvalidStateError:
        code, details = await call.code(), await call.details()
        raise ConnectionError(f"the stream ended: {code.name}: {details}") from None


async def first_of(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    """Returns when one of `events` is set, or after `timeout` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def open_channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """A channel to the control plane that pings an idle connection, over TLS when
    `credentials` are given."""
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=_KEEPALIVE)
    return grpc.aio.secure_channel(target, credentials, options=_KEEPALIVE)


def token_of(args: argparse.Namespace) -> str:
    """The telemetry:write token of --token-file, or else FLARE_TOKEN."""
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    return os.environ.get("FLARE_TOKEN", "")


def credentials_of(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS to the control plane when a CA is given (and mutual TLS with a certificate)."""
    if args.tls_cert and not args.tls_ca:
        raise ValueError("--tls-cert needs --tls-ca, the CA of the control plane's certificate")
    if not args.tls_ca:
        return None
    return tls.channel_credentials(
        Path(args.tls_ca),
        Path(args.tls_cert) if args.tls_cert else None,
        Path(args.tls_key) if args.tls_key else None,
    )
