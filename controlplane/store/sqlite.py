"""The embedded store: one SQLite database in WAL mode.

All statements run on one database thread. It takes whatever operations have
queued up, runs them in one transaction (each inside a savepoint, so one
failing operation does not undo the others) and commits once: group commit.
A caller's future resolves only after its transaction committed, so an
acknowledged CreateIntent is on disk. `synchronous=FULL` (the default) makes
each commit durable against power loss; `NORMAL` against a crash of the
process only, which is faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from controlplane.errors import AlreadyExists, InvalidArgument, NotFound, OutOfRange
from controlplane.intents import lifecycle
from controlplane.names import tenant_of
from controlplane.store.base import (
    Change,
    IntentEvent,
    IntentPage,
    QueueSubscription,
    TokenRecord,
)
from flare.v1 import intent_pb2, token_service_pb2
from flare.violation import FieldViolation

T = TypeVar("T")
log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    name       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    seq        INTEGER NOT NULL UNIQUE,
    state      INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    request_id TEXT,
    body       BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS intents_by_request ON intents (tenant, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS intents_by_tenant ON intents (tenant, seq);
CREATE INDEX IF NOT EXISTS intents_by_state ON intents (state);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    tenant   TEXT NOT NULL,
    name     TEXT NOT NULL,
    body     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, revision);
CREATE TABLE IF NOT EXISTS tokens (
    name        TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    body        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_tenant ON tokens (tenant, name);
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
"""
BATCH_LIMIT = 512

Synchronous = Literal["FULL", "NORMAL"]
_Job = Callable[[sqlite3.Connection], Any]


class _Operation:
    __slots__ = ("events", "future", "job", "loop")

    def __init__(self, job: _Job, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop):
        self.job = job
        self.future = future
        self.loop = loop
        self.events: list[IntentEvent] = []


class SqliteStore:
    """IntentStore and TokenStore on one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        event_retention: int = 100_000,
    ) -> None:
        self._path = str(path)
        self._synchronous = synchronous
        self._retention = event_retention
        self._jobs: queue.SimpleQueue[_Operation | None] = queue.SimpleQueue()
        self._subscribers: set[QueueSubscription] = set()
        self._revision = 0
        self._seq = 0
        self._oldest_event = 0
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    # -- life cycle ---------------------------------------------------------

    def open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        self._revision = conn.execute(
            "SELECT max(coalesce((SELECT max(revision) FROM events), 0),"
            " coalesce((SELECT max(revision) FROM intents), 0))"
        ).fetchone()[0]
        self._seq = conn.execute("SELECT coalesce(max(seq), 0) FROM intents").fetchone()[0]
        self._oldest_event = conn.execute(
            "SELECT coalesce(min(revision), 0) FROM events"
        ).fetchone()[0]
        self._conn = conn
        self._thread = threading.Thread(target=self._run, name="flare-sqlite", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def revision(self) -> int:
        return self._revision

    # -- the database thread ------------------------------------------------

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Operation(job, future, loop))
        return future

    def _run(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_LIMIT:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            self._run_batch(conn, batch)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Operation]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        revision, seq = self._revision, self._seq
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op.job(conn)))
                conn.execute("RELEASE op")
            except Exception as error:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                op.events.clear()
                outcomes.append((False, error))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            log.exception("commit failed")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._revision, self._seq = revision, seq
            outcomes = [(False, error)] * len(batch)
            for op in batch:
                op.events.clear()
        self._compact(conn)
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            op.loop.call_soon_threadsafe(self._settle, op, ok, value)

    def _settle(self, op: _Operation, ok: bool, value: Any) -> None:
        for event in op.events:
            for subscriber in list(self._subscribers):
                subscriber.push(event)
        if op.future.done():
            return
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(value)

    def _compact(self, conn: sqlite3.Connection) -> None:
        floor = self._revision - self._retention
        if floor > self._oldest_event + self._retention // 10:
            conn.execute("DELETE FROM events WHERE revision <= ?", (floor,))
            self._oldest_event = floor + 1

    def _log(
        self, conn: sqlite3.Connection, op_events: list[IntentEvent], intent: intent_pb2.Intent
    ) -> bytes:
        """Give `intent` the next revision, log it; returns its serialised form."""
        self._revision += 1
        intent.revision = self._revision
        if intent.history and intent.history[-1].revision == 0:
            intent.history[-1].revision = self._revision
        body = intent.SerializeToString()
        tenant = tenant_of(intent.name)
        conn.execute(
            "INSERT INTO events (revision, tenant, name, body) VALUES (?, ?, ?, ?)",
            (self._revision, tenant, intent.name, body),
        )
        op_events.append(IntentEvent(self._revision, tenant, intent))
        return body

    # -- intents ------------------------------------------------------------

    async def create(
        self, intent: intent_pb2.Intent, *, tenant: str, request_id: str
    ) -> tuple[intent_pb2.Intent, bool]:
        events: list[IntentEvent] = []

        def job(conn: sqlite3.Connection) -> tuple[intent_pb2.Intent, bool]:
            if request_id:
                row = conn.execute(
                    "SELECT body FROM intents WHERE tenant = ? AND request_id = ?",
                    (tenant, request_id),
                ).fetchone()
                if row:
                    return _intent(row[0]), False
            if conn.execute("SELECT 1 FROM intents WHERE name = ?", (intent.name,)).fetchone():
                raise AlreadyExists(f"{intent.name} already exists")
            stored = intent_pb2.Intent()
            stored.CopyFrom(intent)
            body = self._log(conn, events, stored)
            self._seq += 1
            conn.execute(
                "INSERT INTO intents (name, tenant, seq, state, revision, request_id, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    stored.name,
                    tenant,
                    self._seq,
                    stored.state,
                    stored.revision,
                    request_id or None,
                    body,
                ),
            )
            return stored, True

        return await self._submit_with_events(job, events)

    async def _submit_with_events(
        self, job: Callable[[sqlite3.Connection], T], events: list[IntentEvent]
    ) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        op = _Operation(job, future, loop)
        op.events = events
        self._jobs.put(op)
        return await future

    async def get(self, name: str) -> intent_pb2.Intent | None:
        def job(conn: sqlite3.Connection) -> intent_pb2.Intent | None:
            row = conn.execute("SELECT body FROM intents WHERE name = ?", (name,)).fetchone()
            return _intent(row[0]) if row else None

        result: intent_pb2.Intent | None = await self._submit(job)
        return result

    async def list_intents(
        self, *, tenant: str, states: Sequence[int], limit: int, cursor: int | str | None
    ) -> IntentPage:
        if isinstance(cursor, str):
            raise InvalidArgument([FieldViolation("page_token", "not a token from this API")])

        def job(conn: sqlite3.Connection) -> IntentPage:
            query = "SELECT seq, body FROM intents WHERE tenant = ?"
            params: list[Any] = [tenant]
            if cursor is not None:
                query += " AND seq < ?"
                params.append(cursor)
            if states:
                query += f" AND state IN ({', '.join('?' * len(states))})"
                params.extend(states)
            query += " ORDER BY seq DESC LIMIT ?"
            params.append(limit + 1)
            rows = conn.execute(query, params).fetchall()
            page = [_intent(body) for _, body in rows[:limit]]
            next_cursor = rows[limit - 1][0] if len(rows) > limit else None
            return IntentPage(page, next_cursor)

        page: IntentPage = await self._submit(job)
        return page

    async def update(self, name: str, change: Change) -> intent_pb2.Intent:
        events: list[IntentEvent] = []

        def job(conn: sqlite3.Connection) -> intent_pb2.Intent:
            row = conn.execute("SELECT body FROM intents WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"{name} not found")
            current = _intent(row[0])
            changed = change(current)
            if changed is None:
                return current
            body = self._log(conn, events, changed)
            conn.execute(
                "UPDATE intents SET state = ?, revision = ?, body = ? WHERE name = ?",
                (changed.state, changed.revision, body, name),
            )
            return changed

        return await self._submit_with_events(job, events)

    async def events_since(
        self, revision: int, *, tenant: str, name: str = "", limit: int = 1000
    ) -> list[IntentEvent]:
        def job(conn: sqlite3.Connection) -> list[IntentEvent]:
            if revision and revision + 1 < self._oldest_event:
                raise OutOfRange(
                    f"revision {revision} was compacted; the oldest kept is {self._oldest_event}. "
                    "Watch again from revision 0."
                )
            if name:
                rows = conn.execute(
                    "SELECT revision, tenant, body FROM events WHERE name = ? AND revision > ?"
                    " ORDER BY revision LIMIT ?",
                    (name, revision, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT revision, tenant, body FROM events WHERE tenant = ? AND revision > ?"
                    " ORDER BY revision LIMIT ?",
                    (tenant, revision, limit),
                ).fetchall()
            return [IntentEvent(r, t, _intent(b)) for r, t, b in rows]

        result: list[IntentEvent] = await self._submit(job)
        return result

    async def live(self) -> list[intent_pb2.Intent]:
        terminal = sorted(lifecycle.TERMINAL)

        def job(conn: sqlite3.Connection) -> list[intent_pb2.Intent]:
            rows = conn.execute(
                f"SELECT body FROM intents WHERE state NOT IN ({', '.join('?' * len(terminal))})"
                " ORDER BY seq",
                terminal,
            ).fetchall()
            return [_intent(body) for (body,) in rows]

        result: list[intent_pb2.Intent] = await self._submit(job)
        return result

    async def ended_since(self, since: datetime) -> list[intent_pb2.Intent]:
        terminal = sorted(lifecycle.TERMINAL)

        def job(conn: sqlite3.Connection) -> list[intent_pb2.Intent]:
            rows = conn.execute(
                f"SELECT body FROM intents WHERE state IN ({', '.join('?' * len(terminal))})",
                terminal,
            ).fetchall()
            return [_intent(body) for (body,) in rows]

        ended: list[intent_pb2.Intent] = await self._submit(job)
        return [i for i in ended if i.update_time.ToDatetime(tzinfo=since.tzinfo) >= since]

    def subscribe(self) -> QueueSubscription:
        return QueueSubscription(self._subscribers)

    # -- tokens -------------------------------------------------------------

    async def add_token(self, record: TokenRecord) -> None:
        def job(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO tokens (name, tenant, secret_hash, body) VALUES (?, ?, ?, ?)",
                    (
                        record.token.name,
                        record.tenant,
                        record.secret_hash,
                        record.token.SerializeToString(),
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise AlreadyExists(f"{record.token.name} already exists") from error

        await self._submit(job)

    async def token(self, name: str) -> TokenRecord | None:
        def job(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(
                "SELECT tenant, secret_hash, body FROM tokens WHERE name = ?", (name,)
            ).fetchone()
            return _token(*row) if row else None

        result: TokenRecord | None = await self._submit(job)
        return result

    async def tokens(self, *, tenant: str, limit: int, cursor: str) -> list[TokenRecord]:
        def job(conn: sqlite3.Connection) -> list[TokenRecord]:
            rows = conn.execute(
                "SELECT tenant, secret_hash, body FROM tokens WHERE tenant = ? AND name > ?"
                " ORDER BY name LIMIT ?",
                (tenant, cursor, limit),
            ).fetchall()
            return [_token(*row) for row in rows]

        result: list[TokenRecord] = await self._submit(job)
        return result

    async def revoke_token(self, name: str, revoke_time_seconds: int) -> TokenRecord | None:
        def job(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(
                "SELECT tenant, secret_hash, body FROM tokens WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return None
            record = _token(*row)
            if not record.token.HasField("revoke_time"):
                record.token.revoke_time.seconds = revoke_time_seconds
                conn.execute(
                    "UPDATE tokens SET body = ? WHERE name = ?",
                    (record.token.SerializeToString(), name),
                )
            return record

        result: TokenRecord | None = await self._submit(job)
        return result

    # -- state ------------------------------------------------------------------

    async def load_state(self, name: str) -> bytes | None:
        def job(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT body FROM state WHERE name = ?", (name,)).fetchone()
            return bytes(row[0]) if row else None

        result: bytes | None = await self._submit(job)
        return result

    async def save_state(self, name: str, data: bytes) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO state (name, body) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET body = excluded.body",
                (name, data),
            )

        await self._submit(job)


def _intent(body: bytes) -> intent_pb2.Intent:
    intent = intent_pb2.Intent()
    intent.ParseFromString(body)
    return intent


def _token(tenant: str, secret_hash: bytes, body: bytes) -> TokenRecord:
    token = token_service_pb2.Token()
    token.ParseFromString(body)
    return TokenRecord(tenant, token, secret_hash)
