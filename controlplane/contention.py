"""Who gets scarce GPUs: the order in which queued intents are placed, and what a
winning bid pays. Pure functions; the engine runs them in a *round* whenever GPUs
free up.

The rule, in order (docs/contention.md):

1. priority class, highest first;
2. bid per GPU-hour, highest first — an intent with `constraints.bid` bids its
   `max_hourly_cost` (in EUR, within what its tenant's spend quota leaves)
   divided by its GPUs; an intent that does not bid bids 0;
3. the tenant's fair share: the GPU-hours its intents held, decayed with a
   half-life, plus an hour for each GPU it holds now (and for each given to it
   earlier in the round), divided by the tenant's weight — lowest first;
4. oldest first.

The round plans each queued intent in that order on what those before it left.
An intent that fits nothing waits and the next one is tried, so a small intent
may start beside a large one that waits (backfill).

A winning bidder pays, per GPU-hour, the highest bid among the intents of its
priority that were left waiting and could have used (all but capacity) an
offer it took — never more than its own bid, never less than the offer's price.
A bid that was not contested pays the offer's price. As in a second-price
auction, bidding high costs only what the rivals bid.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from controlplane.intents import lifecycle
from controlplane.names import TENANT_ID, tenant_of
from controlplane.placement import filters
from controlplane.placement.planner import PlanResult
from controlplane.placement.requirements import Requirements
from controlplane.placement.table import OfferTable
from controlplane.quotas import gpus_of
from flare.money import Money
from flare.v1 import intent_pb2

# Usage older than this counts half as much (and a quarter at twice the age).
HALF_LIFE_HOURS = 6.0
# A GPU held now counts as this much use ahead, so GPUs freed at once are shared
# out by weight rather than all going to the tenant that used least so far.
HOLD_HOURS = 1.0


def parse_shares(text: str) -> dict[str, float]:
    """ "acme=2,globex=1" -> {tenant: weight}; ValueError naming what is wrong."""
    shares: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        tenant, _, weight = (part.strip() for part in entry.partition("="))
        if not TENANT_ID.match(tenant):
            raise ValueError(f"fair share for {tenant!r}: not a tenant id")
        try:
            shares[tenant] = float(weight)
        except ValueError:
            raise ValueError(f"fair share for {tenant}: {weight!r} is not a number") from None
        if not math.isfinite(shares[tenant]) or shares[tenant] <= 0:
            raise ValueError(f"fair share for {tenant}: the weight must be positive")
    return shares


def priority_of(intent: intent_pb2.Intent) -> intent_pb2.Priority.ValueType:
    return intent.priority or intent_pb2.PRIORITY_NORMAL


def decayed_gpu_hours(intent: intent_pb2.Intent, now: datetime, half_life_hours: float) -> float:
    """The GPU-hours `intent` held GPUs (from its history: the time spent in a state
    that holds them), each hour weighted 2^(-age / half-life)."""
    rate = math.log(2) / half_life_hours
    total = 0.0
    since: float | None = None  # hours before now at which the current hold began

    def age(entry: intent_pb2.StateTransition) -> float:
        return (now - entry.time.ToDatetime(tzinfo=now.tzinfo)).total_seconds() / 3600

    for entry in intent.history:
        holding = entry.to_state in lifecycle.HOLDING
        if holding and since is None:
            since = age(entry)
        elif not holding and since is not None:
            total += _weight(since, age(entry), rate)
            since = None
    if since is not None:
        total += _weight(since, 0.0, rate)
    return total * gpus_of(intent)


def _weight(began: float, ended: float, rate: float) -> float:
    """The integral of e^(-rate * age) from age `ended` to age `began`."""
    return (math.exp(-rate * max(ended, 0.0)) - math.exp(-rate * max(began, 0.0))) / rate


class Usage:
    """Decayed GPU-hours per tenant of the intents that ended (the live ones are
    counted from their history each time)."""

    def __init__(self, half_life_hours: float = HALF_LIFE_HOURS) -> None:
        self.half_life_hours = half_life_hours
        self._ended: dict[str, float] = {}
        self._as_of: datetime | None = None

    def _decay_to(self, now: datetime) -> None:
        if self._as_of is not None and now > self._as_of:
            hours = (now - self._as_of).total_seconds() / 3600
            factor = 0.5 ** (hours / self.half_life_hours)
            self._ended = {t: used * factor for t, used in self._ended.items()}
        if self._as_of is None or now > self._as_of:
            self._as_of = now

    def ended(self, intent: intent_pb2.Intent, now: datetime) -> None:
        self._decay_to(now)
        tenant = tenant_of(intent.name)
        used = decayed_gpu_hours(intent, now, self.half_life_hours)
        self._ended[tenant] = self._ended.get(tenant, 0.0) + used

    def by_tenant(
        self, live: Iterable[intent_pb2.Intent], now: datetime, allotted: Collection[str] = ()
    ) -> dict[str, float]:
        """Each tenant's GPU-hours: decayed past use, and an hour for each GPU its live
        intents hold or were `allotted` (given by a round, not yet held)."""
        self._decay_to(now)
        used = dict(self._ended)
        for intent in live:
            tenant = tenant_of(intent.name)
            holds = intent.state in lifecycle.HOLDING or intent.name in allotted
            held = gpus_of(intent) * HOLD_HOURS if holds else 0.0
            past = decayed_gpu_hours(intent, now, self.half_life_hours)
            used[tenant] = used.get(tenant, 0.0) + past + held
        return used


@dataclass(frozen=True, slots=True)
class Contender:
    intent: intent_pb2.Intent
    needs: Requirements
    bid: float  # EUR per GPU-hour; 0 when the intent does not bid

    @property
    def name(self) -> str:
        return self.intent.name


def contender(intent: intent_pb2.Intent, needs: Requirements, table: OfferTable) -> Contender:
    bid = 0.0
    if intent.constraints.bid and needs.max_hourly_cost is not None:
        bid = filters.in_eur(needs.max_hourly_cost, table) / max(needs.gpu_count, 1)
    return Contender(intent, needs, bid)


def _key(c: Contender, share: float) -> tuple[int, float, float, int, int, str]:
    """Where `c` stands in the rule, its tenant's share being `share`: lower first."""
    created = c.intent.create_time
    return (-priority_of(c.intent), -c.bid, share, created.seconds, created.nanos, c.name)


@dataclass(frozen=True, slots=True)
class Award:
    """What a round gave an intent: its plan, and when it won a contested bid, the
    hourly cost it pays (EUR) and whom it outbid."""

    result: PlanResult
    price: Money | None = None
    outbid: tuple[str, ...] = ()


Planner = Callable[[Contender, OfferTable], PlanResult]


def allot(
    contenders: Sequence[Contender],
    table: OfferTable,
    plan: Planner,
    used: Mapping[str, float],
    weights: Mapping[str, float],
) -> dict[str, Award]:
    """Plans the contenders in the rule's order, each on the GPUs the ones before it
    left; returns the awards of those that fit, priced by the bidding rule. `used`:
    each tenant's GPU-hours (`Usage.by_tenant`); an award adds its GPUs for an hour
    to its tenant's, so GPUs freed together are shared out by weight."""
    used = dict(used)

    def share(tenant: str) -> float:
        return used.get(tenant, 0.0) / weights.get(tenant, 1.0)

    heap = [(_key(c, share(tenant_of(c.name))), i, c) for i, c in enumerate(contenders)]
    heapq.heapify(heap)
    free = table.gpus_free.copy()
    index = {offer.name: i for i, offer in enumerate(table.offers)}
    won: dict[str, PlanResult] = {}
    waiting: list[Contender] = []
    while heap:
        if not free.any():  # nothing left to give: the rest wait, unplanned
            waiting.extend(c for _, _, c in heap)
            break
        stood, order, c = heapq.heappop(heap)
        now_stands = _key(c, share(tenant_of(c.name)))
        if now_stands > stood:  # its tenant was given GPUs since: take its new place
            heapq.heappush(heap, (now_stands, order, c))
            continue
        result = plan(c, table.with_free(free))
        best = result.best
        if best is None:
            waiting.append(c)
            continue
        won[c.name] = result
        for taken in best.shares:
            free[index[taken.offer.name]] -= taken.gpu_count
        tenant = tenant_of(c.name)
        used[tenant] = used.get(tenant, 0.0) + best.gpu_count * HOLD_HOURS
    rivals = [w for w in waiting if w.bid > 0]
    usable = {w.name: _usable(w.needs, table) for w in rivals}
    return {
        c.name: _priced(c, won[c.name], rivals, usable, index) for c in contenders if c.name in won
    }


def _priced(
    c: Contender,
    result: PlanResult,
    rivals: Sequence[Contender],
    usable: Mapping[str, np.ndarray],
    index: Mapping[str, int],
) -> Award:
    """`c`'s award: at the offer's price unless it outbid intents of its priority
    left waiting that could have used an offer it took (the second-price rule)."""
    best = result.best
    if best is None or c.bid <= 0:
        return Award(result)
    taken = [index[share.offer.name] for share in best.shares]
    outbid = [
        w
        for w in rivals
        if priority_of(w.intent) == priority_of(c.intent) and usable[w.name][taken].any()
    ]
    listed = best.hourly_cost_eur / best.gpu_count
    per_gpu = min(max([listed, *(w.bid for w in outbid)]), c.bid)
    if per_gpu <= listed:
        return Award(result)
    amount = Decimal(str(round(per_gpu * best.gpu_count, 4)))
    return Award(result, Money(amount, "EUR"), tuple(sorted(w.name for w in outbid)))


def _usable(needs: Requirements, table: OfferTable) -> np.ndarray:
    """Offers `needs` could use if they had the GPUs free (every filter but capacity)."""
    usable = np.ones(len(table), dtype=np.bool_)
    for mask in filters.masks(needs, table)[: filters.CAPACITY]:
        if mask is not None:
            usable &= mask
    return usable
