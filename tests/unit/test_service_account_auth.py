"""Kubernetes ServiceAccount tokens in the Authenticator, without Kubernetes: the routing
of non-FLARE bearers (with a fake verifier), the Tenant mapping as a pure function, and
ServiceAccountTokens' caching and errors over fakes of the two Kubernetes APIs it calls."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane import auth
from controlplane.cluster.serviceaccounts import (
    ServiceAccountTokens,
    matching_tenants,
    parse_service_account_user,
    service_account_tenant,
)
from controlplane.errors import PermissionDenied, Unauthenticated, Unavailable
from controlplane.store.sqlite import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SA_PRINCIPAL = auth.Principal("team-a", "serviceaccounts/ns/sa", frozenset(auth.DEFAULT_SCOPES))


def jwt(subject: str, *, exp: float | None = None) -> str:
    """A JWT-shaped string (unsigned: the fakes stand in for the API server's check)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims: dict[str, Any] = {"sub": subject}
    if exp is not None:
        claims["exp"] = exp
    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2lnbmF0dXJl"


# -- the Authenticator's routing ----------------------------------------------------


class FakeServiceAccounts:
    """Stands in for ServiceAccountTokens: answers from a table, records what it was asked."""

    def __init__(self, answers: dict[str, auth.Principal | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def principal(self, token: str) -> auth.Principal | None:
        self.asked.append(token)
        answer = self.answers.get(token)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_non_flare_bearer_goes_to_the_service_accounts(store: SqliteStore) -> None:
    fake = FakeServiceAccounts({"k8s-token": SA_PRINCIPAL})
    authenticator = auth.Authenticator(store, service_accounts=fake)
    assert await authenticator.authenticate("Bearer k8s-token") == SA_PRINCIPAL
    assert fake.asked == ["k8s-token"]


async def test_flare_tokens_never_reach_the_service_accounts(store: SqliteStore) -> None:
    fake = FakeServiceAccounts({})
    authenticator = auth.Authenticator(store, service_accounts=fake)
    _, secret = await auth.create_token(
        store, tenant="t", display_name="", scopes=[], ttl=None, creator="test", now=NOW
    )
    principal = await authenticator.authenticate(f"Bearer {secret}")
    assert principal.tenant == "t" and principal.scopes == frozenset(auth.DEFAULT_SCOPES)
    with pytest.raises(Unauthenticated, match="unknown token"):
        await authenticator.authenticate("Bearer flr.t.nosuch.secret")
    assert fake.asked == []


async def test_a_bearer_no_one_knows_stays_malformed(store: SqliteStore) -> None:
    fake = FakeServiceAccounts({})
    with pytest.raises(Unauthenticated, match="malformed token"):
        await auth.Authenticator(store, service_accounts=fake).authenticate("Bearer junk")
    assert fake.asked == ["junk"]
    with pytest.raises(Unauthenticated, match="malformed token"):
        await auth.Authenticator(store).authenticate("Bearer junk")


async def test_refusals_of_the_service_accounts_reach_the_caller(store: SqliteStore) -> None:
    fake = FakeServiceAccounts(
        {
            "outsider": PermissionDenied("service account ns/x is in no Capsule tenant"),
            "forged": Unauthenticated("not authenticated"),
        }
    )
    authenticator = auth.Authenticator(store, service_accounts=fake)
    with pytest.raises(PermissionDenied, match="in no Capsule tenant"):
        await authenticator.authenticate("Bearer outsider")
    with pytest.raises(Unauthenticated, match="not authenticated"):
        await authenticator.authenticate("Bearer forged")


# -- the mapping, a pure function -----------------------------------------------------


def tenant(
    name: str, *, namespaces: list[str] | None = None, owners: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": {"owners": owners or []}}
    if namespaces is not None:
        body["status"] = {"namespaces": namespaces, "size": len(namespaces), "state": "Active"}
    return body


def sa_owner(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": f"system:serviceaccount:{namespace}:{name}"}


def test_a_tenant_claims_the_namespaces_of_its_status() -> None:
    tenants = [tenant("a", namespaces=["a-dev", "a-prod"]), tenant("b", namespaces=["b-dev"])]
    assert matching_tenants(tenants, "a-prod", "trainer") == ["a"]
    assert matching_tenants(tenants, "c-dev", "trainer") == []


def test_a_tenant_claims_its_service_account_owners() -> None:
    tenants = [
        tenant("a", owners=[{"kind": "User", "name": "alice"}, sa_owner("ci", "deployer")]),
        # A User or Group owner with a ServiceAccount's name is not that ServiceAccount.
        tenant("b", owners=[{"kind": "User", "name": "system:serviceaccount:ci:builder"}]),
    ]
    assert matching_tenants(tenants, "ci", "deployer") == ["a"]
    assert matching_tenants(tenants, "ci", "builder") == []
    assert matching_tenants(tenants, "other", "deployer") == []


def test_both_rules_together_and_missing_fields() -> None:
    tenants = [
        tenant("a", namespaces=["shared"], owners=[sa_owner("shared", "x")]),
        {"metadata": {"name": "bare"}},
        {"metadata": {"name": "empty"}, "spec": None, "status": None},
        {"spec": {"owners": [sa_owner("shared", "x")]}},  # no name: ignored
    ]
    assert matching_tenants(tenants, "shared", "x") == ["a"]
    assert service_account_tenant(tenants, "shared", "x") == "a"


def test_a_service_account_in_no_tenant_is_refused() -> None:
    with pytest.raises(PermissionDenied, match=r"ns/sa is in no Capsule tenant"):
        service_account_tenant([tenant("a", namespaces=["other"])], "ns", "sa")


def test_a_service_account_in_several_tenants_is_refused_naming_them() -> None:
    tenants = [tenant("b", namespaces=["ns"]), tenant("a", owners=[sa_owner("ns", "sa")])]
    with pytest.raises(PermissionDenied, match=r"several Capsule tenants \(a, b\)"):
        service_account_tenant(tenants, "ns", "sa")


def test_a_tenant_name_that_is_no_flare_tenant_id_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="not a valid FLARE tenant id"):
        service_account_tenant([tenant("team.a", namespaces=["ns"])], "ns", "sa")


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("system:serviceaccount:ns:sa", ("ns", "sa")),
        ("system:serviceaccount:ns", None),
        ("system:serviceaccount::sa", None),
        ("system:serviceaccount:ns:sa:extra", None),
        ("system:serviceaccounts:ns", None),
        ("alice", None),
        ("", None),
    ],
)
def test_service_account_user_names(username: str, expected: tuple[str, str] | None) -> None:
    assert parse_service_account_user(username) == expected


# -- ServiceAccountTokens over fakes of the Kubernetes APIs ---------------------------


class FakeAuthenticationApi:
    """Stands in for kubernetes.client.AuthenticationV1Api: users by token, from a table."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.reviews: list[Any] = []
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def create_token_review(self, body: Any, **_: Any) -> Any:
        from kubernetes import client

        with self._lock:
            self.reviews.append(body)
        if self.error is not None:
            raise self.error
        user = self.users.get(body.spec.token)
        return client.V1TokenReview(
            spec=body.spec,
            status=client.V1TokenReviewStatus(
                authenticated=user is not None,
                user=client.V1UserInfo(username=user) if user else None,
                audiences=body.spec.audiences,
                error=None if user else "invalid bearer token",
            ),
        )


class FakeCustomObjectsApi:
    """Stands in for kubernetes.client.CustomObjectsApi: a fixed list of Tenants."""

    def __init__(self, tenants: list[dict[str, Any]]) -> None:
        self.tenants = tenants
        self.lists = 0
        self.error: Exception | None = None

    def list_cluster_custom_object(self, group: str, version: str, plural: str, **_: Any) -> Any:
        assert (group, version, plural) == ("capsule.clastix.io", "v1beta2", "tenants")
        self.lists += 1
        if self.error is not None:
            raise self.error
        return {"items": self.tenants}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


OWNER = jwt("owner")
WORKER = jwt("worker")
OUTSIDER = jwt("outsider")
ALICE = jwt("alice")
USERS = {
    OWNER: "system:serviceaccount:ci:owner",
    WORKER: "system:serviceaccount:team-a-dev:worker",
    OUTSIDER: "system:serviceaccount:elsewhere:x",
    ALICE: "alice",
}
TENANTS = [tenant("team-a", namespaces=["team-a-dev"], owners=[sa_owner("ci", "owner")])]


@pytest.fixture
def api_client() -> Iterator[Any]:
    from kubernetes import client

    # Never contacted: the tests swap its two APIs for fakes.
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    api.close()  # type: ignore[no-untyped-call]


def fake_tokens(
    api_client: Any, *, clock: Clock | None = None, **options: Any
) -> tuple[ServiceAccountTokens, FakeAuthenticationApi, FakeCustomObjectsApi]:
    tokens = ServiceAccountTokens(api_client, clock=clock or Clock(), **options)
    reviews, tenants = FakeAuthenticationApi(USERS), FakeCustomObjectsApi(TENANTS)
    tokens._auth, tokens._custom = reviews, tenants
    return tokens, reviews, tenants


async def test_service_accounts_map_to_their_tenant(api_client: Any) -> None:
    tokens, reviews, _ = fake_tokens(api_client, audiences=("flare",))
    owner = await tokens.principal(OWNER)
    worker = await tokens.principal(WORKER)
    assert owner == auth.Principal(
        "team-a", "serviceaccounts/ci/owner", frozenset(auth.DEFAULT_SCOPES)
    )
    assert worker is not None and worker.token == "serviceaccounts/team-a-dev/worker"
    assert not worker.is_admin and auth.TOKENS_MANAGE not in worker.scopes
    assert [r.spec.audiences for r in reviews.reviews] == [["flare"], ["flare"]]


async def test_refusals(api_client: Any) -> None:
    tokens, _, _ = fake_tokens(api_client)
    with pytest.raises(PermissionDenied, match="elsewhere/x is in no Capsule tenant"):
        await tokens.principal(OUTSIDER)
    with pytest.raises(PermissionDenied, match="'alice' is not a ServiceAccount"):
        await tokens.principal(ALICE)
    with pytest.raises(Unauthenticated, match="did not authenticate"):
        await tokens.principal(jwt("nobody"))


async def test_what_is_no_jwt_is_not_sent_to_the_api_server(api_client: Any) -> None:
    tokens, reviews, _ = fake_tokens(api_client)
    for bearer in ("junk", "a.b", "a.b.c.d", "a.b.c d", "flr.t.id.secret"):
        assert await tokens.principal(bearer) is None
    assert reviews.reviews == []


async def test_answers_are_cached_briefly(api_client: Any) -> None:
    clock = Clock()
    tokens, reviews, tenants = fake_tokens(api_client, clock=clock, cache_seconds=10)
    for _ in range(3):
        assert await tokens.principal(OWNER) is not None
        with pytest.raises(PermissionDenied):
            await tokens.principal(OUTSIDER)
    assert len(reviews.reviews) == 2 and tenants.lists == 2
    clock.now += 10
    assert await tokens.principal(OWNER) is not None
    with pytest.raises(PermissionDenied):
        await tokens.principal(OUTSIDER)
    assert len(reviews.reviews) == 4
    # A Tenant created later is seen once the refusal has expired.
    tenants.tenants = [*TENANTS, tenant("elsewhere", namespaces=["elsewhere"])]
    with pytest.raises(PermissionDenied):
        await tokens.principal(OUTSIDER)
    clock.now += 10
    assert (await tokens.principal(OUTSIDER)) == auth.Principal(
        "elsewhere", "serviceaccounts/elsewhere/x", frozenset(auth.DEFAULT_SCOPES)
    )


async def test_a_principal_is_not_cached_past_its_tokens_expiry(api_client: Any) -> None:
    clock = Clock()
    expiring = jwt("owner", exp=clock.now + 3)
    tokens, reviews, _ = fake_tokens(api_client, clock=clock, cache_seconds=10)
    reviews.users[expiring] = USERS[OWNER]
    await tokens.principal(expiring)
    await tokens.principal(expiring)
    assert len(reviews.reviews) == 1
    clock.now += 3
    del reviews.users[expiring]  # what the API server says of an expired token
    with pytest.raises(Unauthenticated):
        await tokens.principal(expiring)


async def test_the_cache_is_bounded_and_drops_the_oldest(api_client: Any) -> None:
    tokens, reviews, _ = fake_tokens(api_client, cache_entries=2)
    third = jwt("third")
    reviews.users[third] = USERS[WORKER]
    for token in (OWNER, WORKER, third):
        await tokens.principal(token)
    await tokens.principal(third)
    assert len(reviews.reviews) == 3
    await tokens.principal(OWNER)
    assert len(reviews.reviews) == 4


async def test_concurrent_checks_of_one_token_share_one_lookup(api_client: Any) -> None:
    tokens, reviews, tenants = fake_tokens(api_client)
    found = await asyncio.gather(*(tokens.principal(OWNER) for _ in range(5)))
    assert len({p.tenant for p in found if p is not None}) == 1
    assert len(reviews.reviews) == 1 and tenants.lists == 1


async def test_api_server_trouble_is_unavailable_and_not_cached(api_client: Any) -> None:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    tokens, reviews, tenants = fake_tokens(api_client)
    reviews.error = urllib3.exceptions.MaxRetryError(None, "/", "refused")  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="cannot be reached"):
        await tokens.principal(OWNER)
    reviews.error = ApiException(status=403, reason="Forbidden")
    with pytest.raises(Unavailable, match="may not create tokenreviews"):
        await tokens.principal(OWNER)
    reviews.error = ApiException(status=401, reason="Unauthorized")
    with pytest.raises(Unavailable, match="does not accept the control plane's credentials"):
        await tokens.principal(OWNER)
    reviews.error = ApiException(status=500, reason="Internal Server Error")
    with pytest.raises(Unavailable, match="answered 500"):
        await tokens.principal(OWNER)
    reviews.error = None
    tenants.error = ApiException(status=404, reason="Not Found")
    with pytest.raises(Unavailable, match="is Capsule installed"):
        await tokens.principal(OWNER)
    tenants.error = ApiException(status=403, reason="Forbidden")
    with pytest.raises(Unavailable, match="may not list tenants"):
        await tokens.principal(OWNER)
    tenants.error = None
    assert await tokens.principal(OWNER) is not None
    assert len(reviews.reviews) == 7


async def test_an_api_server_that_is_not_there_is_unavailable() -> None:
    from kubernetes import client

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = client.ApiClient(client.Configuration(host=f"https://127.0.0.1:{port}"))
    try:
        with pytest.raises(Unavailable, match="cannot be reached"):
            await ServiceAccountTokens(api).principal(OWNER)
    finally:
        api.close()  # type: ignore[no-untyped-call]
