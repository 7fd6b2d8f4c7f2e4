"""Kubernetes ServiceAccount tokens as FLARE credentials.

In cluster mode a caller may send the token of a Kubernetes ServiceAccount
(a projected or TokenRequest token, a JWT) instead of a FLARE token. It is
checked in three steps:

1. A TokenReview (`authentication.k8s.io/v1`) asks the API server whether the
   token is valid, for the configured audiences (none: the API server's own).
2. The user the API server names must be a ServiceAccount,
   `system:serviceaccount:<namespace>:<name>`; any other user is refused.
3. The ServiceAccount's tenant is the Capsule Tenant (`capsule.clastix.io/v1beta2`)
   that claims it, by either of two rules:
   - the Tenant's `status.namespaces` lists the ServiceAccount's namespace
     (the namespace belongs to the tenant), or
   - the Tenant's `spec.owners` lists the ServiceAccount itself
     (`kind: ServiceAccount`, `name: system:serviceaccount:<namespace>:<name>`):
     an owner of a Tenant acts in it.
   Exactly one Tenant must match; none, or several, is refused. User and Group
   owners are not considered. The Tenant's name becomes the FLARE tenant, so it
   must be a valid FLARE tenant id (a DNS-1123 label).

The caller gets the everyday scopes (`auth.DEFAULT_SCOPES`), never `admin` or
`tokens:manage`; its principal's token name is `serviceaccounts/<namespace>/<name>`.

Answers are cached for `cache_seconds`, keyed by the token's SHA-256: a
principal (never past the token's own `exp`) and a refusal alike, so a
Tenant created or a ServiceAccount deleted takes effect within that time.
Concurrent checks of one token share one lookup. An API server that cannot be
reached, or that refuses the control plane's own requests, is `Unavailable`
and is not cached.

The control plane's ServiceAccount needs `create` on `authentication.k8s.io`
`tokenreviews` and `list` on `capsule.clastix.io` `tenants` (cluster-wide: a
ClusterRole).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from controlplane.auth import DEFAULT_SCOPES, Principal
from controlplane.errors import PermissionDenied, Unauthenticated, Unavailable
from controlplane.names import TENANT_ID

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

CAPSULE_GROUP = "capsule.clastix.io"
CAPSULE_VERSION = "v1beta2"
TENANTS = "tenants"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
CACHE_ENTRIES = 10_000
REQUEST_TIMEOUT_SECONDS = 10.0
# A JWT: three base64url parts. Anything else cannot be a ServiceAccount token.
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")

Refusal = Unauthenticated | PermissionDenied


def service_account_user(namespace: str, name: str) -> str:
    """The Kubernetes user name of a ServiceAccount."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def parse_service_account_user(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:<namespace>:<name>`, else None."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, colon, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    if not (namespace and colon and name) or ":" in name:
        return None
    return namespace, name


def matching_tenants(tenants: Iterable[Mapping[str, Any]], namespace: str, name: str) -> list[str]:
    """Names of the Capsule Tenants that claim the ServiceAccount `namespace/name`,
    sorted: those whose `status.namespaces` holds its namespace and those whose
    `spec.owners` lists it as a ServiceAccount owner."""
    user = service_account_user(namespace, name)
    found: set[str] = set()
    for tenant in tenants:
        tenant_name = (tenant.get("metadata") or {}).get("name")
        if not isinstance(tenant_name, str) or not tenant_name:
            continue
        namespaces = (tenant.get("status") or {}).get("namespaces") or []
        owners = (tenant.get("spec") or {}).get("owners") or []
        owned = any(
            isinstance(owner, Mapping)
            and owner.get("kind") == "ServiceAccount"
            and owner.get("name") == user
            for owner in owners
        )
        if owned or namespace in namespaces:
            found.add(tenant_name)
    return sorted(found)


def service_account_tenant(tenants: Iterable[Mapping[str, Any]], namespace: str, name: str) -> str:
    """The one FLARE tenant of the ServiceAccount `namespace/name`; raises
    PermissionDenied when no Tenant, several, or an unusable one claims it."""
    found = matching_tenants(tenants, namespace, name)
    if not found:
        raise PermissionDenied(
            f"service account {namespace}/{name} is in no Capsule tenant: its namespace is in "
            "no Tenant's status.namespaces and no Tenant lists it among its owners"
        )
    if len(found) > 1:
        raise PermissionDenied(
            f"service account {namespace}/{name} is in several Capsule tenants "
            f"({', '.join(found)}); it must be in exactly one"
        )
    tenant = found[0]
    if not TENANT_ID.match(tenant):
        raise PermissionDenied(
            f"Capsule tenant {tenant!r} of service account {namespace}/{name} is not a valid "
            "FLARE tenant id (a DNS-1123 label: lowercase letters, digits and '-', at most 63)"
        )
    return tenant


def _expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it: it only shortens how long
    an answer is cached, it never grants anything."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class ServiceAccountTokens:
    """Turns Kubernetes ServiceAccount tokens into FLARE principals (see the module's
    docstring). `api` is a client authenticated as the control plane itself."""

    def __init__(
        self,
        api: ApiClient,
        *,
        audiences: tuple[str, ...] = (),
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        from kubernetes import client

        self._auth: Any = client.AuthenticationV1Api(api)
        self._custom: Any = client.CustomObjectsApi(api)
        self._audiences = tuple(audiences)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache_entries = cache_entries
        # sha256(token) -> (stored at, valid until, principal or refusal)
        self._cache: dict[bytes, tuple[float, float, Principal | Refusal]] = {}
        self._pending: dict[bytes, asyncio.Task[Principal]] = {}

    async def principal(self, token: str) -> Principal | None:
        """The principal of a ServiceAccount token; None when `token` is not shaped like
        one (not a JWT). Raises Unauthenticated or PermissionDenied when it is refused,
        Unavailable when the API server cannot answer."""
        if not _JWT.match(token):
            return None
        key = hashlib.sha256(token.encode()).digest()
        cached = self._cached(key)
        if isinstance(cached, Principal):
            return cached
        if cached is not None:
            raise type(cached)(str(cached))
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._lookup(token))
            self._pending[key] = task
            expiry = _expiry(token)
            task.add_done_callback(lambda done: self._settle(key, expiry, done))
        # Shielded: one caller giving up does not cancel the others' lookup.
        return await asyncio.shield(task)

    # -- cache ----------------------------------------------------------------------

    def _cached(self, key: bytes) -> Principal | Refusal | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        stored, until, answer = entry
        now = self._clock()
        if not stored <= now < until:  # expired, or the clock went back
            del self._cache[key]
            return None
        return answer

    def _settle(self, key: bytes, expiry: float | None, task: asyncio.Task[Principal]) -> None:
        self._pending.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()
        answer: Principal | Refusal
        if error is None:
            answer = task.result()
        elif isinstance(error, Unauthenticated | PermissionDenied):
            answer = error
        else:
            return  # Unavailable and the unexpected: ask again next time
        now = self._clock()
        until = now + self._cache_seconds
        if isinstance(answer, Principal) and expiry is not None:
            until = min(until, expiry)
        if until <= now:
            return
        if len(self._cache) >= self._cache_entries:
            self._evict(now)
        self._cache[key] = (now, until, answer)

    def _evict(self, now: float) -> None:
        stale = [k for k, (stored, until, _) in self._cache.items() if not stored <= now < until]
        for key in stale:
            del self._cache[key]
        while len(self._cache) >= self._cache_entries:
            del self._cache[next(iter(self._cache))]  # the oldest

    # -- lookups --------------------------------------------------------------------

    async def _lookup(self, token: str) -> Principal:
        namespace, name = await self._review(token)
        tenants = await self._tenants()
        tenant = service_account_tenant(tenants, namespace, name)
        return Principal(
            tenant=tenant,
            token=f"serviceaccounts/{namespace}/{name}",
            scopes=frozenset(DEFAULT_SCOPES),
        )

    async def _review(self, token: str) -> tuple[str, str]:
        """(namespace, name) of the ServiceAccount the API server says `token` is."""
        from kubernetes import client

        spec = client.V1TokenReviewSpec(token=token, audiences=list(self._audiences) or None)
        review: Any = await self._call(
            "create tokenreviews (authentication.k8s.io)",
            self._auth.create_token_review,
            client.V1TokenReview(spec=spec),
        )
        status = review.status
        if status is None or not status.authenticated:
            reason = status.error if status is not None else None
            log.debug("token review refused a bearer token: %s", reason or "not authenticated")
            raise Unauthenticated(
                "the Kubernetes API server did not authenticate this token "
                "(unknown, expired, revoked or for another audience)"
            )
        if self._audiences and not set(status.audiences or ()) & set(self._audiences):
            wanted = ", ".join(self._audiences)
            raise Unauthenticated(f"this Kubernetes token is not for the audiences {wanted}")
        username = status.user.username if status.user is not None else None
        account = parse_service_account_user(username or "")
        if account is None:
            raise PermissionDenied(
                f"Kubernetes user {username!r} is not a ServiceAccount: only ServiceAccount "
                "tokens are accepted"
            )
        return account

    async def _tenants(self) -> list[Mapping[str, Any]]:
        found: Any = await self._call(
            "list tenants (capsule.clastix.io)",
            self._custom.list_cluster_custom_object,
            CAPSULE_GROUP,
            CAPSULE_VERSION,
            TENANTS,
            missing=(
                f"the Kubernetes API server does not serve {CAPSULE_GROUP}/{CAPSULE_VERSION} "
                "tenants: is Capsule installed?"
            ),
        )
        items = found.get("items") if isinstance(found, Mapping) else None
        return [item for item in items or () if isinstance(item, Mapping)]

    async def _call(
        self, what: str, method: Callable[..., Any], *args: Any, missing: str = ""
    ) -> Any:
        """Runs a blocking client call in a thread; what goes wrong with the API
        server itself (unreachable, errors, our own permissions) is Unavailable."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return await asyncio.to_thread(method, *args, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except ApiException as error:
            log.warning("Kubernetes API call to %s failed: %s %s", what, error.status, error.reason)
            if error.status == 401:
                message = (
                    "the Kubernetes API server does not accept the control plane's credentials"
                )
            elif error.status == 403:
                message = (
                    f"the control plane may not {what} in Kubernetes; its ServiceAccount needs "
                    "RBAC for it"
                )
            elif error.status == 404 and missing:
                message = missing
            else:
                message = f"the Kubernetes API server answered {error.status} to {what}"
            raise Unavailable(message) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("Kubernetes API server unreachable (%s): %s", what, error)
            raise Unavailable(
                "the Kubernetes API server cannot be reached to check this token"
            ) from error
