"""The control plane assembled: store, federation, engine, gRPC server and the
REST gateway, started and stopped together.

Two ways to keep state. The embedded default keeps it in SQLite and runs one
process. Cluster mode (`store="kubernetes"`) keeps intents and tokens as
FlareIntent and FlareToken objects in the consumer cluster, so any number of
replicas serve the API while one of them, the holder of a Lease, drives the
engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from controlplane import auth
from controlplane.api.rest import Gateway
from controlplane.api.server import SERVICE_NAMES, build_server, set_serving
from controlplane.clock import utc_now
from controlplane.cluster.admin import ADMIN_SECRET, ensure_admin_secret
from controlplane.cluster.lease import LeaderElection, LeadershipLost, Timing
from controlplane.cluster.serviceaccounts import ServiceAccountTokens
from controlplane.contention import HALF_LIFE_HOURS
from controlplane.engine import CHECK_SECONDS, IntentEngine
from controlplane.errors import FlareError
from controlplane.federation.fluidos.adapter import FluidosFederation, Identity
from controlplane.federation.local import LocalFederation, load_offers
from controlplane.federation.port import Federation
from controlplane.intents import lifecycle
from controlplane.quotas import Quota, Quotas
from controlplane.store.kubernetes import KubernetesStore
from controlplane.store.sqlite import SqliteStore, Synchronous
from controlplane.telemetry.attribution import Attribution
from controlplane.telemetry.history import History
from controlplane.telemetry.hub import NodeState, TelemetryHub
from controlplane.telemetry.ingest import ACK_INTERVAL, Ingest
from controlplane.telemetry.journal import Journal
from controlplane.telemetry.metrics import CONTENT_TYPE, Figures, Metrics
from controlplane.telemetry.notices import HealthNotices, Notice
from controlplane.telemetry.offers import offers_of
from controlplane.telemetry.usage import usage as intent_usage
from controlplane.telemetry.watch import Watchers
from controlplane.webhooks import Webhooks
from flare import tls
from flare.money import DEFAULT_RATES_PER_EUR
from flare.v1 import (
    intent_pb2,
    intent_service_pb2,
    offer_service_pb2,
    telemetry_service_pb2,
    token_service_pb2,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
DB_FILE = "flare.db"
ADMIN_TOKEN_FILE = "admin-token"
TELEMETRY_DIR = "telemetry"
WEBHOOK_SECRET_FILE = "webhook-secret"
LEASE = "flare-controlplane"
StoreKind = Literal["sqlite", "kubernetes"]
FederationKind = Literal["local", "fluidos"]


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Settings:
    listen: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:8080"  # "" disables the REST gateway
    console: bool = True  # the web console at /console/ on the REST gateway's port
    data_dir: Path = field(default_factory=lambda: Path.home() / ".local" / "share" / "flare")
    federation_file: Path | None = None
    synchronous: Synchronous = "FULL"
    engine_workers: int = 16
    # Units of each currency per 1 EUR, for comparing prices and limits.
    exchange_rates: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_RATES_PER_EUR))
    # Criterion weights of Balanced_Optimization; None: the documented defaults.
    balanced_weights: dict[str, float] | None = None
    grace_seconds: float = 5.0
    # An agent not heard for this long is stale: its node's offers leave placement.
    stale_after_seconds: float = 30.0
    metrics_listen: str = "127.0.0.1:9401"  # Prometheus /metrics; "" disables it
    # TLS on the gRPC and REST ports (PEM files); None: plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A second gRPC port for agents with mutual TLS: agents present a certificate that
    # `agent_client_ca` signed, naming their node (a relay's: its cluster); StreamTelemetry
    # and RelayTelemetry are then refused on the main port. "": agents stream to the main port.
    agent_listen: str = ""
    agent_client_ca: Path | None = None
    # Longest wait before an agent's durable messages are acknowledged.
    ack_interval_seconds: float = ACK_INTERVAL
    # The consumer cluster's API server; None: the in-cluster ServiceAccount, when the
    # store or the federation needs one.
    kubeconfig: Path | None = None
    # Where intents and tokens live: SQLite in data_dir, or FlareIntent/FlareToken objects in
    # `namespace` of the consumer cluster (cluster mode: replicas, one leader).
    store: StoreKind = "sqlite"
    # Offers and allocation: the embedded `local` federation or FLUIDOS. None: FLUIDOS when a
    # kubeconfig is given, local otherwise.
    federation: FederationKind | None = None
    namespace: str = "flare-system"
    # This replica's name in leader election (a pod's name in a cluster).
    identity: str = field(default_factory=default_identity)
    lease: Timing = field(default_factory=Timing)
    # How often running intents' providers and workloads are checked (failover, repair).
    check_seconds: float = CHECK_SECONDS
    # Per-tenant limits on GPUs and spend per hour (controlplane/quotas.py).
    quotas: dict[str, Quota] = field(default_factory=dict)
    # Tenants' weights in the fair share of GPU-hours (1 when not named), and how fast
    # past use is forgotten (controlplane/contention.py).
    fair_share: dict[str, float] = field(default_factory=dict)
    fair_share_half_life_hours: float = HALF_LIFE_HOURS
    # Per-tenant webhook URLs, and the key that signs every delivery; "" : a key made on
    # first start in data_dir (set one in cluster mode, where replicas must share it).
    webhooks: dict[str, str] = field(default_factory=dict)
    webhook_secret: str = ""
    fluidos_identity: Identity = field(
        default_factory=lambda: Identity(node_id="flare-consumer", domain="flare.local", ip="")
    )


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        federation = settings.federation or ("fluidos" if settings.kubeconfig else "local")
        kube = (
            _kube_client(settings.kubeconfig)
            if settings.store == "kubernetes" or federation == "fluidos"
            else None
        )
        self.kube = kube
        self.store: SqliteStore | KubernetesStore
        self.election: LeaderElection | None = None
        if settings.store == "kubernetes":
            self.store = KubernetesStore(kube, settings.namespace)
            self.election = LeaderElection(
                kube, settings.namespace, LEASE, settings.identity, timing=settings.lease
            )
        else:
            self.store = SqliteStore(settings.data_dir / DB_FILE, synchronous=settings.synchronous)
        self.local: LocalFederation | None = None
        self.fluidos: FluidosFederation | None = None
        self.federation: Federation
        if kube is not None and federation == "fluidos":
            self.fluidos = FluidosFederation(
                kube,
                settings.fluidos_identity,
                rates=settings.exchange_rates,
                progress=self._note,
            )
            self.federation = self.fluidos
        else:
            self.local = LocalFederation(
                load_offers(settings.federation_file), settings.exchange_rates
            )
            self.federation = self.local
        self.hub = TelemetryHub(history=History())
        self.attribution = Attribution(self.hub)
        self.hub.on_node_changed(self._node_changed)
        if self.local is not None:
            self.local.on_holds_changed(self.attribution.held)
        self.watchers = Watchers(self.hub, self.attribution.intent_of)
        self.notices = HealthNotices()
        self._telling: set[asyncio.Future[None]] = set()
        self.metrics = Metrics(self.hub, self.attribution.intent_of)
        self.journal = Journal(
            settings.data_dir / TELEMETRY_DIR, fsync=settings.synchronous == "FULL"
        )
        self.engine: IntentEngine | None = None
        self.webhooks: Webhooks | None = None
        self.ingest = Ingest(self.hub, self.journal, ack_interval=settings.ack_interval_seconds)
        self.metrics_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_runner: web.AppRunner | None = None
        self.grpc_port = 0
        self.agent_port = 0
        self.http_port = 0
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        # Set when this replica must end (it lost its leadership): serve() exits non-zero.
        self.failed = asyncio.Event()

    @property
    def admin_token_path(self) -> Path:
        return self.settings.data_dir / ADMIN_TOKEN_FILE

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.store, KubernetesStore):
            await self.store.start()
        else:
            self.store.open()
        replayed = self.hub.replay(self.journal.open(self.hub.checkpoint))
        live = await self.store.live()
        if self.fluidos is not None:
            await self.fluidos.start()
        self.engine = IntentEngine(
            self.store,
            self.federation,
            workers=settings.engine_workers,
            balanced_weights=settings.balanced_weights,
            on_planned=self.metrics.placement_seconds.observe,
            check_seconds=settings.check_seconds,
            quotas=Quotas(settings.quotas, settings.exchange_rates),
            shares=settings.fair_share,
            half_life_hours=settings.fair_share_half_life_hours,
        )
        # In cluster mode, Kubernetes ServiceAccount tokens are credentials too.
        service_accounts = (
            ServiceAccountTokens(self.kube)
            if self.kube is not None and self.election is not None
            else None
        )
        authenticator = auth.Authenticator(self.store, service_accounts=service_accounts)
        self.server, self._health = build_server(
            intents=self.store,
            tokens=self.store,
            engine=self.engine,
            federation=self.federation,
            authenticator=authenticator,
            ingest=self.ingest,
            watchers=self.watchers,
            usage=self.usage,
            agents_need_certificates=bool(settings.agent_listen),
        )
        host = settings.listen.rsplit(":", 1)[0]
        try:
            gateway_target = self._add_ports()
        except (RuntimeError, tls.TlsError) as error:  # RuntimeError: grpc's "address in use"
            self.store.close()
            raise OSError(f"cannot listen on {settings.listen}: {error}") from error
        await self.server.start()
        self._tasks = [
            asyncio.create_task(self._sweep()),
            asyncio.create_task(self.watchers.run()),
        ]
        if self.election is None:
            await self._lead()
        else:
            self._tasks.append(asyncio.create_task(self._elect()))
        if settings.metrics_listen:
            self._metrics_runner, self.metrics_port = await _serve_http(
                _metrics_app(self), settings.metrics_listen, settings.grace_seconds
            )
        if settings.http_listen:
            services = [
                intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"],
                offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"],
                token_service_pb2.DESCRIPTOR.services_by_name["TokenService"],
                telemetry_service_pb2.DESCRIPTOR.services_by_name["TelemetryService"],
            ]
            gateway = Gateway(gateway_target, services)
            self._runner, self.http_port = await _serve_http(
                gateway.app(console=settings.console),
                settings.http_listen,
                settings.grace_seconds,
                tls.server_ssl_context(settings.tls_cert, settings.tls_key)
                if settings.tls_cert is not None and settings.tls_key is not None
                else None,
            )
        await set_serving(self._health, True)
        gc.freeze()  # what start-up made lives as long as the process: no need to scan it
        log.info(
            "control plane serving",
            extra={
                "grpc": f"{host}:{self.grpc_port}",
                "rest": f"{settings.http_listen.rsplit(':', 1)[0]}:{self.http_port}"
                if settings.http_listen
                else "off",
                "services": list(SERVICE_NAMES),
                "tls": settings.tls_cert is not None,
                "agents_mutual_tls": f"{settings.agent_listen.rsplit(':', 1)[0]}:{self.agent_port}"
                if settings.agent_listen
                else "off",
                "metrics": f"{settings.metrics_listen.rsplit(':', 1)[0]}:{self.metrics_port}"
                if settings.metrics_listen
                else "off",
                "intents_live": len(live),
                "agent_nodes": len(self.hub.nodes),
                "telemetry_records_replayed": replayed,
                "admin_token": str(self.admin_token_path)
                if self.election is None
                else f"Secret {settings.namespace}/{ADMIN_SECRET}",
                "store": settings.store,
                "identity": settings.identity if self.election is not None else "",
            },
        )

    def _add_ports(self) -> str:
        """Opens the gRPC ports (TLS when configured, and the agents' mutual-TLS port);
        returns the address the REST gateway calls, which with TLS is a loopback
        port of its own (every call there still needs a token)."""
        settings = self.settings
        if settings.tls_cert is None or settings.tls_key is None:
            self.grpc_port = self.server.add_insecure_port(settings.listen)
            host = settings.listen.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"
            gateway_target = f"{host}:{self.grpc_port}"
        else:
            credentials = tls.server_credentials(settings.tls_cert, settings.tls_key)
            self.grpc_port = self.server.add_secure_port(settings.listen, credentials)
            gateway_target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        if settings.agent_listen:
            if (
                settings.tls_cert is None
                or settings.tls_key is None
                or not settings.agent_client_ca
            ):
                raise tls.TlsError(
                    "the agent port needs --tls-cert, --tls-key and --agent-client-ca"
                )
            mutual = tls.server_credentials(
                settings.tls_cert, settings.tls_key, settings.agent_client_ca
            )
            self.agent_port = self.server.add_secure_port(settings.agent_listen, mutual)
        return gateway_target

    async def _lead(self) -> None:
        """What the one replica that drives allocation does: hold the GPUs that live
        intents hold, make sure there is an admin token, start the engine.

        Only holds the federation confirmed are restored. An intent still RESERVING
        may never have had its hold (its reserve not yet run, or refused, before the
        last leader stopped): its next step reserves again and checks the capacity,
        as restoring its hold unchecked could sell the same GPUs twice."""
        assert self.engine is not None
        holding = [i for i in await self.store.live() if i.state in lifecycle.RESERVED]
        if self.local is not None:
            self.local.restore(holding)
        if self.fluidos is not None:
            self.fluidos.restore(holding)
        if isinstance(self.store, KubernetesStore):
            await ensure_admin_secret(self.store, self.kube, self.settings.namespace, now=utc_now())
        elif await auth.ensure_admin_token(self.store, self.admin_token_path, now=utc_now()):
            log.info("admin token written", extra={"path": str(self.admin_token_path)})
        self.webhooks = Webhooks(
            self.store, self.store, self.settings.webhooks, self._webhook_secret()
        )
        await self.webhooks.start()
        await self.engine.start()

    def _webhook_secret(self) -> bytes:
        if self.settings.webhook_secret:
            return self.settings.webhook_secret.encode()
        path = self.settings.data_dir / WEBHOOK_SECRET_FILE
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
        return path.read_text().strip().encode()

    async def _elect(self) -> None:
        assert self.election is not None
        try:
            await self.election.run(self._lead)
        except LeadershipLost as lost:
            # Another replica may lead by now: stop at once, as Kubernetes controllers do,
            # and let the restart join as a follower.
            log.error("%s; stopping", lost)
            if self.engine is not None:
                await self.engine.stop()
            self.failed.set()

    async def stop(self) -> None:
        """Graceful: stop taking requests, let running ones finish, stop the
        engine, close the store."""
        await set_serving(self._health, False)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.server.stop(self.settings.grace_seconds)
        for task in self._tasks:
            task.cancel()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.engine is not None:
            await self.engine.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.election is not None:
            await self.election.release()
        if self.fluidos is not None:
            await self.fluidos.stop()
        await self.journal.close()
        self.store.close()
        self._stopped.set()
        log.info("control plane stopped")

    def _node_changed(self, node: NodeState) -> None:
        offers = offers_of(node)
        self.attribution.offers_published(node.key, offers)
        if self.local is not None:
            # Streaming nodes are offers of the embedded federation; with FLUIDOS, nodes
            # reach placement as PeeringCandidates of their Flavors.
            self.local.replace_offers(node.key, offers)
        for notice in self.notices.changed(node, self.attribution.on_node(node.key)):
            task = asyncio.ensure_future(self._tell(notice))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    async def _tell(self, notice: Notice) -> None:
        log.warning(notice.message, extra={"intent": notice.intent, "reason": notice.reason})
        await self._note(notice.intent, notice.reason, notice.message)
        if notice.failure and self.engine is not None:
            self.engine.fail(notice.intent, notice.reason, notice.message)

    async def _note(self, name: str, reason: str, message: str) -> None:
        """An event in an intent's history that changes no state."""

        def change(intent: intent_pb2.Intent) -> intent_pb2.Intent:
            return lifecycle.noted(intent, reason=reason, message=message, now=utc_now())

        try:
            await self.store.update(name, change)
        except FlareError as error:  # the intent is gone meanwhile: nothing to tell
            log.info("event not recorded: %s", error, extra={"intent": name})

    def usage(self, intent: intent_pb2.Intent) -> intent_pb2.IntentUsage:
        gpus = []
        for node_key, uuid in self.attribution.gpus_of(intent.name):
            node = self.hub.nodes.get(node_key)
            gpus.append((uuid, node.latest.get(uuid) if node and not node.stale else None))
        return intent_usage(intent, utc_now(), gpus)

    async def figures(self) -> Figures:
        """The control plane's own metrics, as of now."""
        by_state: dict[str, float] = {}
        for intent in await self.store.live():
            state = intent_pb2.State.Name(intent.state).removeprefix("STATE_")
            by_state[state] = by_state.get(state, 0) + 1
        stale = sum(1 for node in self.hub.nodes.values() if node.stale)
        return {
            "flare_intents": by_state,
            "flare_agents": {"live": len(self.hub.nodes) - stale, "stale": stale},
            "flare_telemetry_streams": self.ingest.streams,
            "flare_telemetry_messages": self.journal.appended,
            "flare_telemetry_duplicates": self.hub.duplicates,
            "flare_telemetry_missing": self.hub.missing,
            "flare_telemetry_samples": sum(n.samples for n in self.hub.nodes.values()),
            "flare_watchers": len(self.watchers),
            "flare_watch_resyncs": self.watchers.resyncs,
        }

    async def _sweep(self) -> None:
        """Marks agents that went quiet stale, so their offers leave placement."""
        period = min(1.0, self.settings.stale_after_seconds / 4)
        while True:
            await asyncio.sleep(period)
            for node in self.hub.sweep(self.settings.stale_after_seconds):
                log.warning("agent stale", extra={"node": node.key})

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _kube_client(kubeconfig: Path | None) -> ApiClient:
    """A client for the kubeconfig's cluster, or for this pod's own (its ServiceAccount)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None:
        config.load_incluster_config(configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
    # One connection per concurrent call of the store's and the federation's threads.
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def _metrics_app(plane: ControlPlane) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        text = await plane.metrics.render(await plane.figures())
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a header over 8 KiB, broken HTTP) as an
    ERROR with a traceback, though it is the client's fault and answered 400; a client
    could fill the log with them. Such records are dropped; errors of the handlers
    themselves still reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, BadHttpMessage)


logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())


async def _serve_http(
    app: web.Application,
    listen: str,
    grace_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Serves `app`; on cleanup, requests still running (a watch's stream) get
    `grace_seconds` to finish."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_seconds)
    await runner.setup()
    host, port = listen.rsplit(":", 1)
    site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=ssl_context)
    await site.start()
    return runner, _bound_port(site) or int(port)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the bound socket here
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


async def serve(settings: Settings, stop: asyncio.Event) -> int:
    """Runs until `stop` is set (exit status 0) or the replica fails (1)."""
    plane = ControlPlane(settings)
    await plane.start()
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(plane.failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        with contextlib.suppress(Exception):
            await plane.stop()
    return 1 if plane.failed.is_set() else 0
