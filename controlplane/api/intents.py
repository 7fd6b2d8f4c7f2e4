"""IntentService: the gRPC adapter over the store, validation and the engine."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from controlplane.api import paging
from controlplane.api.interceptor import principal
from controlplane.auth import Principal
from controlplane.clock import Clock, utc_now
from controlplane.cluster import resources
from controlplane.convert import to_plan_proto
from controlplane.engine import IntentEngine
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.intents import lifecycle
from controlplane.intents.validation import (
    validate_intent,
    validate_intent_id,
    validate_request_id,
)
from controlplane.names import intent_name, parse_child, parse_parent
from controlplane.store.base import IntentEvent, IntentStore
from flare.v1 import intent_pb2, intent_service_pb2, intent_service_pb2_grpc
from flare.violation import FieldViolation

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
UPDATABLE = (
    "workload.scaling",
    "constraints.max_hourly_cost",
    "constraints.max_total_cost",
    "constraints.deadline",
    "constraints.bid",
    "sla.max_interruption_time",
    "sla.preemptible",
    "priority",
    "notification_url",
)
MAX_TOP_K = 50


def user_spec(intent: intent_pb2.Intent) -> intent_pb2.Intent:
    """Only the fields a user sets (every field not OUTPUT_ONLY or IDENTIFIER in the
    proto); output-only fields sent by a client are ignored."""
    spec: Any = intent_pb2.Intent()  # fields cleared by name, as the proto lists them
    spec.CopyFrom(intent)
    kept = {field.name for field in resources.spec_fields(intent_pb2.Intent.DESCRIPTOR)}
    for field in intent_pb2.Intent.DESCRIPTOR.fields:
        if field.name not in kept:
            spec.ClearField(field.name)
    result: intent_pb2.Intent = spec
    return result


def visible_intent_name(caller: Principal, name: str, field: str = "name") -> str:
    """The full name of an intent the caller may see; NotFound otherwise, so
    that other tenants' intents are indistinguishable from absent ones."""
    tenant, intent_id = parse_child(name, "intents", default_tenant=caller.tenant, field=field)
    full = intent_name(tenant, intent_id)
    if tenant != caller.tenant and not caller.is_admin:
        raise NotFound(f"{full} not found")
    return full


def generated_id(workload: str, tenant: str, request_id: str) -> str:
    """An intent id for a request that names none. Derived from the request id when
    there is one, so a retry that reaches another replica names the same intent and
    cannot create it twice; random otherwise."""
    if request_id:
        suffix = hashlib.sha256(f"{tenant}/{request_id}".encode()).hexdigest()[:10]
    else:
        suffix = secrets.token_hex(5)
    return f"{workload[:52]}-{suffix}"


class IntentServicer(intent_service_pb2_grpc.IntentServiceServicer):
    def __init__(
        self,
        store: IntentStore,
        engine: IntentEngine,
        *,
        clock: Clock = utc_now,
        usage: Callable[[intent_pb2.Intent], intent_pb2.IntentUsage] | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self._usage = usage

    def _validated(
        self, intent: intent_pb2.Intent, extra: list[FieldViolation]
    ) -> intent_pb2.Intent:
        spec = user_spec(intent)
        violations = validate_intent(spec, now=self._clock()) + extra
        if violations:
            raise InvalidArgument(violations)
        return spec

    async def CreateIntent(  # noqa: N802 - gRPC method name
        self, request: intent_service_pb2.CreateIntentRequest, context: Context
    ) -> intent_service_pb2.CreateIntentResponse:
        caller = principal()
        tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        spec = self._validated(
            request.intent,
            validate_intent_id(request.intent_id) + validate_request_id(request.request_id),
        )
        intent_id = request.intent_id or generated_id(
            spec.workload.name, tenant, request.request_id
        )
        spec.name = intent_name(tenant, intent_id)
        spec.uid = str(uuid.uuid4())
        spec.request_id = request.request_id
        intent = lifecycle.created(spec, now=self._clock())
        await self._engine.admit(intent)
        if request.validate_only:
            return intent_service_pb2.CreateIntentResponse(intent=intent, created=False)
        stored, created = await self._store.create(
            intent, tenant=tenant, request_id=request.request_id
        )
        return intent_service_pb2.CreateIntentResponse(intent=stored, created=created)

    async def PlanIntent(  # noqa: N802
        self, request: intent_service_pb2.PlanIntentRequest, context: Context
    ) -> intent_service_pb2.PlanIntentResponse:
        caller = principal()
        tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        extra = []
        if not 0 <= request.top_k <= MAX_TOP_K:
            extra.append(FieldViolation("top_k", f"must be between 0 and {MAX_TOP_K}"))
        spec = self._validated(request.intent, extra)
        # Planned as an intent of the tenant would be: within what its quotas leave.
        spec.name = intent_name(tenant, "plan")
        result = await self._engine.plan_intent(spec, top_k=request.top_k or 5)
        return intent_service_pb2.PlanIntentResponse(plan=to_plan_proto(result))

    async def GetIntent(  # noqa: N802
        self, request: intent_service_pb2.GetIntentRequest, context: Context
    ) -> intent_service_pb2.GetIntentResponse:
        name = visible_intent_name(principal(), request.name)
        intent = await self._store.get(name)
        if intent is None:
            raise NotFound(f"{name} not found")
        if self._usage is not None:
            intent.usage.CopyFrom(self._usage(intent))
        return intent_service_pb2.GetIntentResponse(intent=intent)

    async def ListIntents(  # noqa: N802
        self, request: intent_service_pb2.ListIntentsRequest, context: Context
    ) -> intent_service_pb2.ListIntentsResponse:
        caller = principal()
        tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        bad = [s for s in request.states if s not in lifecycle.TRANSITIONS]
        if bad:
            raise InvalidArgument([FieldViolation("states", f"unknown states {bad}")])
        query = f"{tenant}|{sorted(request.states)}"
        cursor = paging.decode(request.page_token, query)
        page = await self._store.list_intents(
            tenant=tenant,
            states=list(request.states),
            limit=paging.page_size(request.page_size),
            cursor=cursor,
        )
        next_token = paging.encode(page.next_cursor, query) if page.next_cursor is not None else ""
        return intent_service_pb2.ListIntentsResponse(
            intents=page.intents, next_page_token=next_token
        )

    async def WatchIntent(  # noqa: N802
        self, request: intent_service_pb2.WatchIntentRequest, context: Context
    ) -> AsyncIterator[intent_service_pb2.WatchIntentResponse]:
        caller = principal()
        if request.start_revision < 0:
            raise InvalidArgument([FieldViolation("start_revision", "must not be negative")])
        if request.name:
            name = visible_intent_name(caller, request.name)
            tenant = name.split("/")[1]
        else:
            name = ""
            tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        async for event in self._watch(tenant, name, request.start_revision):
            yield intent_service_pb2.WatchIntentResponse(
                intent=event.intent, revision=event.revision
            )

    async def _watch(self, tenant: str, name: str, start: int) -> AsyncIterator[IntentEvent]:
        """The current state (start == 0) or the log after `start`, then live
        changes: each intent's changes in revision order, none twice, none
        skipped (a subscriber that falls behind re-reads the log)."""
        subscription = self._store.subscribe()
        sent: dict[str, int] = {}
        # Every change up to `floor` has been seen (sent or filtered out).
        floor = start or self._store.revision

        def fresh(event: IntentEvent) -> bool:
            if event.revision <= sent.get(event.intent.name, start):
                return False
            sent[event.intent.name] = event.revision
            return True

        try:
            initial = (
                self._snapshot(tenant, name) if start == 0 else self._replay(tenant, name, start)
            )
            async for event in initial:
                if fresh(event):
                    yield event
            while True:
                live = await subscription.next()
                if live is None:
                    async for missed in self._replay(tenant, name, floor):
                        floor = max(floor, missed.revision)
                        if fresh(missed):
                            yield missed
                    continue
                floor = max(floor, live.revision)
                if live.tenant == tenant and (not name or live.intent.name == name) and fresh(live):
                    yield live
        finally:
            subscription.close()

    async def _snapshot(self, tenant: str, name: str) -> AsyncIterator[IntentEvent]:
        if name:
            intent = await self._store.get(name)
            if intent is None:
                raise NotFound(f"{name} not found")
            yield IntentEvent(intent.revision, tenant, intent)
            return
        cursor = None
        while True:
            page = await self._store.list_intents(
                tenant=tenant, states=[], limit=paging.MAX_PAGE_SIZE, cursor=cursor
            )
            for intent in reversed(page.intents):
                yield IntentEvent(intent.revision, tenant, intent)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _replay(self, tenant: str, name: str, after: int) -> AsyncIterator[IntentEvent]:
        while True:
            events = await self._store.events_since(after, tenant=tenant, name=name)
            for event in events:
                yield event
            if len(events) < 1000:
                return
            after = events[-1].revision

    async def CancelIntent(  # noqa: N802
        self, request: intent_service_pb2.CancelIntentRequest, context: Context
    ) -> intent_service_pb2.CancelIntentResponse:
        name = visible_intent_name(principal(), request.name)
        reason = request.reason or "cancelled by the user"
        now = self._clock()

        def cancel(current: intent_pb2.Intent) -> intent_pb2.Intent | None:
            try:
                target = lifecycle.cancel_target(
                    current.state, placed=current.HasField("placement")
                )
            except lifecycle.TransitionError as error:
                raise FailedPrecondition(str(error), subject=name) from error
            if target is None:
                return None
            return lifecycle.transition(
                current, target, reason="Cancelled", message=reason, now=now
            )

        intent = await self._store.update(name, cancel)
        return intent_service_pb2.CancelIntentResponse(intent=intent)

    async def UpdateIntent(  # noqa: N802
        self, request: intent_service_pb2.UpdateIntentRequest, context: Context
    ) -> intent_service_pb2.UpdateIntentResponse:
        name = visible_intent_name(principal(), request.intent.name, field="intent.name")
        paths = list(request.update_mask.paths)
        violations = [
            FieldViolation("update_mask", f"{p!r} cannot change; allowed: {', '.join(UPDATABLE)}")
            for p in paths
            if not any(p == allowed or p.startswith(allowed + ".") for allowed in UPDATABLE)
        ]
        if not paths:
            violations.append(
                FieldViolation("update_mask", f"required; allowed: {', '.join(UPDATABLE)}")
            )
        if violations:
            raise InvalidArgument(violations)
        now = self._clock()
        patch = user_spec(request.intent)

        def update(current: intent_pb2.Intent) -> intent_pb2.Intent | None:
            if current.state in lifecycle.TERMINAL or current.state == lifecycle.CANCELLING:
                raise FailedPrecondition(
                    f"the intent is {lifecycle.name(current.state).lower()}; it cannot change",
                    subject=name,
                )
            changed = intent_pb2.Intent()
            changed.CopyFrom(current)
            request.update_mask.MergeMessage(
                patch, changed, replace_message_field=True, replace_repeated_field=True
            )
            found = validate_intent(user_spec(changed), now=now)
            if found:
                raise InvalidArgument(
                    [
                        FieldViolation(f"intent.{v.field.removeprefix('intent.')}", v.description)
                        for v in found
                    ]
                )
            changed.update_time.FromDatetime(now)
            return changed

        intent = await self._store.update(name, update)
        return intent_service_pb2.UpdateIntentResponse(intent=intent)
