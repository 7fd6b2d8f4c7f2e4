"""`flare-agent`: the FLARE node agent.

`flare-agent --once` probes the GPUs and prints, without touching any cluster,
the inventory, one reading per GPU, and the annotations, labels and FLUIDOS
Flavor the agent would write on its Node. The long-running mode (writing to
the Node, publishing the Flavor and streaming telemetry) is not wired yet and
says so. Every flag also reads an environment variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from decimal import Decimal
from enum import Enum
from typing import Any

import yaml

from agent import annotations as node_annotations
from agent.config import ConfigError, ProviderConfig
from agent.kube.flavor import flavor_for
from agent.probe.base import ProbeError
from agent.probe.select import BACKENDS, open_probe
from flare.money import Money, MoneyError, check_currency, parse_amount, parse_shorthand

NOT_YET = (
    "flare-agent: only --once works in this release; writing to the Node, publishing the "
    "Flavor and streaming telemetry from a long-running agent are not wired yet."
)


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
    parser.add_argument(
        "--once", action="store_true", help="probe once, print what would be written, and exit"
    )
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.once:
        print(NOT_YET, file=sys.stderr)
        return 2
    try:
        config = ProviderConfig(
            provider_name=args.provider,
            region=args.region,
            zone=args.zone,
            hourly_rate=_rate(args.hourly_rate),
            preemptible=args.preemptible,
            node_id=args.node_name,
            domain=f"{args.provider}.local",
            ip="127.0.0.1",
        )
        probe = open_probe(
            args.backend,
            sim_model=args.sim_model,
            sim_count=args.sim_count,
            sim_pattern=args.sim_pattern,
        )
    except (ConfigError, MoneyError, ProbeError) as error:
        print(f"flare-agent: {error}", file=sys.stderr)
        return 1
    try:
        inventory = probe.inventory()
        readings = probe.sample()
    finally:
        probe.close()
    node = {
        "metadata": {"name": args.node_name, "uid": "00000000-0000-0000-0000-000000000000"},
        "status": {"allocatable": {"cpu": "0", "memory": "0", "pods": "0"}},
    }
    report = {
        "node": args.node_name,
        "inventory": _plain(inventory),
        "readings": _plain(readings),
        "labels": node_annotations.labels_for(inventory),
        "annotations": node_annotations.annotations_for(inventory, config),
        "problems": node_annotations.validate(node_annotations.annotations_for(inventory, config)),
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
