"""Bearer tokens, scopes and tenants.

A token secret looks like `flr.<tenant>.<token-id>.<43 random characters>`:
the name part lets the server find the token without scanning, the random
part (256 bits) is what proves possession. Only its SHA-256 is stored (a slow
password hash adds nothing for secrets of that entropy), compared in constant
time.

In cluster mode a bearer that is not a FLARE token may be a Kubernetes
ServiceAccount token; the Authenticator hands it to a ServiceAccountVerifier
(controlplane/cluster/serviceaccounts.py), which keeps this module free of
Kubernetes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from controlplane.clock import Clock, utc_now
from controlplane.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from controlplane.names import TENANT_ID, token_name
from controlplane.store.base import TokenRecord, TokenStore
from flare.v1 import token_service_pb2
from flare.violation import FieldViolation

log = logging.getLogger(__name__)

INTENTS_READ = "intents:read"
INTENTS_WRITE = "intents:write"
INTENTS_DELETE = "intents:delete"
OFFERS_READ = "offers:read"
TOKENS_MANAGE = "tokens:manage"
TELEMETRY_WRITE = "telemetry:write"
ADMIN = "admin"
SCOPES = (
    INTENTS_READ,
    INTENTS_WRITE,
    INTENTS_DELETE,
    OFFERS_READ,
    TOKENS_MANAGE,
    TELEMETRY_WRITE,
    ADMIN,
)
# What a token gets when its creator names no scopes: a user's everyday rights.
DEFAULT_SCOPES = (INTENTS_READ, INTENTS_WRITE, INTENTS_DELETE, OFFERS_READ)
ADMIN_TENANT = "default"
CACHE_SECONDS = 10.0
_PREFIX = "flr"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    token: str  # token resource name
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def require(self, scope: str) -> None:
        if not (self.is_admin or scope in self.scopes):
            raise PermissionDenied(f"this token lacks the {scope} scope")

    def tenant_for(self, tenant: str) -> str:
        """The tenant a request may act in: its own; any, for an admin."""
        if tenant != self.tenant and not self.is_admin:
            raise PermissionDenied(f"this token belongs to tenant {self.tenant}, not {tenant}")
        return tenant


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret(tenant: str, token_id: str) -> str:
    return f"{_PREFIX}.{tenant}.{token_id}.{secrets.token_urlsafe(32)}"


def token_name_of(secret: str) -> str | None:
    parts = secret.split(".")
    if len(parts) != 4 or parts[0] != _PREFIX:
        return None
    return token_name(parts[1], parts[2])


def is_active(token: token_service_pb2.Token, now: datetime) -> bool:
    if token.HasField("revoke_time"):
        return False
    return (
        not token.HasField("expire_time") or token.expire_time.ToDatetime(tzinfo=now.tzinfo) > now
    )


class ServiceAccountVerifier(Protocol):
    """Checks bearers that are not FLARE tokens (Kubernetes ServiceAccount tokens)."""

    async def principal(self, token: str) -> Principal | None:
        """The token's principal; None when it is not a token this verifier knows.
        Raises Unauthenticated or PermissionDenied to refuse it."""
        ...


class Authenticator:
    """Checks bearer tokens against the TokenStore, with a short cache.

    A revocation through this process takes effect at once; through another
    replica, within CACHE_SECONDS. With `service_accounts`, a bearer that is not
    a FLARE token goes to it; without, it is a malformed token."""

    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Clock = utc_now,
        service_accounts: ServiceAccountVerifier | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._service_accounts = service_accounts
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing bearer token: send 'authorization: Bearer <token>'")
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
        secret = secret.strip()
        name = token_name_of(secret)
        if name is None:
            if self._service_accounts is not None:
                principal = await self._service_accounts.principal(secret)
                if principal is not None:
                    return principal
            raise Unauthenticated("malformed token")
        record = await self._record(name)
        if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
            raise Unauthenticated("unknown token")
        if record.token.HasField("revoke_time"):
            raise Unauthenticated("token revoked")
        if not is_active(record.token, self._clock()):
            raise Unauthenticated("token expired")
        return Principal(record.tenant, name, frozenset(record.token.scopes))

    async def _record(self, name: str) -> TokenRecord | None:
        cached = self._cache.get(name)
        now = time.monotonic()
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        record = await self._store.token(name)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[name] = (now, record)
        return record

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)


async def create_token(
    store: TokenStore,
    *,
    tenant: str,
    display_name: str,
    scopes: list[str],
    ttl: timedelta | None,
    creator: str,
    now: datetime,
    token_id: str = "",
) -> tuple[token_service_pb2.Token, str]:
    violations = [
        FieldViolation("token.scopes", f"{s!r} is not one of: {', '.join(SCOPES)}")
        for s in scopes
        if s not in SCOPES
    ]
    if not TENANT_ID.match(tenant):
        violations.append(FieldViolation("parent", f"{tenant!r} is not a valid tenant id"))
    if ttl is not None and ttl <= timedelta(0):
        violations.append(FieldViolation("ttl", "must be positive"))
    if len(display_name) > 200:
        violations.append(FieldViolation("token.display_name", "at most 200 characters"))
    if violations:
        raise InvalidArgument(violations)
    token_id = token_id or secrets.token_hex(6)
    secret = new_secret(tenant, token_id)
    token = token_service_pb2.Token(
        name=token_name(tenant, token_id),
        display_name=display_name,
        scopes=sorted(set(scopes or DEFAULT_SCOPES)),
        creator=creator,
    )
    token.create_time.FromDatetime(now)
    if ttl is not None:
        token.expire_time.FromDatetime(now + ttl)
    await store.add_token(TokenRecord(tenant, token, hash_secret(secret)))
    return token, secret


async def revoke_token(store: TokenStore, name: str, *, now: datetime) -> token_service_pb2.Token:
    record = await store.revoke_token(name, int(now.timestamp()))
    if record is None:
        raise NotFound(f"{name} not found")
    return record.token


async def ensure_admin_token(store: TokenStore, path: Path, *, now: datetime) -> bool:
    """Create an admin token on first start and write its secret to `path`,
    readable only by the user. Returns True when a new token was made."""
    if path.exists():
        name = token_name_of(path.read_text().strip())
        if name and await store.token(name) is not None:
            return False
        log.warning("the admin token file does not match this database; making a new token")
    token, secret = await create_token(
        store,
        tenant=ADMIN_TENANT,
        display_name="bootstrap admin",
        scopes=[ADMIN],
        ttl=None,
        creator="flare-controlplane",
        now=now,
        token_id=f"admin-{secrets.token_hex(3)}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)
    log.info("created admin token %s", token.name)
    return True
