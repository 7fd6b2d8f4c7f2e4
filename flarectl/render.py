"""How resources look: rich tables for people, protobuf JSON or YAML (proto
field names) for programs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from flare import dra
from flare.v1 import (
    common_pb2,
    intent_pb2,
    intent_service_pb2,
    offer_pb2,
    offer_service_pb2,
    token_service_pb2,
)
from flarectl.names import (
    objective_name,
    resource_id,
    state_name,
    workload_type_name,
)

# Width for output that goes to a file or a pipe, so that lines are not cut.
PIPE_WIDTH = 200


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


# Machine-readable output


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def dumps(data: Any, output: Output) -> str:
    if output is Output.YAML:
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text)
    stream.flush()


def print_data(data: Any, output: Output) -> None:
    write(dumps(data, output))


def print_stream_item(message: Message, output: Output) -> None:
    """One item of a stream: a JSON object per line, or a YAML document."""
    data = to_dict(message)
    if output is Output.YAML:
        write("---\n" + dumps(data, output))
    else:
        write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")


# Tables


def console(*, err: bool = False) -> Console:
    stream = sys.stderr if err else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(
        file=stream, width=PIPE_WIDTH if wide else None, highlight=False, soft_wrap=False
    )


def show(*renderables: RenderableType) -> None:
    out = console()
    for renderable in renderables:
        out.print(renderable)


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _row(table: Table, *cells: object) -> None:
    # Text cells: a message such as "[x]" is shown as written, not read as markup.
    table.add_row(*(Text("" if cell is None else str(cell)) for cell in cells))


def money(value: common_pb2.Money) -> str:
    if not value.amount and not value.currency_code:
        return ""
    try:
        amount = Decimal(value.amount or "0")
    except InvalidOperation:
        return f"{value.amount} {value.currency_code}"
    cents = amount.quantize(Decimal("0.01"))
    text = f"{cents:f}" if cents == amount else f"{amount.normalize():f}"
    return f"{text} {value.currency_code}".strip()


def timestamp(value: Timestamp) -> str:
    if not value.seconds and not value.nanos:
        return ""
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(value: Timestamp, now: datetime) -> str:
    """How long ago, kubectl style: 45s, 12m, 3h, 2d."""
    if not value.seconds and not value.nanos:
        return ""
    seconds = max(0, int((now - value.ToDatetime(tzinfo=UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def gpu_request(intent: intent_pb2.Intent) -> str:
    resources = intent.workload.resources
    if not resources.HasField("gpu"):
        return ""
    gpu = resources.gpu
    return f"{gpu.model or gpu.tier or 'any'} x{gpu.count or 1}"


def _gpu_count(placement: intent_pb2.Placement) -> int:
    return sum(node.gpu_count for node in placement.nodes)


def _where(placement: intent_pb2.Placement) -> str:
    if not placement.provider:
        return ""
    return f"{placement.provider}/{placement.region}" if placement.region else placement.provider


def _last_reason(intent: intent_pb2.Intent) -> str:
    return intent.history[-1].reason if intent.history else ""


def intents_table(intents: Iterable[intent_pb2.Intent], now: datetime) -> Table:
    table = _table("NAME", "STATE", "OBJECTIVE", "WORKLOAD", "GPU", "PLACEMENT", "COST/H")
    table.add_column("AGE")
    table.add_column("MESSAGE", overflow="fold")
    for intent in intents:
        workload = intent.workload
        _row(
            table,
            resource_id(intent.name),
            state_name(intent.state),
            objective_name(intent.objective),
            f"{workload_type_name(workload.type)}/{workload.name}",
            gpu_request(intent),
            _where(intent.placement),
            money(intent.placement.hourly_cost),
            age(intent.create_time, now),
            intent.state_message,
        )
    return table


def _properties(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        if value:
            _row(table, key, value)
    return table


def _constraints(constraints: intent_pb2.Constraints) -> str:
    parts = []
    if constraints.HasField("max_hourly_cost"):
        parts.append(f"at most {money(constraints.max_hourly_cost)}/h")
    if constraints.HasField("max_total_cost"):
        parts.append(f"at most {money(constraints.max_total_cost)} in all")
    if constraints.location:
        parts.append(f"in {constraints.location}")
    if constraints.max_latency_ms:
        parts.append(f"latency ≤ {constraints.max_latency_ms} ms")
    if constraints.providers:
        parts.append(f"providers {', '.join(constraints.providers)}")
    if constraints.HasField("preemptible"):
        parts.append("spot only" if constraints.preemptible else "no spot")
    return ", ".join(parts)


def _sla(sla: intent_pb2.Sla) -> str:
    parts = []
    if sla.availability:
        parts.append(f"availability ≥ {sla.availability:g}%")
    if sla.HasField("max_interruption_time"):
        seconds = sla.max_interruption_time.ToTimedelta().total_seconds()
        parts.append(f"interruptions ≤ {seconds:g}s")
    return ", ".join(parts)


def intent_detail(intent: intent_pb2.Intent) -> list[RenderableType]:
    workload = intent.workload
    placement = intent.placement
    nodes = ", ".join(f"{n.node} x{n.gpu_count}" for n in placement.nodes)
    state = state_name(intent.state)
    rows = [
        ("name", intent.name),
        ("state", f"{state}: {intent.state_message}" if intent.state_message else state),
        ("objective", objective_name(intent.objective)),
        ("workload", f"{workload_type_name(workload.type)} {workload.name} ({workload.image})"),
        ("gpu", gpu_request(intent)),
        ("constraints", _constraints(intent.constraints)),
        ("sla", _sla(intent.sla)),
        ("placement", f"{_where(placement)} {placement.gpu_model} on {nodes}".strip()),
        ("cost/h", money(placement.hourly_cost)),
        *_usage_rows(intent.usage),
        ("gpu access", dra.describe(intent.gpu_access) if intent.HasField("gpu_access") else ""),
        ("endpoint", intent.endpoint),
        ("revision", str(intent.revision)),
        ("created", timestamp(intent.create_time)),
        ("updated", timestamp(intent.update_time)),
        ("request id", intent.request_id),
        ("uid", intent.uid),
    ]
    if not placement.provider:
        rows = [row for row in rows if row[0] != "placement"]
    out: list[RenderableType] = [_properties(rows)]
    if intent.history:
        history = _table("TIME", "FROM", "TO", "REASON", "MESSAGE", "REVISION", title="history")
        for change in intent.history:
            _row(
                history,
                timestamp(change.time),
                state_name(change.from_state),
                state_name(change.to_state),
                change.reason,
                change.message,
                change.revision,
            )
        out.append(history)
    waiting = intent.state in (intent_pb2.STATE_QUEUED, intent_pb2.STATE_FAILED)
    if waiting and intent.HasField("last_plan"):
        out += _plan_misses(intent.last_plan)
    return out


def _usage_rows(usage: intent_pb2.IntentUsage) -> list[tuple[str, str]]:
    rows = []
    seconds = usage.running_time.ToTimedelta().total_seconds()
    if seconds or usage.cost_so_far.amount:
        rows.append(("running", f"{seconds / 3600:.2f} h, {money(usage.cost_so_far)} so far"))
    if usage.gpu_uuids:
        utilisation = (
            f"{usage.gpu_utilization_percent:.0f}% "
            if usage.HasField("gpu_utilization_percent")
            else ""
        )
        rows.append(("gpus", f"{utilisation}on {', '.join(usage.gpu_uuids)}".strip()))
    return rows


def _criteria_names(candidates: Iterable[intent_pb2.Candidate]) -> list[str]:
    names: list[str] = []
    for candidate in candidates:
        for criterion in candidate.criteria:
            if criterion.criterion not in names:
                names.append(criterion.criterion)
    return names


def _criterion(candidate: intent_pb2.Candidate, name: str) -> str:
    for criterion in candidate.criteria:
        if criterion.criterion == name:
            raw = f"{criterion.value:.4g} {criterion.unit}".strip()
            return f"{criterion.score:.2f} ({raw})"
    return ""


def candidates_table(plan: intent_pb2.Plan) -> Table:
    criteria = _criteria_names(plan.candidates)
    table = _table(
        "RANK", "PROVIDER", "NODE", "REGION", "GPU", "PRICE/H", "SCORE", title="candidates"
    )
    for name in criteria:
        table.add_column(name.upper(), overflow="fold")
    for candidate in plan.candidates:
        placement, offer = candidate.placement, candidate.offer
        region = placement.region or offer.region
        if offer.country:
            region = f"{region} ({offer.country})"
        count = _gpu_count(placement) or offer.gpus_total
        _row(
            table,
            candidate.rank,
            placement.provider or offer.provider,
            ", ".join(node.node for node in placement.nodes) or offer.node,
            region,
            f"{placement.gpu_model or offer.gpu.model} x{count}",
            money(placement.hourly_cost),
            f"{candidate.score:.3f}",
            *(_criterion(candidate, name) for name in criteria),
        )
    return table


def rejections_table(rejections: Iterable[common_pb2.RejectionCount]) -> Table:
    table = _table("REASON", "MESSAGE", "OFFERS", title="rejected")
    for rejection in rejections:
        _row(table, rejection.reason, rejection.message, rejection.count)
    return table


def _alternatives_table(plan: intent_pb2.Plan) -> Table:
    table = _table("RELAXED", "WOULD FIT", "COST DIFFERENCE/H", "PERFORMANCE", title="alternatives")
    for alternative in plan.alternatives:
        _row(
            table,
            alternative.relaxed,
            alternative.description,
            money(alternative.cost_difference),
            f"{alternative.performance_impact:+.0%}" if alternative.performance_impact else "",
        )
    return table


def _plan_misses(plan: intent_pb2.Plan) -> list[RenderableType]:
    out: list[RenderableType] = []
    if plan.rejections:
        out.append(rejections_table(plan.rejections))
    if plan.alternatives:
        out.append(_alternatives_table(plan))
    return out


def plan_view(plan: intent_pb2.Plan) -> list[RenderableType]:
    objective = objective_name(plan.objective)
    summary = f"objective: {objective}, offers considered: {plan.offers_considered}"
    out: list[RenderableType] = [Text(summary)]
    if plan.candidates:
        out.append(candidates_table(plan))
    else:
        out.append(Text("no offer fits now; an intent would be queued", style="bold"))
    return out + _plan_misses(plan)


def offers_table(offers: Iterable[offer_pb2.Offer]) -> Table:
    table = _table(
        "PROVIDER", "NODE", "REGION", "GPU", "MEMORY", "FREE", "PRICE/GPU/H", title="offers"
    )
    for column in ("LATENCY", "AVAILABILITY", "SPOT"):
        table.add_column(column)
    for offer in offers:
        _row(
            table,
            offer.provider,
            offer.node,
            f"{offer.region} ({offer.country})" if offer.country else offer.region,
            offer.gpu.model,
            offer.gpu.memory,
            f"{offer.gpus_free}/{offer.gpus_total}",
            money(offer.price_per_gpu_hour),
            f"{offer.latency_ms} ms",
            f"{offer.availability:g}%",
            "yes" if offer.preemptible else "",
        )
    return table


def offers_view(response: offer_service_pb2.ListOffersResponse) -> list[RenderableType]:
    matching = response.total_offers - sum(r.count for r in response.rejections)
    summary = f"{matching} of {response.total_offers} offers match"
    if len(response.offers) < matching:
        summary += f" (showing the first {len(response.offers)})"
    out: list[RenderableType] = [offers_table(response.offers), Text(summary)]
    if response.rejections:
        out.append(rejections_table(response.rejections))
    return out


def token_status(token: token_service_pb2.Token, now: datetime) -> str:
    if token.HasField("revoke_time"):
        return "revoked"
    if token.HasField("expire_time") and token.expire_time.ToDatetime(tzinfo=UTC) <= now:
        return "expired"
    return "active"


def tokens_table(tokens: Iterable[token_service_pb2.Token], now: datetime) -> Table:
    table = _table("NAME", "DISPLAY NAME", "SCOPES", "STATUS", "CREATED", "EXPIRES")
    table.add_column("CREATOR")
    for token in tokens:
        _row(
            table,
            resource_id(token.name),
            token.display_name,
            ", ".join(token.scopes),
            token_status(token, now),
            timestamp(token.create_time),
            timestamp(token.expire_time) or "never",
            resource_id(token.creator),
        )
    return table


def token_detail(token: token_service_pb2.Token, now: datetime) -> Table:
    return _properties(
        [
            ("name", token.name),
            ("display name", token.display_name),
            ("scopes", ", ".join(token.scopes)),
            ("status", token_status(token, now)),
            ("created", timestamp(token.create_time)),
            ("expires", timestamp(token.expire_time) or "never"),
            ("revoked", timestamp(token.revoke_time)),
            ("creator", token.creator),
        ]
    )


# Watch lines: fixed columns, printed as each change arrives.

WATCH_HEADER = f"{'REVISION':>8}  {'NAME':<32}  {'STATE':<10}  {'REASON':<18}  MESSAGE"


def watch_line(event: intent_service_pb2.WatchIntentResponse) -> str:
    intent = event.intent
    return (
        f"{event.revision:>8}  {resource_id(intent.name):<32}  {state_name(intent.state):<10}  "
        f"{_last_reason(intent):<18}  {intent.state_message}"
    )
