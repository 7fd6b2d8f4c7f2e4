"""One agent stream, served: the hello answered with where to resume, then
every message applied to the hub, appended to the journal, and acknowledged
once it is durable. Acknowledgements go out in order and are coalesced: an
answer covers every message up to its sequence number."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controlplane.errors import Unavailable
from controlplane.telemetry.hub import NodeState, TelemetryHub
from controlplane.telemetry.journal import Journal, JournalError
from flare.v1 import telemetry_service_pb2 as pb

_END = object()  # the agent closed its side
_TIMER = object()  # time to answer what is durable
# Acknowledgements are cumulative: a stream is answered at most every ACK_INTERVAL seconds,
# sooner when ACK_EVERY messages wait or a gap is to be reported. At one message a second
# that halves the answers, with the agent's outbox holding two seconds more.
ACK_INTERVAL = 2.0
ACK_EVERY = 32


class Received:
    """An agent's message as it came off the wire and parsed: the journal keeps the
    bytes as they are, so nothing is serialized twice."""

    __slots__ = ("message", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.message = pb.StreamTelemetryRequest.FromString(raw)

    @classmethod
    def of(cls, message: pb.StreamTelemetryRequest) -> Received:
        return cls(message.SerializeToString())


@dataclass(frozen=True, slots=True)
class _Pending:
    durable: asyncio.Future[None] | None  # None: a duplicate, nothing to wait for
    sequence: int
    missing: tuple[int, ...]


class Ingest:
    def __init__(
        self, hub: TelemetryHub, journal: Journal, *, ack_interval: float = ACK_INTERVAL
    ) -> None:
        self.hub = hub
        self.journal = journal
        self.streams = 0
        self.ack_interval = ack_interval

    async def serve(
        self, requests: AsyncIterator[Received]
    ) -> AsyncIterator[pb.StreamTelemetryResponse]:
        first = await anext(aiter(requests), None)
        if first is None:
            return
        state, stream = self.hub.hello(first.message)
        # The hello is journaled too, so a replay knows the instance and inventory.
        _quietly(self._append(state, first))
        self.streams += 1
        try:
            yield pb.StreamTelemetryResponse(acked_sequence=state.durable)
            queue: asyncio.Queue[_Pending | object] = asyncio.Queue()

            async def read() -> None:
                try:
                    async for received in requests:
                        request = received.message
                        verdict = self.hub.accept(state, stream, request)
                        durable = None
                        if verdict.fresh:
                            durable = self._append(state, received)
                        queue.put_nowait(_Pending(durable, request.sequence, verdict.missing))
                finally:
                    queue.put_nowait(_END)

            reader = asyncio.create_task(read())
            loop = asyncio.get_running_loop()
            last_answer = loop.time()
            unanswered = 0
            missing: list[int] = []
            timer: asyncio.TimerHandle | None = None
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, _Pending):
                        await self._made_durable(state, item)
                        missing += item.missing
                        unanswered += 1
                    due = last_answer + self.ack_interval
                    if unanswered and (
                        item is _TIMER or missing or unanswered >= ACK_EVERY or loop.time() >= due
                    ):
                        # Answer once for everything durable so far.
                        if timer is not None:
                            timer.cancel()
                            timer = None
                        yield pb.StreamTelemetryResponse(
                            acked_sequence=state.durable, missing_sequences=missing
                        )
                        last_answer, unanswered, missing = loop.time(), 0, []
                    elif unanswered and timer is None:
                        timer = loop.call_at(due, queue.put_nowait, _TIMER)
                if unanswered:
                    yield pb.StreamTelemetryResponse(acked_sequence=state.durable)
                await reader  # raises what ended the reading, if anything did
            finally:
                if timer is not None:
                    timer.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            self.streams -= 1
            self.hub.closed(state, stream)

    def _append(self, state: NodeState, received: Received) -> asyncio.Future[None]:
        try:
            return self.journal.append(state.key, received.raw)
        except JournalError as error:
            self.hub.rollback(state)
            raise Unavailable(str(error)) from error

    async def _made_durable(self, state: NodeState, item: _Pending) -> None:
        if item.durable is None:
            return
        try:
            await item.durable
        except JournalError as error:
            self.hub.rollback(state)
            raise Unavailable(str(error)) from error
        self.hub.committed(state, item.sequence)


def _quietly(future: asyncio.Future[None]) -> None:
    """Nobody waits for the hello's record; its failure, if any, is still retrieved (so not
    logged as lost). A failing journal fails the stream's next message anyway."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
