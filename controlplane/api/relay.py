"""RelayTelemetry: the streams of many agents over one relay stream.

Each relayed agent stream is served by Ingest.serve exactly as a direct
StreamTelemetry stream is, so the sequence, duplicate and acknowledgement rules
live in one place; this module only takes the relay's batches apart into those
streams and puts their answers back together. Answers ready together travel
together: under load one relay message carries many agents' acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from controlplane.api.status import to_status_proto
from controlplane.errors import FlareError, InvalidArgument
from controlplane.telemetry.ingest import Ingest, Received
from flare.v1 import telemetry_service_pb2 as pb
from flare.violation import FieldViolation

log = logging.getLogger(__name__)

# At most this many answers in one relay message.
MAX_ANSWERS = 1024
_END = object()  # every relayed stream has ended
Admit = Callable[[Received], None]  # raises when the relay may not open this stream


async def serve_relay(
    ingest: Ingest, requests: AsyncIterator[pb.RelayTelemetryRequest], admit: Admit | None = None
) -> AsyncIterator[pb.RelayTelemetryResponse]:
    """Serves one relay's stream until the relay closes it; ending it (the relay gone)
    ends every agent stream it carried."""
    answers: asyncio.Queue[pb.RelayedAnswer | object] = asyncio.Queue()
    # What each open agent stream has yet to take: a message, an error that ends it,
    # or None when the agent closed it.
    inboxes: dict[int, asyncio.Queue[Received | FlareError | None]] = {}
    sessions: set[asyncio.Task[None]] = set()
    highest = 0  # the highest stream number seen: numbers at or below it have been opened

    async def session(number: int, inbox: asyncio.Queue[Received | FlareError | None]) -> None:
        async def messages() -> AsyncIterator[Received]:
            while (item := await inbox.get()) is not None:
                if isinstance(item, FlareError):
                    raise item
                yield item

        ended = status_pb2.Status(code=code_pb2.OK)
        try:
            stream = messages()
            if admit is not None:
                stream = admitted(stream, admit)
            async for response in ingest.serve(stream):
                answers.put_nowait(
                    pb.RelayedAnswer(stream=number, response=response.SerializeToString())
                )
        except FlareError as error:
            ended = to_status_proto(error)
        except Exception:
            log.exception("relayed agent stream %d failed", number)
            ended = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
        finally:
            inboxes.pop(number, None)
        answers.put_nowait(pb.RelayedAnswer(stream=number, ended=ended))

    def deliver(message: pb.RelayedMessage) -> None:
        nonlocal highest
        inbox = inboxes.get(message.stream)
        if inbox is None:
            if message.stream <= highest or message.closed:
                return  # a stream that has ended (or never sent anything)
            highest = message.stream
            inbox = inboxes[message.stream] = asyncio.Queue()
            task = asyncio.create_task(session(message.stream, inbox))
            sessions.add(task)
            task.add_done_callback(sessions.discard)
        if message.closed:
            inbox.put_nowait(None)
            return
        try:
            inbox.put_nowait(Received(message.request))
        except DecodeError:
            inbox.put_nowait(
                InvalidArgument(
                    [FieldViolation("messages.request", "not a serialized StreamTelemetryRequest")]
                )
            )

    async def read() -> None:
        try:
            async for request in requests:
                for message in request.messages:
                    deliver(message)
        finally:
            for inbox in inboxes.values():
                inbox.put_nowait(None)
            await asyncio.gather(*sessions, return_exceptions=True)
            answers.put_nowait(_END)

    reader = asyncio.create_task(read())
    try:
        done = False
        while not done:
            batch: list[pb.RelayedAnswer] = []
            item = await answers.get()
            while True:
                if isinstance(item, pb.RelayedAnswer):
                    batch.append(item)
                else:
                    done = True
                if done or len(batch) == MAX_ANSWERS or answers.empty():
                    break
                item = answers.get_nowait()
            if batch:
                yield pb.RelayTelemetryResponse(answers=batch)
        await reader  # raises what ended the relay's stream, if anything did
    finally:
        reader.cancel()
        for task in list(sessions):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await asyncio.gather(*sessions, return_exceptions=True)


async def admitted(stream: AsyncIterator[Received], admit: Admit) -> AsyncIterator[Received]:
    """The stream, once `admit` accepted its first message (it raises when not)."""
    first = await anext(aiter(stream), None)
    if first is None:
        return
    admit(first)
    yield first
    async for received in stream:
        yield received
