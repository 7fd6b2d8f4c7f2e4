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

_END = None


@dataclass(frozen=True, slots=True)
class _Pending:
    durable: asyncio.Future[None] | None  # None: a duplicate, nothing to wait for
    sequence: int
    missing: tuple[int, ...]


class Ingest:
    def __init__(self, hub: TelemetryHub, journal: Journal) -> None:
        self.hub = hub
        self.journal = journal
        self.streams = 0

    async def serve(
        self, requests: AsyncIterator[pb.StreamTelemetryRequest]
    ) -> AsyncIterator[pb.StreamTelemetryResponse]:
        first = await anext(aiter(requests), None)
        if first is None:
            return
        state, stream = self.hub.hello(first)
        # The hello is journaled too, so a replay knows the instance and inventory.
        _quietly(self._append(state, first))
        self.streams += 1
        try:
            yield pb.StreamTelemetryResponse(acked_sequence=state.durable)
            queue: asyncio.Queue[_Pending | None] = asyncio.Queue()

            async def read() -> None:
                try:
                    async for request in requests:
                        verdict = self.hub.accept(state, stream, request)
                        durable = None
                        if verdict.fresh:
                            durable = self._append(state, request)
                        queue.put_nowait(_Pending(durable, request.sequence, verdict.missing))
                finally:
                    queue.put_nowait(_END)

            reader = asyncio.create_task(read())
            try:
                while (item := await queue.get()) is not _END:
                    await self._made_durable(state, item)
                    missing = list(item.missing)
                    # One answer covers whatever queued up behind it meanwhile.
                    while not queue.empty():
                        following = queue.get_nowait()
                        if following is _END:
                            queue.put_nowait(_END)
                            break
                        await self._made_durable(state, following)
                        missing += following.missing
                    yield pb.StreamTelemetryResponse(
                        acked_sequence=state.durable, missing_sequences=missing
                    )
                await reader  # raises what ended the reading, if anything did
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            self.streams -= 1
            self.hub.closed(state, stream)

    def _append(
        self, state: NodeState, request: pb.StreamTelemetryRequest
    ) -> asyncio.Future[None]:
        try:
            return self.journal.append(state.key, request.SerializeToString())
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
    """A future nobody awaits, whose failure is still retrieved (and so not logged as lost)."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
