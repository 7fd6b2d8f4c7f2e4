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
queued lives in memory: a restart delivers the changes made after it, not the
ones still queued before it.
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
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from controlplane.intents.validation import is_webhook_url
from controlplane.names import tenant_of
from controlplane.store.base import IntentStore, Subscription
from flare.v1 import intent_pb2

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Flare-Signature"
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 60.0
# About ten minutes of retries before a delivery is given up (and logged).
MAX_ATTEMPTS = 15
TIMEOUT_SECONDS = 10.0


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
    if last.from_state == last.to_state or last.revision != intent.revision:
        return None
    document = {
        "id": f"{intent.uid}/{intent.revision}",
        "intent": intent.name,
        "revision": intent.revision,
        "state": intent_pb2.State.Name(last.to_state).removeprefix("STATE_"),
        "previous_state": intent_pb2.State.Name(last.from_state).removeprefix("STATE_"),
        "reason": last.reason,
        "message": last.message,
        "time": last.time.ToJsonString(),
    }
    return json.dumps(document, separators=(",", ":")).encode()


class Webhooks:
    def __init__(
        self,
        store: IntentStore,
        tenant_urls: Mapping[str, str],
        secret: bytes,
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._store = store
        self._tenant_urls = dict(tenant_urls)
        self._secret = secret
        self._first_retry = first_retry
        self._max_attempts = max_attempts
        # One ordered queue and one sender per (intent, URL).
        self._queues: dict[tuple[str, str], asyncio.Queue[bytes]] = {}
        self._senders: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._follower: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        self._follower = asyncio.create_task(self._follow(self._store.subscribe()))

    async def stop(self) -> None:
        tasks = [t for t in (self._follower, *self._senders.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _follow(self, subscription: Subscription) -> None:
        try:
            while True:
                event = await subscription.next()
                if event is None:
                    continue  # fell behind: the changes it missed are not notified
                self.notify(event.intent)
        finally:
            subscription.close()

    def notify(self, intent: intent_pb2.Intent) -> None:
        body = delivery_body(intent)
        if body is None:
            return
        urls = [intent.notification_url, self._tenant_urls.get(tenant_of(intent.name), "")]
        for url in dict.fromkeys(u for u in urls if u):
            key = (intent.name, url)
            queue = self._queues.setdefault(key, asyncio.Queue())
            queue.put_nowait(body)
            if key not in self._senders or self._senders[key].done():
                self._senders[key] = asyncio.create_task(self._send_all(key, queue))

    async def _send_all(self, key: tuple[str, str], queue: asyncio.Queue[bytes]) -> None:
        """Sends one intent's notices to one URL, in order; each until it lands."""
        while not queue.empty():
            body = queue.get_nowait()
            await self._send(key, body)
        self._queues.pop(key, None)
        self._senders.pop(key, None)

    async def _send(self, key: tuple[str, str], body: bytes) -> None:
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
