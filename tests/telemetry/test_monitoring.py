"""What monitoring sees of the agents' streams: WatchUtilization (snapshot,
updates, tenant scope, resync of a slow watcher), Prometheus /metrics as the
Prometheus parser reads it, and an intent's GPUs, utilisation and cost."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.probe.sim import SimProbe
from controlplane.telemetry.hub import TelemetryHub
from controlplane.telemetry.metrics import render_gpus, snapshot
from controlplane.telemetry.watch import QUEUE_LIMIT, Selector, Watchers
from flare.v1 import (
    intent_pb2,
    intent_service_pb2,
    telemetry_service_pb2_grpc,
    token_service_pb2,
)
from flare.v1 import (
    telemetry_service_pb2 as pb,
)
from flare.xids import WATCHED_XIDS
from tests.controlplane_fixtures import Running
from tests.intents import gpu_job
from tests.telemetry_support import Agents, eur, eventually, hello, inventory, samples, start_agent


async def tenant_token(control_plane: Running, tenant: str) -> str:
    reply = await control_plane.tokens.CreateToken(
        token_service_pb2.CreateTokenRequest(
            parent=f"tenants/{tenant}",
            token=token_service_pb2.Token(scopes=["intents:read", "intents:write"]),
        ),
        metadata=control_plane.metadata(),
    )
    return reply.secret


async def run_intent(control_plane: Running, token: str, count: int) -> intent_pb2.Intent:
    created = await control_plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=gpu_job("watched", count=count)),
        metadata=control_plane.metadata(token),
    )
    name = created.intent.name

    async def running() -> intent_pb2.Intent | None:
        reply = await control_plane.intents.GetIntent(
            intent_service_pb2.GetIntentRequest(name=name), metadata=control_plane.metadata(token)
        )
        return reply.intent if reply.intent.state == intent_pb2.STATE_RUNNING else None

    await eventually(running)
    intent = await running()
    assert intent is not None
    return intent


def watch(control_plane: Running, token: str | None = None, **selector: str) -> Any:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    return stub.WatchUtilization(
        pb.WatchUtilizationRequest(**selector), metadata=control_plane.metadata(token)
    )


@pytest.fixture
async def a100_agent(control_plane: Running, agents: Agents) -> None:
    # Cheaper than every A100 of the TINY federation, so intents land here.
    stop, task = start_agent(
        control_plane, SimProbe("a100", 4, pattern="busy"), "lab-a100", hourly_rate=eur("0.50")
    )
    agents.append((stop, task))
    await eventually(lambda: control_plane.plane.hub.nodes)


async def test_a_watcher_gets_a_snapshot_then_updates(
    control_plane: Running, a100_agent: None
) -> None:
    call = watch(control_plane, provider="lab")
    first = await call.read()
    assert first.type == pb.WATCH_EVENT_TYPE_SNAPSHOT
    assert sorted(g.device.index for g in first.gpus) == [0, 1, 2, 3]
    assert all(g.provider == "lab" and g.node == "lab-a100" for g in first.gpus)
    update = await asyncio.wait_for(call.read(), 2)
    assert update.type == pb.WATCH_EVENT_TYPE_UPDATE and update.gpus
    assert all(g.latest.gpu_utilization_percent >= 95 for g in update.gpus)  # "busy"
    assert all(g.last_minute.gpu_utilization_percent >= 95 for g in update.gpus)
    call.cancel()


async def test_a_tenant_sees_only_the_gpus_of_its_intents(
    control_plane: Running, a100_agent: None
) -> None:
    acme = await tenant_token(control_plane, "acme")
    globex = await tenant_token(control_plane, "globex")
    intent = await run_intent(control_plane, acme, 2)
    for token, expected in ((None, 4), (acme, 2), (globex, 0)):  # None: the admin sees all
        call = watch(control_plane, token)
        seen = (await call.read()).gpus
        assert len(seen) == expected, token
        if token == acme:
            assert {g.intent for g in seen} == {intent.name}
        call.cancel()


async def test_get_intent_shows_its_gpus_utilisation_and_cost_so_far(
    control_plane: Running, a100_agent: None
) -> None:
    intent = await run_intent(control_plane, control_plane.admin_token, 2)
    await asyncio.sleep(0.5)
    reply = await control_plane.intents.GetIntent(
        intent_service_pb2.GetIntentRequest(name=intent.name), metadata=control_plane.metadata()
    )
    usage = reply.intent.usage
    assert len(usage.gpu_uuids) == 2
    assert usage.gpu_utilization_percent >= 95
    seconds = usage.running_time.ToTimedelta().total_seconds()
    assert seconds >= 0.5
    cost = Decimal(usage.cost_so_far.amount)
    # 2 GPUs at 0.50 EUR per GPU-hour.
    assert usage.cost_so_far.currency_code == "EUR"
    assert float(cost) == pytest.approx(1.0 * seconds / 3600, rel=0.05)


async def test_metrics_have_dcgm_names_and_labels_as_prometheus_parses_them(
    control_plane: Running, a100_agent: None
) -> None:
    intent = await run_intent(control_plane, control_plane.admin_token, 1)
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session, session.get(control_plane.metrics_url) as got:
        assert got.status == 200
        text = await got.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    util = families["DCGM_FI_DEV_GPU_UTIL"]
    assert util.type == "gauge" and len(util.samples) == 4
    labels = util.samples[0].labels
    for key in ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"):
        assert labels[key], key
    assert (labels["provider"], labels["node"], labels["Hostname"]) == (
        "lab",
        "lab-a100",
        "lab-a100",
    )
    used = [s for s in util.samples if s.labels["intent"]]
    assert [s.labels["intent"] for s in used] == [intent.name]
    assert used[0].labels["tenant"] == "default"
    xids = families["flare_gpu_xid_errors"]
    assert xids.type == "counter"
    per_gpu = [s for s in xids.samples if s.labels["gpu"] == "0" and s.name.endswith("_total")]
    assert sorted(int(s.labels["xid"]) for s in per_gpu) == sorted(WATCHED_XIDS)
    assert all(s.value == 0 for s in per_gpu)
    assert families["DCGM_FI_DEV_FB_USED"].samples[0].value > 0
    states = {s.labels["state"]: s.value for s in families["flare_intents"].samples}
    assert states.get("RUNNING") == 1
    assert families["flare_telemetry_streams"].samples[0].value == 1
    assert families["flare_placement_seconds"].type == "histogram"


def test_an_unsupported_field_has_no_series_not_a_zero() -> None:
    hub = TelemetryHub()
    inv = inventory(gpus=1)
    state, stream = hub.hello(hello(inv))
    hub.accept(
        state,
        stream,
        pb.StreamTelemetryRequest(
            sequence=1,
            agent_instance="i-1",
            samples=pb.SampleBatch(samples=[pb.GpuSample(uuid=inv.gpus[0].uuid, power_watts=0.0)]),
        ),
    )
    text = render_gpus(snapshot(hub, lambda key, uuid: ""))
    names = {f.name: f for f in text_string_to_metric_families(text)}
    assert names["DCGM_FI_DEV_POWER_USAGE"].samples[0].value == 0.0  # a real zero stays
    assert names["DCGM_FI_DEV_GPU_UTIL"].samples == []  # not supported: no series


async def test_a_slow_watcher_is_resynced_never_left_with_a_gap() -> None:
    hub = TelemetryHub()
    inv = inventory(gpus=2)
    state, stream = hub.hello(hello(inv))
    watchers = Watchers(hub, lambda key, uuid: "")
    slow: Any = watchers.watch(Selector())
    assert (await anext(slow)).type == pb.WATCH_EVENT_TYPE_SNAPSHOT
    for n in range(1, QUEUE_LIMIT + 5):  # more updates than its queue holds, none read
        hub.accept(state, stream, samples(n, inv))
        watchers.publish()
    assert (await anext(slow)).type == pb.WATCH_EVENT_TYPE_RESYNC
    fresh = await anext(slow)
    assert fresh.type == pb.WATCH_EVENT_TYPE_SNAPSHOT
    assert {g.latest.gpu_utilization_percent for g in fresh.gpus} == {float(QUEUE_LIMIT + 4)}
    hub.accept(state, stream, samples(QUEUE_LIMIT + 5, inv))
    watchers.publish()
    assert (await anext(slow)).type == pb.WATCH_EVENT_TYPE_UPDATE  # and on it goes
    assert watchers.resyncs == 1
    await slow.aclose()
    assert len(watchers) == 0


async def test_watch_needs_a_token(control_plane: Running) -> None:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    call = stub.WatchUtilization(pb.WatchUtilizationRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_flarectl_top_once_shows_the_gpus_and_their_intent(
    control_plane: Running, a100_agent: None
) -> None:
    intent = await run_intent(control_plane, control_plane.admin_token, 1)
    await asyncio.sleep(0.3)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flarectl",
        "top",
        "--once",
        "--provider",
        "lab",
        env={
            **os.environ,
            "FLARE_ADDRESS": f"127.0.0.1:{control_plane.plane.grpc_port}",
            "FLARE_TOKEN": control_plane.admin_token,
            "COLUMNS": "200",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("1 providers  1 nodes  4 GPUs  1 in use")
    rows = [line.split() for line in lines if line.startswith("lab ")]
    assert [row[2] for row in rows] == ["0", "1", "2", "3"]
    assert all(row[3] == "nvidia-a100" and "ok" in row for row in rows)
    assert sum(intent.name in line for line in lines) == 1
