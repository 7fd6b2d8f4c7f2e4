"""Kubernetes ServiceAccount tokens as FLARE credentials, against a real kube-apiserver:
real tokens from the TokenRequest API, real TokenReviews, Capsule Tenants (v1beta2) whose
status is written through the status subresource (no Capsule controller runs here).

ServiceAccountTokens always runs as a dedicated ServiceAccount that has only the RBAC
rules of RULES, which proves they suffice."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from controlplane import auth
from controlplane.app import ControlPlane, Settings
from controlplane.clock import utc_now
from controlplane.cluster.serviceaccounts import ServiceAccountTokens
from controlplane.errors import PermissionDenied, Unauthenticated, Unavailable
from controlplane.store.sqlite import SqliteStore
from flare.v1 import intent_service_pb2, intent_service_pb2_grpc, token_service_pb2_grpc
from flare.v1 import token_service_pb2 as tok
from tests.harness.cluster import Cluster
from tests.harness.waiting import wait_until
from tests.intents import gpu_job
from tests.k8s.conftest import create_namespace, unique

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

CAPSULE = ("capsule.clastix.io", "v1beta2", "tenants")
# What the control plane's ServiceAccount needs for this, and all this test's one gets.
RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["capsule.clastix.io"], "resources": ["tenants"], "verbs": ["list"]},
]


def create_service_account(api: ApiClient, namespace: str, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )


def mint(api: ApiClient, namespace: str, name: str, *, audiences: tuple[str, ...] = ()) -> str:
    """A token of the ServiceAccount from the TokenRequest API; no audiences: the API
    server's own."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=list(audiences), expiration_seconds=3600)
    )
    minted: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, request
    )
    token: str = minted.status.token
    return token


def client_as(cluster: Cluster, token: str) -> ApiClient:
    from kubernetes import client

    configuration = client.Configuration(
        host=cluster.server,
        ssl_ca_cert=str(cluster.workdir / "ca.crt"),
        api_key={"BearerToken": token},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    return client.ApiClient(configuration)


@dataclass
class ControlPlaneIdentity:
    """The control plane's own ServiceAccount (only RULES) and a client as it."""

    namespace: str
    name: str
    api: ApiClient


@pytest.fixture(scope="module")
def control_plane_identity(k8s_cluster: Cluster, api: ApiClient) -> Iterator[ControlPlaneIdentity]:
    from kubernetes import client

    namespace = create_namespace(api, unique("flare-system"))
    name = "flare-controlplane"
    create_service_account(api, namespace, name)
    role = unique("flare-service-account-auth")
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=role),
            rules=[
                client.V1PolicyRule(
                    api_groups=rule["apiGroups"], resources=rule["resources"], verbs=rule["verbs"]
                )
                for rule in RULES
            ],
        )
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=role),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", namespace=namespace, name=name)],
        )
    )
    identity = client_as(k8s_cluster, mint(api, namespace, name))
    wait_for_rules(identity)
    try:
        yield ControlPlaneIdentity(namespace, name, identity)
    finally:
        identity.close()  # type: ignore[no-untyped-call]
        rbac.delete_cluster_role_binding(role)
        rbac.delete_cluster_role(role)
        client.CoreV1Api(api).delete_namespace(namespace)


def wait_for_rules(identity: ApiClient) -> None:
    """Until the API server's authorizer has seen the new binding."""
    from kubernetes import client

    reviews = client.AuthorizationV1Api(identity)
    checks = [
        client.V1ResourceAttributes(
            group="authentication.k8s.io", resource="tokenreviews", verb="create"
        ),
        client.V1ResourceAttributes(group="capsule.clastix.io", resource="tenants", verb="list"),
    ]

    def allowed() -> bool:
        for check in checks:
            review: Any = reviews.create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=check)
                )
            )
            if not review.status.allowed:
                return False
        return True

    wait_until(allowed, timeout=30, what="the control plane's RBAC rules to take effect")


@dataclass
class Tenants:
    """Capsule Tenants made by a test, deleted after it."""

    api: ApiClient
    made: list[str]

    def create(
        self, *, owners: list[dict[str, str]] | None = None, namespaces: list[str] | None = None
    ) -> str:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api)
        name = unique("team")
        body = {
            "apiVersion": f"{CAPSULE[0]}/{CAPSULE[1]}",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"owners": owners or [{"kind": "User", "name": "alice"}]},
        }
        custom.create_cluster_custom_object(*CAPSULE, body)
        self.made.append(name)
        if namespaces is not None:
            # What Capsule's controller would write; the CRD has a status subresource.
            current: Any = custom.get_cluster_custom_object(*CAPSULE, name)
            current["status"] = {
                "namespaces": namespaces,
                "size": len(namespaces),
                "state": "Active",
            }
            custom.replace_cluster_custom_object_status(*CAPSULE, name, current)
            stored: Any = custom.get_cluster_custom_object(*CAPSULE, name)
            assert stored["status"]["namespaces"] == namespaces
        return name


@pytest.fixture
def tenants(api: ApiClient) -> Iterator[Tenants]:
    from kubernetes import client

    made = Tenants(api, [])
    yield made
    for name in made.made:
        client.CustomObjectsApi(api).delete_cluster_custom_object(*CAPSULE, name)


def sa_owner(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": f"system:serviceaccount:{namespace}:{name}"}


@pytest.fixture
def tokens(control_plane_identity: ControlPlaneIdentity) -> ServiceAccountTokens:
    return ServiceAccountTokens(control_plane_identity.api)


DEFAULT = frozenset(auth.DEFAULT_SCOPES)


async def test_owner_and_namespace_map_to_the_tenant(
    api: ApiClient, namespace: str, tenants: Tenants, tokens: ServiceAccountTokens
) -> None:
    # `namespace` (the tenant's) holds the worker; the owner lives elsewhere.
    elsewhere = create_namespace(api, unique("ci"))
    try:
        create_service_account(api, elsewhere, "owner")
        create_service_account(api, namespace, "worker")
        team = tenants.create(owners=[sa_owner(elsewhere, "owner")], namespaces=[namespace])

        owner = await tokens.principal(mint(api, elsewhere, "owner"))
        worker = await tokens.principal(mint(api, namespace, "worker"))
        default = await tokens.principal(mint(api, namespace, "default"))
    finally:
        from kubernetes import client

        client.CoreV1Api(api).delete_namespace(elsewhere)
    assert owner == auth.Principal(team, f"serviceaccounts/{elsewhere}/owner", DEFAULT)
    assert worker == auth.Principal(team, f"serviceaccounts/{namespace}/worker", DEFAULT)
    assert default is not None and default.tenant == team


async def test_a_service_account_in_no_tenant_is_refused(
    api: ApiClient, namespace: str, tenants: Tenants, tokens: ServiceAccountTokens
) -> None:
    tenants.create(namespaces=[unique("other")])
    create_service_account(api, namespace, "loner")
    with pytest.raises(PermissionDenied, match=f"{namespace}/loner is in no Capsule tenant"):
        await tokens.principal(mint(api, namespace, "loner"))


async def test_a_service_account_in_two_tenants_is_refused(
    api: ApiClient, namespace: str, tenants: Tenants, tokens: ServiceAccountTokens
) -> None:
    create_service_account(api, namespace, "both")
    by_namespace = tenants.create(namespaces=[namespace])
    by_owner = tenants.create(owners=[sa_owner(namespace, "both")])
    with pytest.raises(PermissionDenied, match="several Capsule tenants") as refused:
        await tokens.principal(mint(api, namespace, "both"))
    assert by_namespace in str(refused.value) and by_owner in str(refused.value)


async def test_tokens_the_api_server_does_not_authenticate(
    api: ApiClient, namespace: str, tenants: Tenants, tokens: ServiceAccountTokens
) -> None:
    tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "sa")
    good = mint(api, namespace, "sa")
    assert await tokens.principal(good) is not None
    header, payload, _ = good.split(".")
    with pytest.raises(Unauthenticated, match="did not authenticate"):
        await tokens.principal(f"{header}.{payload}.{'A' * 86}")  # a signature not theirs
    with pytest.raises(Unauthenticated, match="did not authenticate"):
        await tokens.principal("not.a.token")
    # Not even shaped like a ServiceAccount token: no TokenReview (see the Authenticator's
    # "malformed token" below).
    assert await tokens.principal("garbage") is None


async def test_audiences(
    api: ApiClient,
    namespace: str,
    tenants: Tenants,
    control_plane_identity: ControlPlaneIdentity,
) -> None:
    team = tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "sa")
    for_flare = mint(api, namespace, "sa", audiences=("flare",))
    for_apiserver = mint(api, namespace, "sa")
    for_someone = mint(api, namespace, "sa", audiences=("someone-else",))

    flare = ServiceAccountTokens(control_plane_identity.api, audiences=("flare",))
    found = await flare.principal(for_flare)
    assert found is not None and found.tenant == team
    for token in (for_apiserver, for_someone):
        with pytest.raises(Unauthenticated):
            await flare.principal(token)

    default = ServiceAccountTokens(control_plane_identity.api)  # the API server's audience
    assert await default.principal(for_apiserver) is not None
    for token in (for_flare, for_someone):
        with pytest.raises(Unauthenticated):
            await default.principal(token)


def resign(cluster: Cluster, token: str, **claims: Any) -> str:
    """The token with some claims changed, signed again with the cluster's ServiceAccount
    signing key (ES256), as the API server would have signed it."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header, payload, _ = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body = f"{header}.{b64(json.dumps({**decoded, **claims}).encode())}"
    key = serialization.load_pem_private_key(
        (cluster.workdir / "service-account.key").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(body.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


async def test_an_expired_token_is_refused(
    k8s_cluster: Cluster,
    api: ApiClient,
    namespace: str,
    tenants: Tenants,
    tokens: ServiceAccountTokens,
) -> None:
    tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "sa")
    minted = mint(api, namespace, "sa")
    # Re-signed unchanged, it is still good: the refusal below is the expiry's.
    assert await tokens.principal(resign(k8s_cluster, minted)) is not None
    now = int(time.time())
    expired = resign(k8s_cluster, minted, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    with pytest.raises(Unauthenticated, match="did not authenticate"):
        await tokens.principal(expired)


async def test_a_deleted_service_accounts_token_is_refused_after_the_cache(
    api: ApiClient,
    namespace: str,
    tenants: Tenants,
    control_plane_identity: ControlPlaneIdentity,
) -> None:
    from kubernetes import client

    tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "doomed")
    token = mint(api, namespace, "doomed")
    clock = FakeClock()
    tokens = ServiceAccountTokens(control_plane_identity.api, cache_seconds=10, clock=clock)
    assert await tokens.principal(token) is not None
    client.CoreV1Api(api).delete_namespaced_service_account("doomed", namespace)
    assert await tokens.principal(token) is not None  # cached
    deadline = time.monotonic() + 30
    while True:  # until the API server's view of ServiceAccounts has the deletion
        clock.now += 10
        try:
            await tokens.principal(token)
        except Unauthenticated:
            break
        assert time.monotonic() < deadline, "the deleted ServiceAccount's token still works"
        await asyncio.sleep(0.2)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_without_the_rules_the_control_plane_is_unavailable(
    k8s_cluster: Cluster, api: ApiClient, namespace: str, tenants: Tenants
) -> None:
    tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "powerless")
    create_service_account(api, namespace, "caller")
    powerless = client_as(k8s_cluster, mint(api, namespace, "powerless"))
    try:
        with pytest.raises(Unavailable, match="may not create tokenreviews"):
            await ServiceAccountTokens(powerless).principal(mint(api, namespace, "caller"))
    finally:
        powerless.close()  # type: ignore[no-untyped-call]


async def test_the_authenticator_accepts_service_account_tokens(
    tmp_path: Path, api: ApiClient, namespace: str, tenants: Tenants, tokens: ServiceAccountTokens
) -> None:
    team = tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "app")
    store = SqliteStore(tmp_path / "db")
    store.open()
    try:
        authenticator = auth.Authenticator(store, service_accounts=tokens)
        principal = await authenticator.authenticate(f"Bearer {mint(api, namespace, 'app')}")
        assert principal == auth.Principal(team, f"serviceaccounts/{namespace}/app", DEFAULT)
        # FLARE's own tokens work beside them, as before.
        _, secret = await auth.create_token(
            store,
            tenant="t",
            display_name="",
            scopes=[],
            ttl=None,
            creator="test",
            now=utc_now(),
        )
        assert (await authenticator.authenticate(f"Bearer {secret}")).tenant == "t"
        with pytest.raises(Unauthenticated, match="malformed token"):
            await authenticator.authenticate("Bearer garbage")
        with pytest.raises(Unauthenticated, match="did not authenticate"):
            await authenticator.authenticate("Bearer not.a.token")
    finally:
        store.close()


async def test_a_control_plane_in_cluster_mode_serves_a_service_account(
    *,
    tmp_path: Path,
    federation_file: Path,
    k8s_cluster: Cluster,
    api: ApiClient,
    namespace: str,
    tenants: Tenants,
) -> None:
    """Cluster mode (state in FlareIntents of `namespace`) accepts a ServiceAccount's
    token as a credential of its Capsule tenant."""
    team = tenants.create(namespaces=[namespace])
    create_service_account(api, namespace, "app")
    token = mint(api, namespace, "app")
    plane = ControlPlane(
        Settings(
            listen="127.0.0.1:0",
            http_listen="",
            metrics_listen="",
            data_dir=tmp_path / "data",
            federation_file=federation_file,
            grace_seconds=0.5,
            store="kubernetes",
            federation="local",
            kubeconfig=k8s_cluster.kubeconfig,
            namespace=namespace,
        )
    )
    await plane.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{plane.grpc_port}")
    try:
        metadata = (("authorization", f"Bearer {token}"),)
        intents = intent_service_pb2_grpc.IntentServiceStub(channel)
        created = await intents.CreateIntent(
            intent_service_pb2.CreateIntentRequest(intent=gpu_job("sa-job")), metadata=metadata
        )
        assert created.intent.name.startswith(f"tenants/{team}/intents/")
        listed = await intents.ListIntents(
            intent_service_pb2.ListIntentsRequest(), metadata=metadata
        )
        assert [i.name for i in listed.intents] == [created.intent.name]
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await token_service_pb2_grpc.TokenServiceStub(channel).CreateToken(
                tok.CreateTokenRequest(parent=f"tenants/{team}"), metadata=metadata
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await intents.ListIntents(
                intent_service_pb2.ListIntentsRequest(),
                metadata=(("authorization", "Bearer not.a.token"),),
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()
        await plane.stop()
