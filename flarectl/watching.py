"""Following an intent's changes: stop conditions, a deadline, and resuming
from the last revision seen when the connection drops."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from enum import Enum

import grpc

from flare.v1 import intent_service_pb2
from flarectl.client import ApiError, Client
from flarectl.names import TERMINAL_STATES

MAX_BACKOFF = 5.0


class Outcome(Enum):
    REACHED = "reached"  # an intent entered one of the --until states
    ENDED = "ended"  # the watched intent reached a terminal state
    TIMED_OUT = "timed out"


def follow(
    client: Client,
    name: str,
    *,
    start_revision: int,
    until: Collection[int],
    timeout: float | None,
    on_event: Callable[[intent_service_pb2.WatchIntentResponse], None],
    on_reconnect: Callable[[ApiError, int], None],
) -> Outcome:
    """Calls `on_event` for every change until a stop condition holds, and
    `on_reconnect` when the connection drops (once until it delivers again).

    A watch of one intent ends when that intent reaches a terminal state, since
    nothing changes after. A dropped connection is resumed after the last
    revision seen, so no change is lost or repeated; a server that cannot be
    reached at the start is an error."""
    deadline = None if timeout is None else time.monotonic() + timeout
    revision = start_revision
    connected = False  # an event came through at least once
    lost = False  # the connection dropped and has not delivered an event since
    backoff = 0.5
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return Outcome.TIMED_OUT
        try:
            for event in client.watch_intent(name, start_revision=revision, timeout=remaining):
                connected, lost = True, False
                backoff = 0.5
                revision = max(revision, event.revision)
                on_event(event)
                state = event.intent.state
                if state in until:
                    return Outcome.REACHED
                if name and state in TERMINAL_STATES:
                    return Outcome.ENDED
            # The server closed the stream without an error: resume below.
        except ApiError as error:
            if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                return Outcome.TIMED_OUT
            if error.code != grpc.StatusCode.UNAVAILABLE or not connected:
                raise
            if not lost:
                on_reconnect(error, revision)
            lost = True
        pause = backoff if deadline is None else min(backoff, deadline - time.monotonic())
        time.sleep(max(0.0, pause))
        backoff = min(backoff * 2, MAX_BACKOFF)
