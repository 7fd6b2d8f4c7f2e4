"""Leader election on a coordination.k8s.io Lease.

Every replica tries to hold the Lease; the one that does leads (it alone drives
allocation). Each write of the Lease is guarded by its resourceVersion, so of
two replicas racing for it exactly one succeeds.

Expiry is judged by the follower's own clock, never by comparing clocks: a
follower notes when it last saw the Lease's record change, and takes the Lease
only after `lease_seconds` of that record not changing. The leader renews every
`retry_seconds` and gives up leading when it could not renew for
`renew_seconds` (< lease_seconds), so it has stopped before anyone else can
take over. A leader that stops cleanly hands the Lease back at once.

The Lease is read and written on a thread of its own, each attempt bounded by
what is left of the renewal deadline: a leader whose other work keeps every
other thread busy still renews in time, and one that cannot reach the API
server knows it by the deadline, not whenever a call gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """The leader could not renew its Lease in time: it must stop leading."""


@dataclass(frozen=True, slots=True)
class Timing:
    lease_seconds: float = 6.0
    renew_seconds: float = 4.0
    retry_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_seconds < self.lease_seconds:
            raise ValueError(
                "lease timing must satisfy 0 < retry < renew deadline < lease duration"
            )


@dataclass(frozen=True, slots=True)
class Record:
    holder: str
    renew_time: str
    transitions: int


def _record(lease: Any) -> Record:
    spec = lease.spec
    renewed = spec.renew_time.isoformat() if spec.renew_time else ""
    return Record(spec.holder_identity or "", renewed, spec.lease_transitions or 0)


class LeaderElection:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._api: Any = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or Timing()
        self._clock = clock
        self._seen: Record | None = None
        self._seen_at = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flare-lease")
        self.leading = False

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Waits to become leader, then runs `lead()` (which returns once its work
        is started) and renews until cancelled. Raises LeadershipLost when a renewal
        deadline passes."""
        while not await self._try(acquiring=True):
            await asyncio.sleep(self.timing.retry_seconds)
        self.leading = True
        log.info("leading", extra={"lease": self.name, "identity": self.identity})
        await lead()
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.timing.retry_seconds)
            left = self.timing.renew_seconds - (self._clock() - renewed)
            if await self._try(acquiring=False, within=left):
                renewed = self._clock()
            elif self._clock() - renewed >= self.timing.renew_seconds or not self.leading:
                self.leading = False
                raise LeadershipLost(
                    f"could not renew the Lease {self.namespace}/{self.name} within "
                    f"{self.timing.renew_seconds:.0f}s"
                )

    async def release(self) -> None:
        """Hands the Lease back (a clean stop), so a follower takes over at once."""
        if not self.leading:
            return
        self.leading = False
        with contextlib.suppress(Exception):
            lease = await self._on_lease_thread(self._read)
            if lease is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                lease.spec.lease_duration_seconds = 1
                await self._on_lease_thread(self._replace, lease)

    async def _on_lease_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    # -- one attempt ---------------------------------------------------------------

    async def _try(self, *, acquiring: bool, within: float | None = None) -> bool:
        """One attempt; False when it failed or did not finish `within` seconds."""
        from kubernetes.client.exceptions import ApiException

        try:
            return bool(
                await asyncio.wait_for(self._on_lease_thread(self._attempt, acquiring), within)
            )
        except TimeoutError:
            log.warning("lease %s: no answer within %.1f s", self.name, within or 0.0)
            return False
        except ApiException as error:
            if error.status != 409:  # 409: another replica wrote first
                log.warning("lease %s: %s %s", self.name, error.status, error.reason)
            return False
        except Exception as error:  # the API server is unreachable
            log.warning("lease %s: %s", self.name, error)
            return False

    def _attempt(self, acquiring: bool) -> bool:
        from kubernetes import client

        now = datetime.now(UTC)
        lease = self._read()
        if lease is None:
            if not acquiring:
                self.leading = False  # someone deleted it: take it again from scratch
                return False
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=round(self.timing.lease_seconds),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.timing.renew_seconds
            )
            return True
        record = _record(lease)
        if record != self._seen:
            self._seen, self._seen_at = record, self._clock()
        holder = record.holder
        if holder and holder != self.identity:
            if not acquiring:
                self.leading = False  # someone else holds it: we lost it already
                return False
            duration = lease.spec.lease_duration_seconds or self.timing.lease_seconds
            if self._clock() - self._seen_at < duration:
                return False
        spec = lease.spec
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = round(self.timing.lease_seconds)
        spec.renew_time = now
        written = self._replace(lease)
        self._seen, self._seen_at = _record(written), self._clock()
        return True

    def _read(self) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timing.renew_seconds
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _replace(self, lease: Any) -> Any:
        return self._api.replace_namespaced_lease(
            self.name, self.namespace, lease, _request_timeout=self.timing.renew_seconds
        )
