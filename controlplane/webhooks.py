"""Webhooks: a signed POST to the intent's `notification_url` and to its tenant's
webhook at every state change, in order per intent and URL, retried with
backoff until the receiver answers 2xx.

Each delivery is JSON:
    {"id": "<uid>/<revision>", "intent": name, "revision": n, "state": "RUNNING",
     "previous_state": "DEPLOYING", "reason": "Running", "message": "...", "time": "..."}
signed with HMAC-SHA256 under the control plane's webhook secret:
    X-Flare-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>
The receiver recomputes it, rejects old timestamps (replays), and drops an `id`
it has seen (a retry after its 2xx was lost): delivery is at least once.

The leader delivers (in cluster mode the others would only repeat it). What is
owed survives a restart or a new leader: the store keeps a cursor (state
`webhooks`) — the revision up to which every change was queued, and for each
(intent, URL) with notices outstanding the revision of the oldest — and the
next leader replays the changes owed from the intents' histories, so delivery
is at least once across restarts too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import aiohttp

from controlplane.clock import utc_now
from controlplane.intents.validation import is_webhook_url
from controlplane.names import tenant_of
from controlplane.store.base import IntentStore, StateStore, Subscription
from flare.v1 import intent_pb2

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Flare-Signature"
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 60.0
# About ten minutes of retries before a delivery is given up (and logged).
MAX_ATTEMPTS = 15
TIMEOUT_SECONDS = 10.0
STATE = "webhooks"
SAVE_SECONDS = 0.5
# Intents that ended this long ago are not looked at for notices owed.
REPLAY_WINDOW = timedelta(days=1)
Key = tuple[str, str]  # (intent, URL)


def parse_webhooks(text: str) -> dict[str, str]:
    """ "acme=https://hooks.acme.example/flare;globex=https://…" -> {tenant: URL}."""
    hooks = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        tenant, _, url = entry.partition("=")
        if not is_webhook_url(url.strip()):
            raise ValueError(
                f"webhook of {tenant.strip()!r}: {url.strip()!r} is not an http(s) URL"
            )
        hooks[tenant.strip()] = url.strip()
    return hooks


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected, header) and abs(now - timestamp) <= tolerance


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    body: bytes


def delivery_body(intent: intent_pb2.Intent) -> bytes | None:
    """The notice of the change that made this revision; None when it changed no
    state (an event noted in the history, an edit)."""
    if not intent.history:
        return None
    last = intent.history[-1]
    if last.revision != intent.revision:
        return None
    return notice(intent, last)


def notice(intent: intent_pb2.Intent, change: intent_pb2.StateTransition) -> bytes | None:
    """The notice of one change in the intent's history; None when it changed no state."""
    if change.from_state == change.to_state:
        return None
    document = {
        "id": f"{intent.uid}/{change.revision}",
        "intent": intent.name,
        "revision": change.revision,
        "state": intent_pb2.State.Name(change.to_state).removeprefix("STATE_"),
        "previous_state": intent_pb2.State.Name(change.from_state).removeprefix("STATE_"),
        "reason": change.reason,
        "message": change.message,
        "time": change.time.ToJsonString(),
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class Cursor:
    """What is owed: every change up to `watermark` was queued; `pending` has, per
    (intent, URL) with notices outstanding, the revision of the oldest."""

    watermark: int
    pending: dict[Key, int]

    def encode(self) -> bytes:
        rows = [[intent, url, revision] for (intent, url), revision in self.pending.items()]
        return json.dumps({"watermark": self.watermark, "pending": rows}).encode()

    @staticmethod
    def decode(data: bytes) -> Cursor:
        document = json.loads(data)
        return Cursor(
            int(document["watermark"]),
            {(str(i), str(u)): int(r) for i, u, r in document["pending"]},
        )


class Webhooks:
    def __init__(
        self,
        store: IntentStore,
        state: StateStore,
        tenant_urls: Mapping[str, str],
        secret: bytes,
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._store = store
        self._state = state
        self._tenant_urls = dict(tenant_urls)
        self._secret = secret
        self._first_retry = first_retry
        self._max_attempts = max_attempts
        # One ordered queue of (revision, body) and one sender per (intent, URL).
        self._queues: dict[Key, deque[tuple[int, bytes]]] = {}
        self._senders: dict[Key, asyncio.Task[None]] = {}
        self._cursor = Cursor(0, {})
        self._dirty = False
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Replays what an earlier leader owed, then follows the store."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        subscription = self._store.subscribe()
        upto = self._store.revision
        saved = await self._state.load_state(STATE)
        if saved is None:  # the first start: nothing is owed yet
            self._cursor = Cursor(upto, {})
        else:
            self._cursor = Cursor.decode(saved)
            owed = self._cursor
            await self._replay(dict(owed.pending), owed.watermark + 1, upto)
            self._cursor.watermark = max(self._cursor.watermark, upto)
        self._dirty = True
        self._tasks = [
            asyncio.create_task(self._follow(subscription, upto)),
            asyncio.create_task(self._save_now_and_then()),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._senders.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._save()
        if self._session is not None:
            await self._session.close()

    async def _replay(self, pending: Mapping[Key, int], after_watermark: int, upto: int) -> None:
        """Queues, from their histories, the notices of the changes up to `upto` of the
        live intents and of those that ended lately: for an (intent, URL) with notices
        outstanding from its oldest, for the others from `after_watermark`."""
        recent = await self._store.ended_since(utc_now() - REPLAY_WINDOW)
        for intent in [*await self._store.live(), *recent]:
            for url in self._urls(intent):
                first = pending.get((intent.name, url), after_watermark)
                for change in intent.history:
                    if first <= change.revision <= upto:
                        body = notice(intent, change)
                        if body is not None:
                            self._enqueue((intent.name, url), change.revision, body)

    async def _follow(self, subscription: Subscription, replayed_upto: int) -> None:
        try:
            while True:
                event = await subscription.next()
                if event is None:  # fell behind: replay what came after the watermark
                    upto = self._store.revision
                    await self._replay({}, self._cursor.watermark + 1, upto)
                    self._advance(upto)
                    continue
                if event.revision <= replayed_upto:
                    continue
                self.notify(event.intent)
                self._advance(event.revision)
        finally:
            subscription.close()

    def _advance(self, revision: int) -> None:
        if revision > self._cursor.watermark:
            self._cursor.watermark = revision
            self._dirty = True

    def _urls(self, intent: intent_pb2.Intent) -> list[str]:
        urls = [intent.notification_url, self._tenant_urls.get(tenant_of(intent.name), "")]
        return list(dict.fromkeys(u for u in urls if u))

    def notify(self, intent: intent_pb2.Intent) -> None:
        body = delivery_body(intent)
        if body is None:
            return
        for url in self._urls(intent):
            self._enqueue((intent.name, url), intent.revision, body)

    def _enqueue(self, key: Key, revision: int, body: bytes) -> None:
        queue = self._queues.setdefault(key, deque())
        queue.append((revision, body))
        if key not in self._cursor.pending:
            self._cursor.pending[key] = revision
            self._dirty = True
        if key not in self._senders or self._senders[key].done():
            self._senders[key] = asyncio.create_task(self._send_all(key, queue))

    async def _send_all(self, key: Key, queue: deque[tuple[int, bytes]]) -> None:
        """Sends one intent's notices to one URL, in order; each until it lands."""
        while queue:
            _, body = queue[0]
            await self._send(key, body)
            queue.popleft()
            if queue:
                self._cursor.pending[key] = queue[0][0]
            else:
                self._cursor.pending.pop(key, None)
            self._dirty = True
        self._queues.pop(key, None)
        self._senders.pop(key, None)

    async def _save_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(SAVE_SECONDS)
            try:
                await self._save()
            except Exception:  # the store's trouble: tried again at the next beat
                log.exception("saving the webhooks' cursor failed")

    async def _save(self) -> None:
        if self._dirty:
            self._dirty = False
            await self._state.save_state(STATE, self._cursor.encode())

    async def _send(self, key: Key, body: bytes) -> None:
        assert self._session is not None
        intent, url = key
        delay = self._first_retry
        for attempt in range(1, self._max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self._secret, int(time.time()), body),
            }
            try:
                async with self._session.post(url, data=body, headers=headers) as reply:
                    if 200 <= reply.status < 300:
                        return
                    why = f"answered {reply.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"
            log.info(
                "webhook not delivered, retrying",
                extra={"intent": intent, "url": url, "attempt": attempt, "why": why},
            )
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, MAX_RETRY_SECONDS)
        log.error("webhook given up", extra={"intent": intent, "url": url})
