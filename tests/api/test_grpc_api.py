"""The gRPC API against a real server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from controlplane.app import ControlPlane, Settings
from controlplane.clock import utc_now
from controlplane.intents import lifecycle
from flare.v1 import intent_pb2
from flare.v1 import intent_service_pb2 as svc
from flare.v1 import token_service_pb2 as tok
from tests.controlplane_fixtures import Running
from tests.intents import SEED_INFERENCE, SEED_TRAINING, gpu_job, intent_from


async def create(
    cp: Running, intent: intent_pb2.Intent, token: str | None = None, request_id: str = ""
) -> intent_pb2.Intent:
    response = await cp.intents.CreateIntent(
        svc.CreateIntentRequest(intent=intent, request_id=request_id), metadata=cp.metadata(token)
    )
    return response.intent


async def until(cp: Running, name: str, state: int, timeout: float = 5.0) -> intent_pb2.Intent:
    async def poll() -> intent_pb2.Intent:
        while True:
            got = (
                await cp.intents.GetIntent(svc.GetIntentRequest(name=name), metadata=cp.metadata())
            ).intent
            if got.state == state:
                return got
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


async def token_with(cp: Running, tenant: str, *scopes: str) -> str:
    response = await cp.tokens.CreateToken(
        tok.CreateTokenRequest(parent=f"tenants/{tenant}", token=tok.Token(scopes=list(scopes))),
        metadata=cp.metadata(),
    )
    return response.secret


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


async def test_seed_intents_run_on_the_provider_their_objective_picks(
    control_plane: Running,
) -> None:
    training = await create(control_plane, intent_from(SEED_TRAINING))
    inference = await create(control_plane, intent_from(SEED_INFERENCE))
    training = await until(control_plane, training.name, lifecycle.RUNNING)
    inference = await until(control_plane, inference.name, lifecycle.RUNNING)
    # Cost: the cheaper EU provider; latency: the faster one, under 50 ms and 5 EUR/h.
    assert training.placement.provider == "eu-cheap"
    assert inference.placement.provider == "eu-fast"
    assert inference.endpoint == "https://llm-api.mycompany.com"
    assert [h.reason for h in training.history] == [
        "Created",
        "Planning",
        "Placed",
        "Reserved",
        "Running",
    ]
    assert [h.revision for h in training.history] == sorted(h.revision for h in training.history)


async def test_invalid_intent_is_invalid_argument_with_every_field_and_nothing_stored(
    control_plane: Running,
) -> None:
    bad = gpu_job("Bad Name", model="h10", count=-1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(control_plane, bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(caught.value)
    assert set(found) == {
        "intent.workload.name",
        "intent.workload.resources.gpu.model",
        "intent.workload.resources.gpu.count",
    }
    assert "nvidia-h100" in found["intent.workload.resources.gpu.model"]
    listed = await control_plane.intents.ListIntents(
        svc.ListIntentsRequest(), metadata=control_plane.metadata()
    )
    assert list(listed.intents) == []


async def test_request_id_makes_create_idempotent(control_plane: Running) -> None:
    first = await create(control_plane, gpu_job(), request_id="retry-1")
    again = await control_plane.intents.CreateIntent(
        svc.CreateIntentRequest(intent=gpu_job(), request_id="retry-1"),
        metadata=control_plane.metadata(),
    )
    assert again.intent.name == first.name and not again.created


async def test_authentication_and_scopes(control_plane: Running) -> None:
    reader = await token_with(control_plane, "acme", "intents:read")
    cases = [(None, ""), ("flr.default.x.y", "garbage"), ("nope", "not-a-token")]
    for _, bad in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await control_plane.intents.ListIntents(
                svc.ListIntentsRequest(),
                metadata=(("authorization", f"Bearer {bad}"),) if bad else (),
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await create(control_plane, gpu_job(), token=reader)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "intents:write" in (denied.value.details() or "")


async def test_revoked_and_expired_tokens_are_refused(control_plane: Running) -> None:
    created = await control_plane.tokens.CreateToken(
        tok.CreateTokenRequest(parent="tenants/acme", token=tok.Token(scopes=["intents:read"])),
        metadata=control_plane.metadata(),
    )
    await control_plane.intents.ListIntents(
        svc.ListIntentsRequest(), metadata=control_plane.metadata(created.secret)
    )
    await control_plane.tokens.RevokeToken(
        tok.RevokeTokenRequest(name=created.token.name), metadata=control_plane.metadata()
    )
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await control_plane.intents.ListIntents(
            svc.ListIntentsRequest(), metadata=control_plane.metadata(created.secret)
        )
    assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in (
        revoked.value.details() or ""
    )
    short = tok.CreateTokenRequest(parent="tenants/acme", token=tok.Token(scopes=["intents:read"]))
    short.ttl.FromMilliseconds(300)
    expiring = await control_plane.tokens.CreateToken(short, metadata=control_plane.metadata())
    await asyncio.sleep(0.5)
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await control_plane.intents.ListIntents(
            svc.ListIntentsRequest(), metadata=control_plane.metadata(expiring.secret)
        )
    assert "expired" in (expired.value.details() or "")
    listed = await control_plane.tokens.ListTokens(
        tok.ListTokensRequest(parent="tenants/acme"), metadata=control_plane.metadata()
    )
    assert list(listed.tokens) == []  # both inactive


async def test_tenants_never_see_each_other(control_plane: Running) -> None:
    acme = await token_with(
        control_plane, "acme", "intents:read", "intents:write", "intents:delete"
    )
    globex = await token_with(
        control_plane, "globex", "intents:read", "intents:write", "intents:delete"
    )
    mine = await create(control_plane, gpu_job("acme-job"), token=acme)
    assert mine.name.startswith("tenants/acme/intents/")
    for call in (
        control_plane.intents.GetIntent(
            svc.GetIntentRequest(name=mine.name), metadata=control_plane.metadata(globex)
        ),
        control_plane.intents.CancelIntent(
            svc.CancelIntentRequest(name=mine.name), metadata=control_plane.metadata(globex)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    theirs = await control_plane.intents.ListIntents(
        svc.ListIntentsRequest(), metadata=control_plane.metadata(globex)
    )
    assert list(theirs.intents) == []
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await control_plane.intents.ListIntents(
            svc.ListIntentsRequest(parent="tenants/acme"), metadata=control_plane.metadata(globex)
        )
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_cancel_releases_and_is_idempotent_but_not_after_success(
    control_plane: Running,
) -> None:
    running = await until(
        control_plane, (await create(control_plane, gpu_job(count=4))).name, lifecycle.RUNNING
    )
    md = control_plane.metadata()
    first = await control_plane.intents.CancelIntent(
        svc.CancelIntentRequest(name=running.name), metadata=md
    )
    assert first.intent.state in (lifecycle.CANCELLING, lifecycle.CANCELLED)
    cancelled = await until(control_plane, running.name, lifecycle.CANCELLED)
    assert control_plane.plane.local is not None
    assert control_plane.plane.local.held_by(running.name) is None
    again = await control_plane.intents.CancelIntent(
        svc.CancelIntentRequest(name=running.name), metadata=md
    )
    assert again.intent.revision == cancelled.revision  # nothing changed

    done = await until(
        control_plane, (await create(control_plane, gpu_job())).name, lifecycle.RUNNING
    )
    await control_plane.plane.store.update(
        done.name,
        lambda i: lifecycle.transition(
            i, lifecycle.SUCCEEDED, reason="Completed", message="", now=utc_now()
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await control_plane.intents.CancelIntent(
            svc.CancelIntentRequest(name=done.name), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_unplaceable_intent_queues_with_reasons_then_runs_when_capacity_frees(
    control_plane: Running,
) -> None:
    md = control_plane.metadata()
    holder = await until(
        control_plane,
        (await create(control_plane, gpu_job("holder", model="nvidia-h100", count=8))).name,
        lifecycle.RUNNING,
    )
    waiting = await until(
        control_plane,
        (await create(control_plane, gpu_job("waiter", model="nvidia-h100", count=2))).name,
        lifecycle.QUEUED,
    )
    reasons = {r.reason: r.count for r in waiting.last_plan.rejections}
    assert reasons == {"gpu_model": 2, "capacity": 1}
    assert "waiting for capacity" in waiting.state_message
    await control_plane.intents.CancelIntent(svc.CancelIntentRequest(name=holder.name), metadata=md)
    placed = await until(control_plane, waiting.name, lifecycle.RUNNING)
    assert placed.placement.provider == "us-h100"


async def test_list_filters_by_state_and_pages(control_plane: Running) -> None:
    md = control_plane.metadata()
    names = [(await create(control_plane, gpu_job(f"j{i}"))).name for i in range(5)]
    for name in names:
        await until(control_plane, name, lifecycle.RUNNING)
    await control_plane.intents.CancelIntent(svc.CancelIntentRequest(name=names[0]), metadata=md)
    await until(control_plane, names[0], lifecycle.CANCELLED)
    seen, token = [], ""
    while True:
        page = await control_plane.intents.ListIntents(
            svc.ListIntentsRequest(page_size=2, page_token=token, states=[lifecycle.RUNNING]),
            metadata=md,
        )
        seen += [i.name for i in page.intents]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(names[1:]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await control_plane.intents.ListIntents(
            svc.ListIntentsRequest(page_token="forged"), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def collect(
    stream: AsyncIterable[svc.WatchIntentResponse], until_state: int
) -> list[svc.WatchIntentResponse]:
    got = []
    async for item in stream:
        got.append(item)
        if item.intent.state == until_state:
            return got
    return got


async def test_watch_streams_every_change_and_resumes_from_a_revision(
    control_plane: Running,
) -> None:
    md = control_plane.metadata()
    intent = await create(control_plane, gpu_job())
    watched = await asyncio.wait_for(
        collect(
            control_plane.intents.WatchIntent(
                svc.WatchIntentRequest(name=intent.name), metadata=md
            ),
            lifecycle.RUNNING,
        ),
        5,
    )
    states = [w.intent.state for w in watched]
    assert states[-1] == lifecycle.RUNNING
    assert [w.revision for w in watched] == sorted({w.revision for w in watched})
    resumed = await asyncio.wait_for(
        collect(
            control_plane.intents.WatchIntent(
                svc.WatchIntentRequest(name=intent.name, start_revision=intent.revision),
                metadata=md,
            ),
            lifecycle.RUNNING,
        ),
        5,
    )
    assert [w.intent.state for w in resumed] == [
        lifecycle.PLANNING,
        lifecycle.RESERVING,
        lifecycle.DEPLOYING,
        lifecycle.RUNNING,
    ]


async def test_update_changes_only_allowed_fields(control_plane: Running) -> None:
    md = control_plane.metadata()
    intent = await until(
        control_plane,
        (await create(control_plane, intent_from(SEED_INFERENCE))).name,
        lifecycle.RUNNING,
    )
    patch = intent_pb2.Intent(name=intent.name)
    patch.workload.scaling.min_replicas = 3
    patch.constraints.max_hourly_cost.CopyFrom(intent.constraints.max_hourly_cost)
    patch.constraints.max_hourly_cost.amount = "7"
    updated = await control_plane.intents.UpdateIntent(
        svc.UpdateIntentRequest(
            intent=patch,
            update_mask=field_mask_pb2.FieldMask(
                paths=["workload.scaling", "constraints.max_hourly_cost"]
            ),
        ),
        metadata=md,
    )
    assert updated.intent.workload.scaling.min_replicas == 3
    assert updated.intent.constraints.max_hourly_cost.amount == "7"
    assert updated.intent.workload.image == intent.workload.image
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await control_plane.intents.UpdateIntent(
            svc.UpdateIntentRequest(
                intent=patch, update_mask=field_mask_pb2.FieldMask(paths=["workload.image"])
            ),
            metadata=md,
        )
    assert set(violations(caught.value)) == {"update_mask"}


async def test_plan_is_a_dry_run_with_ranked_candidates(control_plane: Running) -> None:
    md = control_plane.metadata()
    free_before = (await control_plane.plane.federation.offers()).gpus_free.tolist()
    response = await control_plane.intents.PlanIntent(
        svc.PlanIntentRequest(intent=intent_from(SEED_TRAINING)), metadata=md
    )
    plan = response.plan
    assert [c.offer.provider for c in plan.candidates] == ["eu-cheap", "eu-fast"]
    assert plan.candidates[0].criteria[0].criterion == "cost"
    assert {r.reason: r.count for r in plan.rejections} == {"gpu_model": 1}
    listed = await control_plane.intents.ListIntents(svc.ListIntentsRequest(), metadata=md)
    assert list(listed.intents) == []
    assert (await control_plane.plane.federation.offers()).gpus_free.tolist() == free_before


async def test_health_and_reflection_need_no_token(control_plane: Running) -> None:
    health = health_pb2_grpc.HealthStub(control_plane.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="flare.v1.IntentService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(control_plane.channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for answer in stub.ServerReflectionInfo(ask()):
        names |= {s.name for s in answer.list_services_response.service}
    assert {"flare.v1.IntentService", "flare.v1.OfferService", "flare.v1.TokenService"} <= names


async def test_a_busy_port_is_a_clear_error_not_a_traceback(
    control_plane: Running, tmp_path: Path
) -> None:
    busy = Settings(
        listen=f"127.0.0.1:{control_plane.plane.grpc_port}",
        http_listen="",
        data_dir=tmp_path / "other",
    )
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1"):
        await ControlPlane(busy).start()
    assert not (tmp_path / "other" / "admin-token").exists()


async def test_a_queued_intent_carries_the_nearest_alternatives(control_plane: Running) -> None:
    md = control_plane.metadata()
    wish = gpu_job("h100-eu", model="nvidia-h100", count=2, location="EU")
    queued = await until(control_plane, (await create(control_plane, wish)).name, lifecycle.QUEUED)
    alternatives = {a.relaxed: a for a in queued.last_plan.alternatives}
    assert set(alternatives) == {"location", "gpu.model"}
    assert alternatives["location"].candidate.offer.provider == "us-h100"
    assert alternatives["gpu.model"].candidate.offer.gpu.model == "nvidia-a100"
    assert alternatives["gpu.model"].performance_impact < 0
    planned = await control_plane.intents.PlanIntent(
        svc.PlanIntentRequest(intent=wish), metadata=md
    )
    assert [a.relaxed for a in planned.plan.alternatives] == [
        a.relaxed for a in queued.last_plan.alternatives
    ]
