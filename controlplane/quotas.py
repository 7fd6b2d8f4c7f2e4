"""Per-tenant quotas: GPUs and spend per hour.

A tenant's usage is what its live intents hold or may hold: GPUs — each live
intent's GPUs (placed: what it holds; not yet placed: what it asks for); spend —
each placed intent's hourly cost, and for one not yet placed its
`max_hourly_cost` (nothing when it states none: planning caps it instead).

Two checks use one rule. CreateIntent refuses an intent that would take the
tenant past a quota (RESOURCE_EXHAUSTED, the quota named in a QuotaFailure).
Planning gives an intent at most the spend its tenant has left, so an intent
without a cost limit cannot exceed the spend quota either.

Quotas come from `--quotas` / FLARE_QUOTAS: "acme=gpus:8,spend:20 EUR;globex=gpus:2".
In cluster mode two replicas admitting at the same moment may pass one intent
each over a GPU quota; planning on the one leader never passes the spend quota.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from controlplane.errors import ResourceExhausted
from controlplane.intents import lifecycle
from controlplane.names import TENANT_ID
from controlplane.placement.requirements import Requirements, money_of
from flare.money import Money, MoneyError, check_currency, convert, parse_amount, parse_shorthand
from flare.v1 import intent_pb2


@dataclass(frozen=True, slots=True)
class Quota:
    gpus: int | None = None
    hourly_spend: Money | None = None


def parse_quotas(text: str) -> dict[str, Quota]:
    """ "acme=gpus:8,spend:20 EUR;globex=gpus:2" -> {tenant: Quota}; ValueError
    naming what is wrong."""
    quotas: dict[str, Quota] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        tenant, _, limits = entry.partition("=")
        tenant = tenant.strip()
        if not TENANT_ID.match(tenant):
            raise ValueError(f"quota for {tenant!r}: not a tenant id")
        gpus: int | None = None
        spend: Money | None = None
        for limit in filter(None, (part.strip() for part in limits.split(","))):
            kind, _, value = limit.partition(":")
            kind, value = kind.strip(), value.strip()
            if kind == "gpus" and value.isdigit():
                gpus = int(value)
            elif kind == "spend":
                try:
                    amount, currency = parse_shorthand(value)
                    spend = Money(parse_amount(amount), check_currency(currency))
                except MoneyError as error:
                    raise ValueError(f"quota for {tenant}: {error}") from error
            else:
                raise ValueError(
                    f"quota for {tenant}: {limit!r} is not gpus:<count> or spend:<amount currency>"
                )
        quotas[tenant] = Quota(gpus, spend)
    return quotas


def _tenant(intent: intent_pb2.Intent) -> str:
    parts = intent.name.split("/")
    return parts[1] if len(parts) > 1 else ""


def gpus_of(intent: intent_pb2.Intent) -> int:
    placed = sum(node.gpu_count for node in intent.placement.nodes)
    return placed or intent.workload.resources.gpu.count


def spend_of(intent: intent_pb2.Intent, rates: Mapping[str, Decimal]) -> Decimal:
    """What the intent may spend per hour, in EUR (0 when unbounded and unplaced)."""
    if intent.state in lifecycle.HOLDING and intent.placement.HasField("hourly_cost"):
        return convert(money_of(intent.placement.hourly_cost), "EUR", rates).amount
    if intent.constraints.HasField("max_hourly_cost"):
        return convert(money_of(intent.constraints.max_hourly_cost), "EUR", rates).amount
    return Decimal(0)


class Quotas:
    def __init__(self, quotas: Mapping[str, Quota], rates: Mapping[str, Decimal]) -> None:
        self._quotas = dict(quotas)
        self._rates = rates

    def __bool__(self) -> bool:
        return bool(self._quotas)

    def admit(self, intent: intent_pb2.Intent, live: Iterable[intent_pb2.Intent]) -> None:
        """Raises ResourceExhausted when `intent` would take its tenant past a quota."""
        tenant = _tenant(intent)
        quota = self._quotas.get(tenant)
        if quota is None:
            return
        others = [i for i in live if _tenant(i) == tenant and i.name != intent.name]
        if quota.gpus is not None:
            used = sum(gpus_of(i) for i in others)
            if used + gpus_of(intent) > quota.gpus:
                raise ResourceExhausted(
                    f"tenant {tenant} uses {used} of its {quota.gpus} GPUs; this intent asks "
                    f"for {gpus_of(intent)} more",
                    quota=f"tenants/{tenant}/quotas/gpus",
                )
        if quota.hourly_spend is not None:
            limit = convert(quota.hourly_spend, "EUR", self._rates).amount
            used_eur = sum((spend_of(i, self._rates) for i in others), Decimal(0))
            if used_eur + spend_of(intent, self._rates) > limit:
                raise ResourceExhausted(
                    f"tenant {tenant} may spend {quota.hourly_spend}/h and has committed "
                    f"{used_eur:.2f} EUR/h; this intent may spend up to "
                    f"{spend_of(intent, self._rates):.2f} EUR/h more",
                    quota=f"tenants/{tenant}/quotas/hourly_spend",
                )

    def limits_spend(self, intent: intent_pb2.Intent) -> bool:
        quota = self._quotas.get(_tenant(intent))
        return quota is not None and quota.hourly_spend is not None

    def spend_left(
        self, intent: intent_pb2.Intent, live: Iterable[intent_pb2.Intent]
    ) -> Money | None:
        """The most `intent` may cost per hour under its tenant's spend quota (EUR);
        None without one."""
        tenant = _tenant(intent)
        quota = self._quotas.get(tenant)
        if quota is None or quota.hourly_spend is None:
            return None
        limit = convert(quota.hourly_spend, "EUR", self._rates).amount
        used = sum(
            (
                spend_of(i, self._rates)
                for i in live
                if _tenant(i) == tenant and i.name != intent.name
            ),
            Decimal(0),
        )
        return Money(max(limit - used, Decimal(0)), "EUR")

    def capped(
        self, needs: Requirements, intent: intent_pb2.Intent, live: Iterable[intent_pb2.Intent]
    ) -> Requirements:
        """`needs` with its hourly cost limit lowered to what the tenant has left."""
        left = self.spend_left(intent, live)
        if left is None:
            return needs
        own = needs.max_hourly_cost
        if own is not None and convert(own, "EUR", self._rates).amount <= left.amount:
            return needs
        return replace(needs, max_hourly_cost=left)
