"""`flare-controlplane`: serve the FLARE API.

With no arguments it runs the embedded default: SQLite in ~/.local/share/flare,
the local (simulated) federation, gRPC on 127.0.0.1:50051 and the REST
gateway on 127.0.0.1:8080. In a cluster, `--store kubernetes --federation
fluidos` keeps the state in FlareIntent objects and allocates through FLUIDOS;
run two or more replicas, one leads. Every flag also reads an environment
variable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

from controlplane.app import Settings, serve
from controlplane.cluster.lease import Timing
from controlplane.contention import parse_shares
from controlplane.errors import FlareError
from controlplane.federation.fluidos.adapter import Identity
from controlplane.placement.objectives import parse_weights
from controlplane.quotas import parse_quotas
from controlplane.webhooks import parse_webhooks
from flare import logs
from flare.money import parse_rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="flare-controlplane", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--listen",
        default=env("FLARE_LISTEN", defaults.listen),
        help="gRPC address host:port (FLARE_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--http-listen",
        default=env("FLARE_HTTP_LISTEN", defaults.http_listen),
        help="REST gateway address, or 'off' (FLARE_HTTP_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        default=env("FLARE_CONSOLE", "on") != "off",
        help="serve the web console at /console/ on the REST port "
        "(FLARE_CONSOLE=off or --no-console turns it off; default on)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env("FLARE_DATA_DIR", str(defaults.data_dir))),
        help="where the database and the admin token live (FLARE_DATA_DIR)",
    )
    parser.add_argument(
        "--federation-file",
        type=Path,
        default=env("FLARE_FEDERATION_FILE"),
        help="JSON description of the local federation (FLARE_FEDERATION_FILE; "
        "default: the packaged demo federation)",
    )
    parser.add_argument(
        "--sync",
        choices=("FULL", "NORMAL"),
        default=env("FLARE_SYNC", "FULL"),
        help="SQLite durability: FULL survives power loss, NORMAL a process crash "
        "(FLARE_SYNC; default %(default)s)",
    )
    parser.add_argument(
        "--engine-workers",
        type=int,
        default=int(env("FLARE_ENGINE_WORKERS", "16")),
        help="intents advanced concurrently (FLARE_ENGINE_WORKERS; default %(default)s)",
    )
    parser.add_argument(
        "--exchange-rates",
        default=env("FLARE_EXCHANGE_RATES", ""),
        help="units of each currency per 1 EUR, e.g. 'USD=1.15,CHF=0.93', over the built-in "
        "defaults (FLARE_EXCHANGE_RATES)",
    )
    parser.add_argument(
        "--balanced-weights",
        default=env("FLARE_BALANCED_WEIGHTS", ""),
        help="criterion weights of Balanced_Optimization, e.g. "
        "'cost=0.4,performance=0.3,latency=0.2,energy=0.1' (FLARE_BALANCED_WEIGHTS)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(env("FLARE_KUBECONFIG", "")) if env("FLARE_KUBECONFIG") else None,
        help="the consumer cluster (FLARE_KUBECONFIG; default: the pod's ServiceAccount when "
        "the store or the federation needs a cluster)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "kubernetes"),
        default=env("FLARE_STORE", defaults.store),
        help="where intents and tokens live: SQLite in --data-dir, or FlareIntent and "
        "FlareToken objects in --namespace, shared by replicas (FLARE_STORE; default "
        "%(default)s)",
    )
    parser.add_argument(
        "--federation",
        choices=("local", "fluidos"),
        default=env("FLARE_FEDERATION"),
        help="offers and allocation: the embedded local federation or FLUIDOS on the consumer "
        "cluster (FLARE_FEDERATION; default: fluidos with --kubeconfig, local without)",
    )
    parser.add_argument(
        "--namespace",
        default=env("FLARE_NAMESPACE", defaults.namespace),
        help="the control plane's namespace in cluster mode: its objects, Lease and admin "
        "token Secret (FLARE_NAMESPACE; default %(default)s)",
    )
    parser.add_argument(
        "--identity",
        default=env("FLARE_IDENTITY", defaults.identity),
        help="this replica's name in leader election (FLARE_IDENTITY; default host-pid)",
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=float(env("FLARE_LEASE_DURATION", str(defaults.lease.lease_seconds))),
        help="seconds without renewal before a follower takes the leader's Lease; the leader "
        "renews every sixth of it and steps down after two thirds (FLARE_LEASE_DURATION; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--fluidos-node-id",
        default=env("FLARE_FLUIDOS_NODE_ID", defaults.fluidos_identity.node_id),
        help="this consumer's FLUIDOS identity, the buyer of reservations "
        "(FLARE_FLUIDOS_NODE_ID, _DOMAIN, _IP)",
    )
    parser.add_argument(
        "--fluidos-domain", default=env("FLARE_FLUIDOS_DOMAIN", defaults.fluidos_identity.domain)
    )
    parser.add_argument(
        "--fluidos-ip", default=env("FLARE_FLUIDOS_IP", defaults.fluidos_identity.ip)
    )
    parser.add_argument(
        "--metrics-listen",
        default=env("FLARE_METRICS_LISTEN", defaults.metrics_listen),
        help="host:port of the Prometheus /metrics endpoint, or 'off' "
        "(FLARE_METRICS_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        default=float(env("FLARE_STALE_AFTER", str(defaults.stale_after_seconds))),
        help="seconds without a message before an agent counts as stale and its offers leave "
        "placement (FLARE_STALE_AFTER; default %(default)s)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=env("FLARE_TLS_CERT") or None,
        help="PEM certificate for TLS on the gRPC and REST ports, with --tls-key "
        "(FLARE_TLS_CERT; default: plaintext)",
    )
    parser.add_argument(
        "--tls-key", type=Path, default=env("FLARE_TLS_KEY") or None, help="(FLARE_TLS_KEY)"
    )
    parser.add_argument(
        "--agent-listen",
        default=env("FLARE_AGENT_LISTEN", ""),
        help="a gRPC port for agents with mutual TLS: each agent presents a certificate "
        "signed by --agent-client-ca naming its node, and the main port refuses agents' "
        "streams (FLARE_AGENT_LISTEN; default: agents use the main port)",
    )
    parser.add_argument(
        "--agent-client-ca",
        type=Path,
        default=env("FLARE_AGENT_CLIENT_CA") or None,
        help="PEM CA that signs the agents' client certificates (FLARE_AGENT_CLIENT_CA)",
    )
    parser.add_argument(
        "--quotas",
        default=env("FLARE_QUOTAS", ""),
        help="per-tenant limits, e.g. 'acme=gpus:8,spend:20 EUR;globex=gpus:2' (FLARE_QUOTAS; "
        "default: none)",
    )
    parser.add_argument(
        "--fair-share",
        default=env("FLARE_FAIR_SHARE", ""),
        help="tenants' weights in the fair share of GPU-hours under contention, e.g. "
        "'acme=2,globex=1' (FLARE_FAIR_SHARE; default: every tenant 1)",
    )
    parser.add_argument(
        "--fair-share-half-life",
        type=float,
        default=float(env("FLARE_FAIR_SHARE_HALF_LIFE", str(defaults.fair_share_half_life_hours))),
        help="hours after which a tenant's past GPU use counts half in the fair share "
        "(FLARE_FAIR_SHARE_HALF_LIFE; default %(default)s)",
    )
    parser.add_argument(
        "--webhooks",
        default=env("FLARE_WEBHOOKS", ""),
        help="per-tenant URLs told of every state change of the tenant's intents, e.g. "
        "'acme=https://hooks.acme.example/flare' (FLARE_WEBHOOKS; default: none)",
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        default=float(env("FLARE_CHECK_INTERVAL", str(defaults.check_seconds))),
        help="seconds between checks of running intents: a failed provider moves them, a "
        "workload deleted by hand is deployed again (FLARE_CHECK_INTERVAL; default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env("FLARE_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
        help="(FLARE_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        default=env("FLARE_LOG_FORMAT", "json"),
        choices=("json", "text"),
        help="(FLARE_LOG_FORMAT; default %(default)s)",
    )
    return parser.parse_args(argv)


def lease_timing(lease_seconds: float) -> Timing:
    """The election's timing from its one setting (ValueError when unusable)."""
    if lease_seconds < 3:
        raise ValueError("--lease-duration must be at least 3 seconds")
    return Timing(
        lease_seconds, renew_seconds=lease_seconds * 2 / 3, retry_seconds=lease_seconds / 6
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        rates = parse_rates(args.exchange_rates)
        balanced = parse_weights(args.balanced_weights) if args.balanced_weights else None
        lease_timing(args.lease_duration)
        quotas = parse_quotas(args.quotas)
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if args.agent_listen and (args.tls_cert is None or args.agent_client_ca is None):
            raise ValueError("--agent-listen needs --tls-cert, --tls-key and --agent-client-ca")
        shares = parse_shares(args.fair_share)
        if not args.fair_share_half_life > 0:
            raise ValueError("--fair-share-half-life must be positive")
        webhooks = parse_webhooks(args.webhooks)
    except ValueError as error:
        print(f"flare-controlplane: {error}", file=sys.stderr)
        return 2
    settings = Settings(
        exchange_rates=rates,
        balanced_weights=balanced,
        listen=args.listen,
        http_listen="" if args.http_listen == "off" else args.http_listen,
        console=args.console,
        data_dir=args.data_dir,
        federation_file=args.federation_file,
        synchronous=args.sync,
        engine_workers=args.engine_workers,
        stale_after_seconds=args.stale_after,
        metrics_listen="" if args.metrics_listen == "off" else args.metrics_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        agent_listen=args.agent_listen,
        agent_client_ca=args.agent_client_ca,
        kubeconfig=args.kubeconfig,
        store=args.store,
        federation=args.federation,
        namespace=args.namespace,
        identity=args.identity,
        lease=lease_timing(args.lease_duration),
        check_seconds=args.check_interval,
        quotas=quotas,
        fair_share=shares,
        fair_share_half_life_hours=args.fair_share_half_life,
        webhooks=webhooks,
        # The signing key comes from the environment only (a Secret), never a flag.
        webhook_secret=os.environ.get("FLARE_WEBHOOK_SECRET", ""),
        fluidos_identity=Identity(args.fluidos_node_id, args.fluidos_domain, args.fluidos_ip),
    )

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(settings, stop)

    # Every agent message makes short-lived protobuf objects by the thousand; collecting the
    # young generation less often keeps the collector from taking a tenth of the ingest.
    gc.set_threshold(50_000, 20, 100)
    try:
        return asyncio.run(run())
    except (OSError, FlareError) as error:
        print(f"flare-controlplane: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
