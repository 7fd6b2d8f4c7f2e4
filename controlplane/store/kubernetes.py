"""The cluster-mode store: intents and tokens as FlareIntent and FlareToken objects
in the consumer cluster's API server, so any number of control-plane replicas
share one state kept in etcd.

- Revisions are the API server's resourceVersions (etcd's revision: global and
  increasing), so a watcher's resume point is valid on every replica.
- Writes are read-change-write guarded by the object's resourceVersion; a
  conflict (another replica wrote first) re-reads and applies the change again.
  `get` reads from the API server, so a replica always sees what another one
  just acknowledged.
- One informer per replica (list, then watch with bookmarks) keeps a cache for
  listing and a bounded log of the changes it saw, in resourceVersion order,
  for subscribers and `events_since`. After the watch expires (410 Gone) it lists
  again and logs every object that changed meanwhile at its new revision.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from controlplane.cluster import resources
from controlplane.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Unavailable,
)
from controlplane.intents import lifecycle
from controlplane.names import tenant_of
from controlplane.store.base import (
    Change,
    IntentEvent,
    IntentPage,
    QueueSubscription,
    TokenRecord,
)
from flare.v1 import intent_pb2
from flare.violation import FieldViolation

T = TypeVar("T")
log = logging.getLogger(__name__)

EVENT_RETENTION = 10_000
CONFLICT_RETRIES = 16
SYNC_TIMEOUT = 30.0
WATCH_SECONDS = 60


def _sort_key(intent: intent_pb2.Intent) -> tuple[int, int, str]:
    return (intent.create_time.seconds, intent.create_time.nanos, intent.name)


def _cursor(intent: intent_pb2.Intent) -> str:
    seconds, nanos, name = _sort_key(intent)
    return f"{seconds}:{nanos}:{name}"


def _parse_cursor(cursor: int | str) -> tuple[int, int, str]:
    try:
        seconds, nanos, name = str(cursor).split(":", 2)
        return int(seconds), int(nanos), name
    except ValueError as error:
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from this API")]
        ) from error


def state_object(name: str) -> str:
    """The ConfigMap that keeps the control plane's state `name`."""
    return f"flare-state-{name}"


class KubernetesStore:
    """IntentStore and TokenStore on FlareIntent and FlareToken objects of one namespace."""

    def __init__(
        self, api_client: Any, namespace: str, *, event_retention: int = EVENT_RETENTION
    ) -> None:
        from kubernetes import client

        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="flare-kube")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._informer: threading.Thread | None = None
        self._subscribers: set[QueueSubscription] = set()
        # The newest version of each intent seen, from the informer or our own writes.
        self._cache: dict[str, intent_pb2.Intent] = {}
        self._requests: dict[tuple[str, str], str] = {}  # (tenant, request id) -> name
        self._logged: dict[str, int] = {}  # name -> the newest revision logged for it
        # Changes in resourceVersion order; every change after `_floor` is in it.
        self._events: deque[IntentEvent] = deque(maxlen=event_retention)
        self._floor = 0
        self._revision = 0
        self._listed_once = False

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Lists the intents, then keeps watching them."""
        self._loop = asyncio.get_running_loop()
        self._informer = threading.Thread(target=self._inform, name="flare-informer", daemon=True)
        self._informer.start()
        if not await asyncio.to_thread(self._synced.wait, SYNC_TIMEOUT):
            raise Unavailable(
                f"could not list FlareIntents in namespace {self._namespace} within "
                f"{SYNC_TIMEOUT:.0f}s: is the CRD installed and the API server reachable?"
            )

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def revision(self) -> int:
        return self._revision

    # -- calls to the API server -----------------------------------------------------

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(method, *args, **kwargs)
            )
        except ApiException as error:
            if error.status in (0, 429) or (error.status or 0) >= 500:
                raise Unavailable(
                    f"the API server answered {error.status}: {error.reason}"
                ) from error
            raise
        except HTTPError as error:
            raise Unavailable(f"the API server is unreachable: {error}") from error

    async def _read(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: dict[str, Any] = await self._call(
                self._custom.get_namespaced_custom_object,
                resources.GROUP,
                resources.VERSION,
                self._namespace,
                plural,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def _write(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Creates `body`, or replaces the object when body names the resourceVersion
        it read. ApiException 409 when another write came first."""
        metadata = body["metadata"]
        if "resourceVersion" in metadata:
            replaced: dict[str, Any] = await self._call(
                self._custom.replace_namespaced_custom_object,
                resources.GROUP,
                resources.VERSION,
                self._namespace,
                plural,
                metadata["name"],
                body,
            )
            return replaced
        created: dict[str, Any] = await self._call(
            self._custom.create_namespaced_custom_object,
            resources.GROUP,
            resources.VERSION,
            self._namespace,
            plural,
            body,
        )
        return created

    async def _list(self, plural: str, label_selector: str) -> list[dict[str, Any]]:
        listed: dict[str, Any] = await self._call(
            self._custom.list_namespaced_custom_object,
            resources.GROUP,
            resources.VERSION,
            self._namespace,
            plural,
            label_selector=label_selector,
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    # -- the informer (its own thread; changes are applied on the event loop) ------

    def _inform(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        args = (resources.GROUP, resources.VERSION, self._namespace, resources.INTENTS)
        while not self._stop.is_set():
            try:
                listed = self._custom.list_namespaced_custom_object(*args)
                version = listed["metadata"]["resourceVersion"]
                self._post(self._relisted, listed["items"], int(version))
                self._synced.set()
                while not self._stop.is_set():
                    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                        self._custom.list_namespaced_custom_object,
                        *args,
                        resource_version=version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=WATCH_SECONDS,
                    )
                    for event in stream:
                        kind, body = str(event["type"]), event["object"]
                        version = body["metadata"]["resourceVersion"]
                        if kind == "BOOKMARK":
                            self._post(self._bookmark, int(version))
                        else:
                            self._post(self._observed, kind, body)
                        if self._stop.is_set():
                            return
            except ApiException as error:
                if error.status != 410:  # 410: the watch expired; list again
                    log.warning("watching FlareIntents failed: %s", error.reason)
                    self._stop.wait(1.0)
            except Exception as error:  # the API server went away: try again
                if self._stop.is_set():
                    return
                log.warning("watching FlareIntents failed: %s", error)
                self._stop.wait(1.0)

    def _post(self, handler: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed while we stopped
            self._loop.call_soon_threadsafe(handler, *args)

    def _relisted(self, items: list[dict[str, Any]], version: int) -> None:
        listed = {i.name: i for i in map(resources.intent_of, items)}
        # Against what was logged, not the cache: our own writes reach the cache first.
        changed = sorted(
            (i for i in listed.values() if i.revision > self._logged.get(i.name, 0)),
            key=lambda i: i.revision,
        )
        for name in set(self._cache) - set(listed):
            self._forget(name)
        for intent in listed.values():
            self._remember(intent)
        if not self._listed_once:
            self._floor = version
            self._logged = {name: intent.revision for name, intent in listed.items()}
        else:
            for intent in changed:  # what happened while the watch was down
                self._log(intent)
        self._revision = max(self._revision, version)
        self._listed_once = True

    def _observed(self, kind: str, body: dict[str, Any]) -> None:
        intent = resources.intent_of(body)
        if kind == "DELETED":
            self._forget(intent.name)
        else:
            self._remember(intent)
            self._log(intent)
        self._revision = max(self._revision, intent.revision)

    def _bookmark(self, version: int) -> None:
        self._revision = max(self._revision, version)

    def _cached_revision(self, name: str) -> int:
        cached = self._cache.get(name)
        return cached.revision if cached is not None else 0

    def _remember(self, intent: intent_pb2.Intent) -> None:
        """Our own writes too: a replica reads what it just acknowledged."""
        if intent.revision <= self._cached_revision(intent.name):
            return
        self._cache[intent.name] = intent
        if intent.request_id:
            self._requests[(tenant_of(intent.name), intent.request_id)] = intent.name

    def _forget(self, name: str) -> None:
        self._logged.pop(name, None)
        gone = self._cache.pop(name, None)
        if gone is not None and gone.request_id:
            self._requests.pop((tenant_of(name), gone.request_id), None)

    def _log(self, intent: intent_pb2.Intent) -> None:
        if len(self._events) == self._events.maxlen:
            self._floor = self._events[0].revision
        event = IntentEvent(intent.revision, tenant_of(intent.name), intent)
        self._logged[intent.name] = intent.revision
        self._events.append(event)
        for subscriber in list(self._subscribers):
            subscriber.push(event)

    # -- intents ---------------------------------------------------------------------

    async def create(
        self, intent: intent_pb2.Intent, *, tenant: str, request_id: str
    ) -> tuple[intent_pb2.Intent, bool]:
        from kubernetes.client.exceptions import ApiException

        if request_id and (known := self._requests.get((tenant, request_id))):
            existing = await self.get(known)
            if existing is not None:
                return existing, False
        body = resources.intent_object(intent, self._namespace)
        body["metadata"].pop("resourceVersion", None)
        try:
            created = await self._write(resources.INTENTS, body)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = await self.get(intent.name)
            if existing is not None and request_id and existing.request_id == request_id:
                return existing, False  # a retry that reached another replica first
            raise AlreadyExists(f"{intent.name} already exists") from error
        stored = resources.intent_of(created)
        self._remember(stored)
        return stored, True

    async def get(self, name: str) -> intent_pb2.Intent | None:
        body = await self._read(resources.INTENTS, resources.object_name(name))
        return resources.intent_of(body) if body is not None else None

    async def list_intents(
        self, *, tenant: str, states: Sequence[int], limit: int, cursor: int | str | None
    ) -> IntentPage:
        wanted = set(states)
        after = _parse_cursor(cursor) if cursor is not None else None
        chosen = sorted(
            (
                i
                for i in self._cache.values()
                if tenant_of(i.name) == tenant
                and (not wanted or i.state in wanted)
                and (after is None or _sort_key(i) < after)
            ),
            key=_sort_key,
            reverse=True,
        )
        page = chosen[:limit]
        more = len(chosen) > limit
        return IntentPage(page, _cursor(page[-1]) if more else None)

    async def update(self, name: str, change: Change) -> intent_pb2.Intent:
        from kubernetes.client.exceptions import ApiException

        for _ in range(CONFLICT_RETRIES):
            body = await self._read(resources.INTENTS, resources.object_name(name))
            if body is None:
                raise NotFound(f"{name} not found")
            current = resources.intent_of(body)
            changed = change(current)
            if changed is None:
                return current
            changed.revision = current.revision
            try:
                written = await self._write(
                    resources.INTENTS, resources.intent_object(changed, self._namespace)
                )
            except ApiException as error:
                if error.status == 409:  # another replica wrote first: apply to its version
                    continue
                if error.status == 404:
                    raise NotFound(f"{name} not found") from error
                raise
            stored = resources.intent_of(written)
            self._remember(stored)
            return stored
        raise Aborted(f"{name} kept changing under {CONFLICT_RETRIES} attempts; try again")

    async def events_since(
        self, revision: int, *, tenant: str, name: str = "", limit: int = 1000
    ) -> list[IntentEvent]:
        if revision < self._floor:
            raise OutOfRange(
                f"revision {revision} is older than this replica's log (from {self._floor}). "
                "Watch again from revision 0."
            )
        found = []
        for event in self._events:
            if event.revision <= revision or event.tenant != tenant:
                continue
            if name and event.intent.name != name:
                continue
            found.append(event)
            if len(found) == limit:
                break
        return found

    async def live(self) -> list[intent_pb2.Intent]:
        return sorted(
            (i for i in self._cache.values() if i.state not in lifecycle.TERMINAL),
            key=_sort_key,
        )

    async def ended_since(self, since: datetime) -> list[intent_pb2.Intent]:
        return [
            i
            for i in self._cache.values()
            if i.state in lifecycle.TERMINAL
            and i.update_time.ToDatetime(tzinfo=since.tzinfo) >= since
        ]

    def subscribe(self) -> QueueSubscription:
        return QueueSubscription(self._subscribers)

    # -- state: a ConfigMap per name ---------------------------------------------------

    async def load_state(self, name: str) -> bytes | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: Any = await self._call(
                self._core.read_namespaced_config_map, state_object(name), self._namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = (found.binary_data or {}).get("state")
        return base64.b64decode(data) if data else None

    async def save_state(self, name: str, data: bytes) -> None:
        """Written by the leader alone, so the last write wins."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=state_object(name), labels={"app.kubernetes.io/part-of": "flare"}
            ),
            binary_data={"state": base64.b64encode(data).decode()},
        )
        try:
            await self._call(
                self._core.replace_namespaced_config_map,
                state_object(name),
                self._namespace,
                body,
            )
        except ApiException as error:
            if error.status != 404:
                raise
            await self._call(self._core.create_namespaced_config_map, self._namespace, body)

    # -- tokens ----------------------------------------------------------------------

    async def add_token(self, record: TokenRecord) -> None:
        from kubernetes.client.exceptions import ApiException

        body = resources.token_object(
            record.tenant, record.token, record.secret_hash, self._namespace
        )
        try:
            await self._write(resources.TOKENS, body)
        except ApiException as error:
            if error.status == 409:
                raise AlreadyExists(f"{record.token.name} already exists") from error
            raise

    async def token(self, name: str) -> TokenRecord | None:
        body = await self._read(resources.TOKENS, resources.object_name(name))
        return TokenRecord(*resources.token_of(body)) if body is not None else None

    async def tokens(self, *, tenant: str, limit: int, cursor: str) -> list[TokenRecord]:
        items = await self._list(resources.TOKENS, f"{resources.TENANT_LABEL}={tenant}")
        records = sorted(
            (TokenRecord(*resources.token_of(i)) for i in items), key=lambda r: r.token.name
        )
        return [r for r in records if r.token.name > cursor][:limit]

    async def revoke_token(self, name: str, revoke_time_seconds: int) -> TokenRecord | None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(CONFLICT_RETRIES):
            body = await self._read(resources.TOKENS, resources.object_name(name))
            if body is None:
                return None
            record = TokenRecord(*resources.token_of(body))
            if record.token.HasField("revoke_time"):
                return record
            record.token.revoke_time.seconds = revoke_time_seconds
            replacement = resources.token_object(
                record.tenant, record.token, record.secret_hash, self._namespace
            )
            replacement["metadata"]["resourceVersion"] = body["metadata"]["resourceVersion"]
            try:
                await self._write(resources.TOKENS, replacement)
            except ApiException as error:
                if error.status == 409:
                    continue
                raise
            return record
        raise Aborted(f"{name} kept changing; try again")
