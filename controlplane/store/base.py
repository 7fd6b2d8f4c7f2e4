"""What the control plane needs from durable state.

An `IntentStore` keeps intents and a log of their changes: every change gets
the next store revision, so a watcher can resume after any revision it saw.
A `TokenStore` keeps API tokens (hashes only). Implementations: SQLite for the
embedded default; FlareIntent and FlareToken objects for cluster mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flare.v1 import intent_pb2, token_service_pb2

# A pure change: the intent as stored -> the new intent, or None for "no change".
Change = Callable[[intent_pb2.Intent], intent_pb2.Intent | None]


@dataclass(frozen=True, slots=True)
class IntentEvent:
    revision: int
    tenant: str
    intent: intent_pb2.Intent


@dataclass(frozen=True, slots=True)
class IntentPage:
    intents: Sequence[intent_pb2.Intent]
    # Cursor for the next page (each store has its own kind); None on the last page.
    next_cursor: int | str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    tenant: str
    token: token_service_pb2.Token
    secret_hash: bytes


class Subscription(Protocol):
    async def next(self) -> IntentEvent | None:
        """The next event; None when the subscriber fell behind and must
        re-read from the log (events_since)."""

    def close(self) -> None: ...


class QueueSubscription:
    """A Subscription on a bounded queue. A subscriber that falls `limit` events
    behind gets one None instead of the rest: it re-reads the log from where it was."""

    def __init__(self, members: set[QueueSubscription], limit: int = 1024) -> None:
        self._members = members
        self._limit = limit
        self._queue: asyncio.Queue[IntentEvent | None] = asyncio.Queue()
        self._overflowed = False
        members.add(self)

    def push(self, event: IntentEvent) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= self._limit:
            self._overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    async def next(self) -> IntentEvent | None:
        event = await self._queue.get()
        if event is None:
            self._overflowed = False
        return event

    def close(self) -> None:
        self._members.discard(self)


class IntentStore(Protocol):
    async def create(
        self, intent: intent_pb2.Intent, *, tenant: str, request_id: str
    ) -> tuple[intent_pb2.Intent, bool]:
        """Store a new intent, give it a revision. With a request_id already
        used in the tenant, return the intent it created and False. Raises
        AlreadyExists when the name is taken."""

    async def get(self, name: str) -> intent_pb2.Intent | None: ...

    async def list_intents(
        self, *, tenant: str, states: Sequence[int], limit: int, cursor: int | str | None
    ) -> IntentPage:
        """Newest first. Raises InvalidArgument for a cursor this store did not issue."""

    async def update(self, name: str, change: Change) -> intent_pb2.Intent:
        """Apply `change` atomically to the stored intent (read, change, write
        in one transaction, so concurrent updates never interleave). Raises
        NotFound; errors raised by `change` propagate and store nothing."""

    async def events_since(
        self, revision: int, *, tenant: str, name: str = "", limit: int = 1000
    ) -> list[IntentEvent]:
        """Logged changes after `revision`, oldest first. Raises OutOfRange
        when that revision has been compacted away."""

    async def live(self) -> list[intent_pb2.Intent]:
        """Intents not in a terminal state (for recovery after a restart)."""

    async def ended_since(self, since: datetime) -> list[intent_pb2.Intent]:
        """Intents in a terminal state whose last change was at or after `since`
        (for the fair share's usage after a restart)."""

    def subscribe(self) -> Subscription:
        """Changes committed from now on, in revision order."""

    @property
    def revision(self) -> int: ...


class StateStore(Protocol):
    """Small named blobs of the control plane's own state (the webhooks' cursor)."""

    async def load_state(self, name: str) -> bytes | None: ...

    async def save_state(self, name: str, data: bytes) -> None: ...


class TokenStore(Protocol):
    async def add_token(self, record: TokenRecord) -> None: ...

    async def token(self, name: str) -> TokenRecord | None: ...

    async def tokens(self, *, tenant: str, limit: int, cursor: str) -> list[TokenRecord]:
        """Tokens of a tenant ordered by name, after `cursor`."""

    async def revoke_token(self, name: str, revoke_time_seconds: int) -> TokenRecord | None: ...
