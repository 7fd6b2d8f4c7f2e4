"""Per-tenant quotas through the API: an intent that would take its tenant past
its GPUs or its spend per hour is refused with RESOURCE_EXHAUSTED naming the
quota, and nothing is stored; planning keeps an intent without a cost limit
within what its tenant has left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from controlplane.quotas import Quota
from flare.money import Money
from flare.v1 import intent_pb2, intent_service_pb2, token_service_pb2
from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.intents import gpu_job
from tests.telemetry_support import eventually

QUOTAS = {"acme": Quota(gpus=4, hourly_spend=Money(Decimal(3), "EUR"))}


@pytest.fixture
async def plane(tmp_path: Path, federation_file: Path) -> AsyncIterator[Running]:
    settings = plane_settings(tmp_path / "data", federation_file=federation_file, quotas=QUOTAS)
    async with serving(settings) as running:
        yield running


async def tenant_token(plane: Running, tenant: str) -> str:
    reply = await plane.tokens.CreateToken(
        token_service_pb2.CreateTokenRequest(parent=f"tenants/{tenant}"),
        metadata=plane.metadata(),
    )
    return reply.secret


async def create(plane: Running, token: str, intent: intent_pb2.Intent) -> intent_pb2.Intent:
    reply = await plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=intent), metadata=plane.metadata(token)
    )
    return reply.intent


async def state_of(plane: Running, token: str, name: str) -> intent_pb2.Intent:
    reply = await plane.intents.GetIntent(
        intent_service_pb2.GetIntentRequest(name=name), metadata=plane.metadata(token)
    )
    return reply.intent


async def settled(plane: Running, token: str, name: str) -> intent_pb2.Intent:
    async def done() -> bool:
        intent = await state_of(plane, token, name)
        return intent.state in (intent_pb2.STATE_RUNNING, intent_pb2.STATE_QUEUED)

    await eventually(done)
    return await state_of(plane, token, name)


async def refused(plane: Running, token: str, intent: intent_pb2.Intent) -> tuple[str, str]:
    """The quota named by the refusal, and its description."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(plane, token, intent)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None
    failure = error_details_pb2.QuotaFailure()
    assert any(detail.Unpack(failure) for detail in status.details)
    (violation,) = failure.violations
    return violation.subject, violation.description


async def test_quotas_refuse_what_exceeds_them_and_cap_planning(plane: Running) -> None:
    acme = await tenant_token(plane, "acme")
    globex = await tenant_token(plane, "globex")

    first = await settled(plane, acme, (await create(plane, acme, gpu_job("a", count=2))).name)
    gpus_quota = await refused(plane, acme, gpu_job("b", count=3))
    limited = gpu_job("c", count=1, max_hourly_cost="5 EUR")
    spend_quota = await refused(plane, acme, limited)
    unbounded = await create(plane, acme, gpu_job("d", count=1))  # 1 EUR/h left of 3
    fits = await settled(plane, acme, unbounded.name)
    broke = await settled(plane, acme, (await create(plane, acme, gpu_job("e", count=1))).name)
    other = await settled(plane, globex, (await create(plane, globex, gpu_job("f", count=4))).name)
    listed = await plane.intents.ListIntents(
        intent_service_pb2.ListIntentsRequest(), metadata=plane.metadata(acme)
    )

    assert first.state == intent_pb2.STATE_RUNNING
    assert Decimal(first.placement.hourly_cost.amount) == 2
    assert gpus_quota[0] == "tenants/acme/quotas/gpus"
    assert "uses 2 of its 4 GPUs; this intent asks for 3 more" in gpus_quota[1]
    assert spend_quota[0] == "tenants/acme/quotas/hourly_spend"
    assert "committed 2.00 EUR/h" in spend_quota[1]
    assert fits.state == intent_pb2.STATE_RUNNING
    assert Decimal(fits.placement.hourly_cost.amount) <= Decimal(1)
    assert broke.state == intent_pb2.STATE_QUEUED  # no spend left, though GPUs are
    assert "0.00 EUR/h" in broke.state_message
    assert other.state == intent_pb2.STATE_RUNNING  # globex has no quota
    assert {i.workload.name for i in listed.intents} == {"a", "d", "e"}  # nothing refused stored
