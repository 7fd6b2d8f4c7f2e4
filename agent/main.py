"""`flare-agent`: the FLARE node agent.

Runs until SIGTERM: samples the GPUs every interval and streams them to the
control plane (--control-plane), and keeps its Node's annotations and the
node's FLUIDOS Flavor current (--kubernetes). `flare-agent --once` probes the
GPUs and prints, without touching any cluster, the inventory, one reading per
GPU, and the annotations, labels and Flavor it would write. Every flag also
reads an environment variable, so a ConfigMap and a Secret configure a
DaemonSet's agents.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from agent import annotations as node_annotations
from agent.config import ConfigError, ProviderConfig
from agent.kube.flavor import flavor_for
from agent.outbox import Outbox
from agent.probe.base import Probe, ProbeError
from agent.probe.select import BACKENDS, open_probe
from agent.runner import Agent, AgentReport, alive
from agent.stream import TelemetryStreamer, credentials_of, token_of
from flare import logs
from flare.money import Money, MoneyError, check_currency, parse_amount, parse_shorthand
from flare.v1 import telemetry_service_pb2

log = logging.getLogger("agent")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="flare-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=env("FLARE_BACKEND", "auto"),
        help="GPU probe (FLARE_BACKEND; default %(default)s)",
    )
    parser.add_argument("--sim-model", default=env("FLARE_SIM_MODEL", "nvidia-h100"))
    parser.add_argument("--sim-count", type=int, default=int(env("FLARE_SIM_COUNT", "8")))
    parser.add_argument("--sim-pattern", default=env("FLARE_SIM_PATTERN", "steady"))
    parser.add_argument(
        "--node-name",
        default=env("NODE_NAME", os.uname().nodename),
        help="this Node (NODE_NAME, from the downward API)",
    )
    parser.add_argument("--provider", default=env("FLARE_PROVIDER", "local"))
    parser.add_argument("--region", default=env("FLARE_REGION", "local-1"))
    parser.add_argument("--zone", default=env("FLARE_ZONE", ""))
    parser.add_argument(
        "--hourly-rate",
        default=env("FLARE_HOURLY_RATE", "0 EUR"),
        help="price of one GPU for one hour, e.g. '2.50 EUR' (FLARE_HOURLY_RATE)",
    )
    parser.add_argument(
        "--preemptible", action="store_true", default=env("FLARE_PREEMPTIBLE", "false") == "true"
    )
    parser.add_argument("--cluster", default=env("FLARE_CLUSTER", ""), help="(FLARE_CLUSTER)")
    parser.add_argument(
        "--country", default=env("FLARE_COUNTRY", ""), help="ISO code, e.g. DE (FLARE_COUNTRY)"
    )
    parser.add_argument("--city", default=env("FLARE_CITY", ""))
    parser.add_argument(
        "--availability",
        type=float,
        default=_optional_float(env("FLARE_AVAILABILITY")),
        help="availability the provider commits to, in percent (FLARE_AVAILABILITY)",
    )
    parser.add_argument(
        "--network-latency-ms",
        type=int,
        default=_optional_int(env("FLARE_NETWORK_LATENCY_MS")),
    )
    parser.add_argument(
        "--network-bandwidth-gbps",
        type=int,
        default=_optional_int(env("FLARE_NETWORK_BANDWIDTH_GBPS")),
    )
    parser.add_argument("--network-tier", default=env("FLARE_NETWORK_TIER") or None)
    parser.add_argument(
        "--fluidos-node-id",
        default=env("FLARE_FLUIDOS_NODE_ID", ""),
        help="the FLUIDOS identity that owns the Flavor (FLARE_FLUIDOS_NODE_ID, _DOMAIN, _IP)",
    )
    parser.add_argument("--fluidos-domain", default=env("FLARE_FLUIDOS_DOMAIN", ""))
    parser.add_argument("--fluidos-ip", default=env("FLARE_FLUIDOS_IP", ""))
    parser.add_argument("--flavor-namespace", default=env("FLARE_FLAVOR_NAMESPACE", "fluidos"))
    parser.add_argument(
        "--control-plane",
        default=env("FLARE_CONTROL_PLANE", ""),
        help="host:port of the control plane's gRPC API; empty: no streaming (FLARE_CONTROL_PLANE)",
    )
    parser.add_argument(
        "--tls-ca",
        default=env("FLARE_TLS_CA", ""),
        help="PEM CA of the control plane's certificate: stream over TLS (FLARE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        default=env("FLARE_TLS_CERT", ""),
        help="PEM client certificate naming this node, for a control plane that asks agents "
        "for mutual TLS; with --tls-key and --tls-ca (FLARE_TLS_CERT)",
    )
    parser.add_argument("--tls-key", default=env("FLARE_TLS_KEY", ""), help="(FLARE_TLS_KEY)")
    parser.add_argument(
        "--token-file",
        default=env("FLARE_TOKEN_FILE", ""),
        help="file with a token holding the telemetry:write scope (FLARE_TOKEN_FILE; "
        "or the token itself in FLARE_TOKEN)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=float(env("FLARE_INTERVAL", "1")),
        help="seconds between samples (FLARE_INTERVAL; default %(default)s)",
    )
    parser.add_argument(
        "--buffer",
        type=int,
        default=int(env("FLARE_BUFFER", "600")),
        help="messages kept for the control plane while it is away "
        "(FLARE_BUFFER; default %(default)s, ten minutes at 1 s)",
    )
    parser.add_argument(
        "--kubernetes",
        choices=("auto", "on", "off"),
        default=env("FLARE_KUBERNETES", "auto"),
        help="write the Node and Flavor: auto = when in a cluster or KUBECONFIG is set",
    )
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG", ""))
    parser.add_argument(
        "--resync",
        type=float,
        default=float(env("FLARE_RESYNC", "60")),
        help="seconds between passes over the Node and Flavor (FLARE_RESYNC)",
    )
    parser.add_argument(
        "--heartbeat-file",
        default=env("FLARE_HEARTBEAT_FILE", ""),
        help="touched after every sample; --health checks it (FLARE_HEARTBEAT_FILE)",
    )
    parser.add_argument(
        "--health",
        action="store_true",
        help="exit 0 if the running agent sampled within --health-max-age seconds (a probe)",
    )
    parser.add_argument(
        "--health-max-age", type=float, default=float(env("FLARE_HEALTH_MAX_AGE", "60"))
    )
    parser.add_argument("--log-level", default=env("FLARE_LOG_LEVEL", "info"))
    parser.add_argument(
        "--log-format", choices=("json", "text"), default=env("FLARE_LOG_FORMAT", "json")
    )
    parser.add_argument(
        "--once", action="store_true", help="probe once, print what would be written, and exit"
    )
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    return parser.parse_args(argv)


def _optional_float(text: str | None) -> float | None:
    return float(text) if text else None


def _optional_int(text: str | None) -> int | None:
    return int(text) if text else None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _rate(text: str) -> Money:
    amount, code = parse_shorthand(text)
    return Money(parse_amount(amount), check_currency(code))


def _config(args: argparse.Namespace, *, placeholders: bool) -> ProviderConfig:
    """The provider configuration from the flags. With `placeholders` (the --once
    preview) a missing FLUIDOS identity is filled in so that the Flavor can be shown."""
    node_id, domain, ip = args.fluidos_node_id, args.fluidos_domain, args.fluidos_ip
    if placeholders:
        node_id = node_id or args.node_name
        domain = domain or f"{args.provider}.local"
        ip = ip or "127.0.0.1"
    return ProviderConfig(
        provider_name=args.provider,
        region=args.region,
        zone=args.zone,
        hourly_rate=_rate(args.hourly_rate),
        preemptible=args.preemptible,
        cluster=args.cluster,
        availability_percent=args.availability,
        country=args.country.upper(),
        city=args.city,
        network_latency_ms=args.network_latency_ms,
        network_bandwidth_gbps=args.network_bandwidth_gbps,
        network_tier=args.network_tier,
        node_id=node_id,
        domain=domain,
        ip=ip,
        flavor_namespace=args.flavor_namespace,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.health:
        if not args.heartbeat_file:
            print("flare-agent: --health needs --heartbeat-file", file=sys.stderr)
            return 2
        return 0 if alive(Path(args.heartbeat_file), args.health_max_age) else 1
    try:
        config = _config(args, placeholders=args.once)
        probe = open_probe(
            args.backend,
            sim_model=args.sim_model,
            sim_count=args.sim_count,
            sim_pattern=args.sim_pattern,
        )
    except (ConfigError, MoneyError, ProbeError) as error:
        print(f"flare-agent: {error}", file=sys.stderr)
        return 1
    if args.once:
        return _once(args, probe, config)
    logs.configure(args.log_level, args.log_format)
    try:
        agent = _long_running(args, probe, config)
    except (OSError, ValueError) as error:
        probe.close()
        print(f"flare-agent: {error}", file=sys.stderr)
        return 1
    report = asyncio.run(_serve(agent))
    log.info("agent stopped", extra={"report": dataclasses.asdict(report)})
    return 0


def _long_running(args: argparse.Namespace, probe: Probe, config: ProviderConfig) -> Agent:
    use_kube = args.kubernetes == "on" or (
        args.kubernetes == "auto"
        and bool(args.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    if not args.control_plane and not use_kube:
        raise ValueError(
            "nothing to do: give --control-plane to stream, or run where Kubernetes is "
            "reachable (--kubernetes on), or use --once"
        )
    if args.interval <= 0 or args.buffer < 1:
        raise ValueError("--interval must be positive and --buffer at least 1")
    streamer_factory = None
    if args.control_plane:
        target, token = args.control_plane, token_of(args)
        if not token:
            raise ValueError("streaming needs a token: --token-file or FLARE_TOKEN")
        credentials = credentials_of(args)

        def streamer_factory(
            outbox: Outbox, hello: Callable[[], telemetry_service_pb2.NodeInventory]
        ) -> TelemetryStreamer:
            return TelemetryStreamer(target, token, outbox, hello, credentials=credentials)

    kube = None
    if use_kube:
        from agent.kube.sync import api_client, kube_sync

        kube = kube_sync(api_client(args.kubeconfig or None), args.node_name, config)
    return Agent(
        probe,
        config,
        args.node_name,
        interval=args.interval,
        outbox=Outbox(args.buffer),
        streamer_factory=streamer_factory,
        kube_sync=kube,
        resync_seconds=args.resync,
        heartbeat=Path(args.heartbeat_file) if args.heartbeat_file else None,
    )


async def _serve(agent: Agent) -> AgentReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "agent running",
        extra={
            "node": agent.node_name,
            "backend": agent.probe.name,
            "control_plane": agent.streamer.target if agent.streamer else "",
            "kubernetes": agent.kube_sync is not None,
            "interval": agent.interval,
        },
    )
    return await agent.run(stop)


def _once(args: argparse.Namespace, probe: Probe, config: ProviderConfig) -> int:
    try:
        inventory = probe.inventory()
        readings = probe.sample()
    finally:
        probe.close()
    node = {
        "metadata": {"name": args.node_name, "uid": "00000000-0000-0000-0000-000000000000"},
        "status": {"allocatable": {"cpu": "0", "memory": "0", "pods": "0"}},
    }
    annotations = node_annotations.annotations_for(inventory, config)
    report = {
        "node": args.node_name,
        "inventory": _plain(inventory),
        "readings": _plain(readings),
        "labels": node_annotations.labels_for(inventory),
        "annotations": annotations,
        "problems": node_annotations.validate(annotations),
        "flavor": flavor_for(node, inventory, config),
    }
    # Without a cluster there is no Node to own the Flavor, nor its allocatable resources.
    report["flavor"]["metadata"].pop("ownerReferences", None)
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(yaml.safe_dump(report, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
