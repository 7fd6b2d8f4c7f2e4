"""The intent engine: moves each intent through its lifecycle.

PENDING -> PLANNING -> (QUEUED | RESERVING -> DEPLOYING -> RUNNING), and
CANCELLING -> CANCELLED. Queued intents contend for the GPUs that free up in
rounds, by priority, bid and fair share (controlplane/contention.py). When a
running intent's provider or GPUs fail (told by telemetry, or found by the
periodic check), the engine fails it over: the failed offer is blocked for a
while, the workload released, and the intent, under the same name, planned
again elsewhere; a workload deleted by hand is deployed again. Every step is
recorded in the store before the next one starts, and every step is safe to
repeat, so after a crash the engine picks up each live intent where it was.
Several workers run at once; the federation's reserve is what prevents
double-booking, and a lost race sends the intent back to planning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import numpy as np

from controlplane import contention
from controlplane.clock import Clock, utc_now
from controlplane.contention import priority_of
from controlplane.convert import set_money, to_placement_proto, to_plan_proto
from controlplane.errors import FlareError
from controlplane.federation.port import CapacityGone, Federation, Trouble
from controlplane.intents import lifecycle
from controlplane.placement import planner, requirements
from controlplane.placement.planner import PlanResult
from controlplane.placement.table import OfferTable
from controlplane.quotas import Quotas
from controlplane.store.base import IntentStore, Subscription
from flare.v1 import intent_pb2

log = logging.getLogger(__name__)
MAX_REPLANS = 5
# A failed offer stays out of placement this long (SkyPilot's "blocked resources").
BLOCK_SECONDS = 600.0
# How often running intents' workloads and providers are checked.
CHECK_SECONDS = 15.0
# States in which a failure moves the intent elsewhere.
MOVABLE = frozenset({lifecycle.DEPLOYING, lifecycle.RUNNING})
# A step that raised (the API server busy or away, a watch cut): the intent is taken up
# again after a delay that doubles with each failure in a row, up to the cap, jittered.
RETRY_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0


class IntentEngine:
    def __init__(
        self,
        store: IntentStore,
        federation: Federation,
        *,
        clock: Clock = utc_now,
        workers: int = 16,
        balanced_weights: Mapping[str, float] | None = None,
        on_planned: Callable[[float], None] = lambda seconds: None,
        check_seconds: float = CHECK_SECONDS,
        block_seconds: float = BLOCK_SECONDS,
        quotas: Quotas | None = None,
        shares: Mapping[str, float] | None = None,
        half_life_hours: float = contention.HALF_LIFE_HOURS,
    ) -> None:
        self._store = store
        # Tenants' fair-share weights (1 when not named), and the GPU-hours they used.
        self._shares = dict(shares or {})
        self._usage = contention.Usage(half_life_hours)
        # GPUs a contention round gave to queued intents that have yet to hold them.
        self._allotted: dict[str, contention.Award] = {}
        self._round = asyncio.Lock()
        # Queued intents a round left waiting that may preempt running ones.
        self._preempt_chances: set[str] = set()
        self._quotas = quotas or Quotas({}, {})
        self._check_seconds = check_seconds
        self._block_seconds = block_seconds
        # Failures and drift found for intents, acted on by the intent's next step.
        self._troubles: dict[str, Trouble] = {}
        # Intents that preempted others and have yet to take the GPUs freed for them.
        self._claims: set[str] = set()
        self._on_planned = on_planned
        self._federation = federation
        self._clock = clock
        self._workers = workers
        self._balanced_weights = balanced_weights
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: set[str] = set()
        self._active: set[str] = set()
        self._rerun: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Steps that failed in a row, per intent, and the timers that take them up again.
        self._failures: dict[str, int] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._requeue_pending = False
        federation.on_capacity_freed(self._capacity_freed)

    async def start(self) -> None:
        """Takes up every live intent, then follows the store: an intent created,
        cancelled or changed through any replica reaches this engine as a store event."""
        subscription = self._store.subscribe()
        now = self._clock()
        forgotten = timedelta(hours=self._usage.half_life_hours * 10)
        for ended in await self._store.ended_since(now - forgotten):
            self._usage.ended(ended, now)
        for intent in await self._store.live():
            self.kick(intent.name)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"engine-{i}") for i in range(self._workers)
        ]
        self._tasks.append(asyncio.create_task(self._follow(subscription), name="engine-follow"))
        self._tasks.append(asyncio.create_task(self._check_running(), name="engine-check"))
        self._capacity_freed()  # queued intents contend for what is free now

    def fail(self, name: str, reason: str, message: str) -> None:
        """The provider or GPUs of intent `name` failed: if it is running there, move
        it. Acted on in the intent's next step, never beside another step of it."""
        if not self._tasks:
            return  # not leading: the leader hears of it itself
        self._troubles[name] = Trouble("failed", reason, message)
        self.kick(name)

    async def _check_running(self) -> None:
        """Asks the federation about every running intent, now and then: a failed
        provider moves the intent, a missing workload is deployed again."""
        while True:
            await asyncio.sleep(self._check_seconds)
            for intent in await self._store.live():
                if intent.state != lifecycle.RUNNING or intent.name in self._troubles:
                    continue
                try:
                    trouble = await self._federation.check(intent)
                except Exception:
                    log.exception("checking an intent failed", extra={"intent": intent.name})
                    continue
                if trouble is not None:
                    self._troubles[intent.name] = trouble
                    self.kick(intent.name)

    async def _follow(self, subscription: Subscription) -> None:
        try:
            while True:
                event = await subscription.next()
                if event is None:  # fell behind: whatever waits for us is among the live
                    for intent in await self._store.live():
                        if waits_for_engine(intent):
                            self.kick(intent.name)
                else:
                    if event.intent.state in lifecycle.TERMINAL:
                        self._usage.ended(event.intent, self._clock())
                    if waits_for_engine(event.intent):
                        self.kick(event.intent.name)
        finally:
            subscription.close()

    async def stop(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def kick(self, name: str) -> None:
        """Schedule an intent for its next step (duplicates are merged)."""
        if name not in self._scheduled:
            self._scheduled.add(name)
            self._queue.put_nowait(name)

    async def admit(self, intent: intent_pb2.Intent) -> None:
        """Raises ResourceExhausted when the intent would take its tenant past a quota."""
        if self._quotas:
            self._quotas.admit(intent, await self._store.live())

    async def plan_intent(self, intent: intent_pb2.Intent, top_k: int = 5) -> PlanResult:
        """A dry-run plan of an intent against the current offers, within what its
        tenant may still spend."""
        needs = await self._needs(intent)
        offers = await self._offers(but=intent.name)
        started = time.perf_counter()
        result = planner.plan(
            needs,
            offers,
            intent.objective,
            top_k=top_k,
            balanced_weights=self._balanced_weights,
        )
        self._on_planned(time.perf_counter() - started)
        return result

    async def _needs(
        self, intent: intent_pb2.Intent, live: list[intent_pb2.Intent] | None = None
    ) -> requirements.Requirements:
        """What `intent` needs, its cost limit within its tenant's spend quota."""
        needs = requirements.from_intent(intent, now=self._clock())
        if self._quotas.limits_spend(intent):
            live = await self._store.live() if live is None else live
            needs = self._quotas.capped(needs, intent, live)
        return needs

    async def _offers(self, *, but: str = "") -> OfferTable:
        """The federation's offers less the GPUs allotted to intents (other than
        `but`) that have yet to hold them."""
        table = await self._federation.offers()
        allotted = [a for name, a in self._allotted.items() if name != but]
        if not allotted:
            return table
        index = {offer.name: i for i, offer in enumerate(table.offers)}
        free = table.gpus_free.copy()
        for award in allotted:
            for share in award.result.best.shares if award.result.best else ():
                if share.offer.name in index:
                    free[index[share.offer.name]] -= share.gpu_count
        return table.with_free(np.maximum(free, 0))

    def _capacity_freed(self) -> None:
        if self._requeue_pending:
            return
        self._requeue_pending = True
        if self._claims:
            return  # GPUs freed for a preempting intent: the queue waits until it has them
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._contend()))

    async def _contend(self) -> None:
        try:
            await self._round_of_contention()
        except Exception:
            log.exception("a contention round failed; the next freed GPUs start another")

    async def _round_of_contention(self) -> None:
        """A contention round: the queued intents, ranked by the contention rule, are
        planned in turn on the GPUs free now; the ones that fit are given those GPUs
        (no other intent is planned onto them) and go on. One that may preempt is
        given its chance too."""
        async with self._round:
            self._requeue_pending = False
            live = await self._store.live()
            queued = [i for i in live if i.state == lifecycle.QUEUED]
            on_the_way = {
                i.name for i in live if i.state in (lifecycle.PLANNING, lifecycle.RESERVING)
            }
            self._allotted = {n: a for n, a in self._allotted.items() if n in on_the_way}
            if not queued:
                return
            table = await self._offers()
            contenders = [
                contention.contender(intent, await self._needs(intent, live), table)
                for intent in queued
            ]

            def plan(c: contention.Contender, free: OfferTable) -> PlanResult:
                return planner.plan(
                    c.needs,
                    free,
                    c.intent.objective,
                    balanced_weights=self._balanced_weights,
                    alternatives=False,
                )

            used = self._usage.by_tenant(live, self._clock(), self._allotted)
            awards = contention.allot(contenders, table, plan, used, self._shares)
            self._allotted.update(awards)
            running = [i for i in live if i.state == lifecycle.RUNNING]
            for c in sorted(contenders, key=lambda c: -priority_of(c.intent)):
                if c.name in awards:
                    self.kick(c.name)
                elif any(may_preempt(v, c.intent) for v in running):
                    self._preempt_chances.add(c.name)
                    self.kick(c.name)

    def _end_claim(self, name: str) -> None:
        if name in self._claims:
            self._claims.discard(name)
            if not self._claims and self._requeue_pending:
                self._requeue_pending = False
                self._capacity_freed()

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            self._scheduled.discard(name)
            if name in self._active:
                # Another worker is on it: one step at a time per intent, so a
                # cancel can never interleave with a reserve or a deploy.
                self._rerun.add(name)
                continue
            self._active.add(name)
            try:
                await self._advance(name)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._retry_later(name, error)
            else:
                self._failures.pop(name, None)
            finally:
                self._end_claim(name)
                self._active.discard(name)
                if name in self._rerun:
                    self._rerun.discard(name)
                    self.kick(name)

    async def _retry_later(self, name: str, error: Exception) -> None:
        """A step of `name` raised: every step is safe to repeat, so the intent is taken
        up again after a backoff, never left where it stopped. The first failure of a
        run is told in the intent's history."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        delay = min(RETRY_CAP_SECONDS, RETRY_SECONDS * 2 ** min(failures - 1, 16))
        delay *= 0.5 + random.random() / 2
        log.error(
            "intent step failed; trying again in %.1f s",
            delay,
            exc_info=error,
            extra={"intent": name, "failures": failures},
        )
        if name in self._retries:
            self._retries[name].cancel()
        self._retries[name] = asyncio.get_running_loop().call_later(delay, self._retry, name)
        if failures == 1:
            # The first lines say what failed (an ApiException goes on with headers and body).
            said = " ".join(str(error).splitlines()[:2])
            message = f"{type(error).__name__}: {said}"[:300] + f"; trying again in {delay:.1f} s"

            def note(intent: intent_pb2.Intent) -> intent_pb2.Intent:
                return lifecycle.noted(
                    intent, reason="StepFailed", message=message, now=self._clock()
                )

            with contextlib.suppress(Exception):  # the store may be what failed
                await self._store.update(name, note)

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        self.kick(name)

    async def _advance(self, name: str) -> None:
        """Take steps until the intent waits (QUEUED, RUNNING) or ends."""
        for _ in range(MAX_REPLANS * 4):
            intent = await self._store.get(name)
            if intent is None or intent.state in lifecycle.TERMINAL:
                return
            trouble = self._troubles.pop(name, None)
            if trouble is not None and intent.state in MOVABLE:
                if trouble.kind == "failed":
                    await self._fail_over(intent, trouble)
                    continue
                if intent.state == lifecycle.RUNNING:
                    await self._repair(intent, trouble)
                    return
            step = _STEPS.get(intent.state)
            if step is None:
                return
            if not await step(self, intent):
                return

    async def _transition(
        self,
        intent: intent_pb2.Intent,
        target: int,
        reason: str,
        message: str,
        mutate: object = None,
        *,
        now: datetime | None = None,
    ) -> intent_pb2.Intent | None:
        """Move `intent` to `target` if it is still in the state we read;
        None if someone else (a cancel) changed it first."""
        expected = intent.state

        def change(current: intent_pb2.Intent) -> intent_pb2.Intent | None:
            if current.state != expected:
                return None
            moved = lifecycle.transition(
                current, target, reason=reason, message=message, now=now or self._clock()
            )
            if callable(mutate):
                mutate(moved)
            return moved

        result = await self._store.update(intent.name, change)
        return result if result.state == target else None

    # -- steps: each returns True to continue with the next step ------------

    async def _pending(self, intent: intent_pb2.Intent) -> bool:
        return (
            await self._transition(intent, lifecycle.PLANNING, "Planning", "choosing an offer")
            is not None
        )

    async def _planning(self, intent: intent_pb2.Intent) -> bool:
        award = self._allotted.get(intent.name)
        result = award.result if award else await self.plan_intent(intent)
        summary = plan_message(result)
        best = result.best
        if best is None and intent.name not in self._claims and await self._preempt_for(intent):
            return True  # plan again, on the GPUs just freed
        if best is None:

            def record_plan(moved: intent_pb2.Intent) -> None:
                moved.last_plan.CopyFrom(to_plan_proto(result))

            await self._transition(
                intent, lifecycle.QUEUED, "NoMatchingOffer", summary, record_plan
            )
            return False

        price = award.price if award else None

        def place(moved: intent_pb2.Intent) -> None:
            moved.placement.CopyFrom(to_placement_proto(best))
            moved.last_plan.CopyFrom(to_plan_proto(result))
            if price is not None:
                set_money(moved.placement.hourly_cost, price)

        message = (
            f"chose {best.offer.gpu_model} x{best.gpu_count} at {best.offer.provider} "
            f"({best.offer.region}) for {best.hourly_cost}/h"
        )
        if award and price is not None:
            message += f"; outbid {', '.join(award.outbid)} and pays {price}/h"
        return (
            await self._transition(intent, lifecycle.RESERVING, "Placed", message, place)
            is not None
        )

    async def _queued(self, intent: intent_pb2.Intent) -> bool:
        """Planned again when a contention round gave it GPUs, when it may preempt
        (the round kicks it), or when its user changed it."""
        chance = intent.name in self._preempt_chances
        self._preempt_chances.discard(intent.name)
        if intent.name not in self._allotted and not chance and not waits_for_engine(intent):
            return False
        return (
            await self._transition(intent, lifecycle.PLANNING, "Replanning", "capacity changed")
            is not None
        )

    async def _reserving(self, intent: intent_pb2.Intent) -> bool:
        # The allotment ends as the federation's hold begins (reserve holds before it
        # first waits), so the GPUs are never counted twice nor left uncounted.
        self._allotted.pop(intent.name, None)
        try:
            reserved = await self._federation.reserve(intent)
        except CapacityGone as gone:
            replans = sum(1 for t in intent.history if t.reason == "ReservationFailed")
            if replans >= MAX_REPLANS:
                await self._transition(intent, lifecycle.FAILED, "ReservationFailed", str(gone))
                return False
            return (
                await self._transition(
                    intent, lifecycle.PLANNING, "ReservationFailed", f"{gone}; planning again"
                )
                is not None
            )
        moved = await self._transition(intent, lifecycle.DEPLOYING, "Reserved", reserved)
        if moved is None:
            # Cancelled meanwhile: CANCELLING releases what we now hold.
            self.kick(intent.name)
            return False
        return True

    async def _deploying(self, intent: intent_pb2.Intent) -> bool:
        try:
            deployed = await self._federation.deploy(intent)
        except FlareError as error:
            await self._federation.release(intent, moving=True)
            await self._transition(
                intent, lifecycle.PLANNING, "DeployFailed", f"{error}; planning again"
            )
            return True

        def set_endpoint(moved: intent_pb2.Intent) -> None:
            moved.endpoint = deployed.endpoint
            moved.ClearField("gpu_access")
            if deployed.gpu_access is not None:
                moved.gpu_access.CopyFrom(deployed.gpu_access)

        await self._transition(
            intent,
            lifecycle.RUNNING,
            "Running",
            running_message(intent, self._clock()),
            set_endpoint,
        )
        return False

    async def _preempt_for(self, intent: intent_pb2.Intent) -> bool:
        """Frees GPUs for `intent` by preempting running intents of lower priority that
        allow it, the fewest and lowest first, on the offers the planner would choose if
        their GPUs were free. True when it preempted."""
        live = await self._store.live()
        victims = [v for v in live if may_preempt(v, intent)]
        if not victims:
            return False
        table = await self._offers(but=intent.name)
        index = {offer.name: i for i, offer in enumerate(table.offers)}
        freeable = np.zeros(len(table.offers), dtype=np.int64)
        on_offer: dict[str, list[tuple[intent_pb2.Intent, int]]] = {}
        for victim in victims:
            for node in victim.placement.nodes:
                offer = node.offer or victim.placement.offer
                if offer in index:
                    freeable[index[offer]] += node.gpu_count
                    on_offer.setdefault(offer, []).append((victim, node.gpu_count))
        needs = await self._needs(intent, live)
        widened = table.with_free(table.gpus_free + freeable)
        best = planner.plan(needs, widened, intent.objective, top_k=1, alternatives=False).best
        if best is None:
            return False
        chosen: dict[str, intent_pb2.Intent] = {}
        for share in best.shares:
            short = share.gpu_count - int(table.gpus_free[index[share.offer.name]])
            ranked = sorted(
                on_offer.get(share.offer.name, []),
                key=lambda pair: (priority_of(pair[0]), -pair[0].create_time.seconds),
            )
            for victim, gpus in ranked:
                if short <= 0:
                    break
                if victim.name in chosen:
                    short -= gpus
                elif await self._may_interrupt(victim, table, share.offer.name):
                    chosen[victim.name] = victim
                    short -= gpus
            if short > 0:
                return False
        self._claims.add(intent.name)
        label = intent_pb2.Priority.Name(priority_of(intent)).removeprefix("PRIORITY_")
        for victim in chosen.values():
            await self._federation.release(victim, moving=True)
            await self._transition(
                victim,
                lifecycle.QUEUED,
                "Preempted",
                f"preempted by {intent.name} (priority {label}); waiting for capacity",
            )

        await self._note(
            intent.name,
            "Preempting",
            f"preempted {', '.join(sorted(chosen))} to run on {best.offer.provider}",
        )
        return True

    async def _may_interrupt(
        self, victim: intent_pb2.Intent, table: OfferTable, taken: str
    ) -> bool:
        """A victim with a max_interruption_time is preempted only when it can move
        elsewhere at once (another offer has room for it now)."""
        if not victim.sla.HasField("max_interruption_time"):
            return True
        free = table.gpus_free.copy()
        free[[i for i, o in enumerate(table.offers) if o.name == taken]] = 0
        needs = requirements.from_intent(victim, now=self._clock())
        moved = planner.plan(
            needs, table.with_free(free), victim.objective, top_k=1, alternatives=False
        )
        return moved.best is not None

    async def _fail_over(self, intent: intent_pb2.Intent, trouble: Trouble) -> None:
        # The move is recorded once the old placement is released (a crash before then
        # leaves the intent where it was, to be failed over again), at the time it began.
        began = self._clock()
        placement = intent.placement
        for offer in {n.offer or placement.offer for n in placement.nodes} | {placement.offer}:
            self._federation.block(offer, self._block_seconds)
        await self._federation.release(intent, moving=True)

        def forget_endpoint(moved: intent_pb2.Intent) -> None:
            moved.endpoint = ""
            moved.ClearField("gpu_access")

        await self._transition(
            intent,
            lifecycle.PLANNING,
            "Failover",
            f"{trouble.reason}: {trouble.message}; leaving {placement.provider} "
            f"(blocked for {self._block_seconds / 60:.0f} min) and planning elsewhere",
            forget_endpoint,
            now=began,
        )

    async def _repair(self, intent: intent_pb2.Intent, trouble: Trouble) -> None:
        """Deploys a running intent's workload again (deploy is idempotent)."""
        try:
            await self._federation.deploy(intent)
        except FlareError as error:
            self._troubles[intent.name] = Trouble("failed", "RepairFailed", str(error))
            self.kick(intent.name)
            return

        await self._note(
            intent.name, "Repaired", f"{trouble.message}; deployed again", lifecycle.RUNNING
        )

    async def _note(self, name: str, reason: str, message: str, in_state: int = 0) -> None:
        """An event in the intent's history that changes no state (only while it is
        `in_state`, when given)."""

        def record(current: intent_pb2.Intent) -> intent_pb2.Intent | None:
            if in_state and current.state != in_state:
                return None
            return lifecycle.noted(current, reason=reason, message=message, now=self._clock())

        await self._store.update(name, record)

    async def _cancelling(self, intent: intent_pb2.Intent) -> bool:
        self._allotted.pop(intent.name, None)
        await self._federation.release(intent)
        await self._transition(
            intent, lifecycle.CANCELLED, "Released", "workload and GPUs released"
        )
        return False


_STEPS = {
    lifecycle.PENDING: IntentEngine._pending,
    lifecycle.PLANNING: IntentEngine._planning,
    lifecycle.QUEUED: IntentEngine._queued,
    lifecycle.RESERVING: IntentEngine._reserving,
    lifecycle.DEPLOYING: IntentEngine._deploying,
    lifecycle.CANCELLING: IntentEngine._cancelling,
}


def may_preempt(victim: intent_pb2.Intent, intent: intent_pb2.Intent) -> bool:
    """Whether running `victim` may yield its GPUs to `intent`: strictly lower
    priority, and preemptible (its SLA says so; unset: when its priority is LOW)."""
    if victim.state != lifecycle.RUNNING or priority_of(victim) >= priority_of(intent):
        return False
    if victim.sla.HasField("preemptible"):
        return victim.sla.preemptible
    return priority_of(victim) == intent_pb2.PRIORITY_LOW


def waits_for_engine(intent: intent_pb2.Intent) -> bool:
    """Whether a change to `intent` that someone else made asks for the engine:
    a new intent, a cancel, or a queued intent whose spec the user changed (its
    update came after its last transition). The engine's own transitions lead
    to its next step by themselves."""
    if intent.state in (lifecycle.PENDING, lifecycle.CANCELLING):
        return True
    if intent.state == lifecycle.QUEUED and intent.history:
        queued_at = intent.history[-1].time
        return (intent.update_time.seconds, intent.update_time.nanos) > (
            queued_at.seconds,
            queued_at.nanos,
        )
    return False


def running_message(intent: intent_pb2.Intent, now: datetime) -> str:
    """ "workload running", and after a failover, how long the intent was
    interrupted, against its SLA's max_interruption_time."""
    failover = next(
        (
            t
            for t in reversed(intent.history)
            if t.to_state == lifecycle.RUNNING or t.reason == "Failover"
        ),
        None,
    )
    if failover is None or failover.reason != "Failover":
        return "workload running"
    interrupted = (now - failover.time.ToDatetime(tzinfo=now.tzinfo)).total_seconds()
    message = (
        f"workload running again on {intent.placement.provider} after a {interrupted:.1f} s "
        "interruption"
    )
    if intent.sla.HasField("max_interruption_time"):
        limit = intent.sla.max_interruption_time.ToTimedelta().total_seconds()
        within = "within" if interrupted <= limit else "beyond"
        message += f", {within} the SLA's {limit:g} s"
    return message


def plan_message(result: PlanResult) -> str:
    if result.best is not None:
        return f"{len(result.candidates)} candidates of {result.offers_considered} offers"
    if not result.rejections:
        return "no offers in the federation"
    reasons = "; ".join(
        f"{r.count} {'offer' if r.count == 1 else 'offers'} {r.message}"
        for r in result.rejections[:3]
    )
    return f"no offer fits ({reasons}); waiting for capacity"
