"""The agent's stream into a real control plane: agents become offers that
intents land on, health and silence take them out, tokens are checked, and a
control plane killed mid-stream loses nothing and takes nothing twice."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.outbox import Outbox
from agent.probe.base import Reading
from agent.probe.sim import Fault, SimProbe
from controlplane.telemetry.journal import Kind, read_segment
from flare.v1 import (
    intent_pb2,
    intent_service_pb2,
    offer_pb2,
    offer_service_pb2,
    telemetry_service_pb2_grpc,
    token_service_pb2,
)
from flare.v1 import (
    telemetry_service_pb2 as pb,
)
from tests.controlplane_fixtures import Running
from tests.controlplane_process import ControlPlaneProcess, free_port
from tests.intents import gpu_job
from tests.telemetry_support import Agents, eur, eventually, inventory, start_agent


async def lab_offers(control_plane: Running) -> list[offer_pb2.Offer]:
    reply = await control_plane.offers.ListOffers(
        offer_service_pb2.ListOffersRequest(), metadata=control_plane.metadata()
    )
    return [o for o in reply.offers if o.provider == "lab"]


async def test_an_agent_becomes_an_offer_and_the_cheapest_intent_lands_on_it(
    control_plane: Running, agents: Agents
) -> None:
    # The TINY federation's cheapest A100 costs 1.00 EUR; the agent's node undercuts it.
    stop, task = start_agent(
        control_plane, SimProbe("a100", 4), "lab-a100", hourly_rate=eur("0.80")
    )
    agents.append((stop, task))
    await eventually(lambda: lab_offers(control_plane))
    [offer] = await lab_offers(control_plane)
    assert offer.name == "providers/lab/offers/lab-a100"
    assert offer.gpu.model == "nvidia-a100" and offer.gpus_free == 4

    created = await control_plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=gpu_job("on-agent", count=2)),
        metadata=control_plane.metadata(),
    )

    async def placed() -> bool:
        reply = await control_plane.intents.GetIntent(
            intent_service_pb2.GetIntentRequest(name=created.intent.name),
            metadata=control_plane.metadata(),
        )
        intent = reply.intent
        return intent.state == intent_pb2.STATE_RUNNING and intent.placement.offer == offer.name

    await eventually(placed)
    [offer] = await lab_offers(control_plane)
    assert offer.gpus_free == 2


class StopsWhileSampling(SimProbe):
    """A SimProbe whose fifth reading asks the agent to stop, and returns only after the
    agent has begun stopping: the stop lands in the middle of a round of the probe."""

    stop: asyncio.Event
    loop: asyncio.AbstractEventLoop

    def sample(self) -> tuple[Reading, ...]:
        readings = super().sample()
        if self._samples == 5:
            self.loop.call_soon_threadsafe(self.stop.set)
            time.sleep(0.3)
        return readings


async def test_a_reading_under_way_when_the_agent_stops_is_acknowledged_too(
    control_plane: Running,
) -> None:
    probe = StopsWhileSampling("a100", 2)
    stop, task = start_agent(control_plane, probe, "lab-stopping")
    probe.stop, probe.loop = stop, asyncio.get_running_loop()
    report = await asyncio.wait_for(task, 20)
    assert report.samples == 5
    assert (report.unacked, report.acked) == (0, report.last_sequence), report


async def test_unhealthy_gpus_and_a_silent_agent_leave_placement(
    control_plane: Running, agents: Agents
) -> None:
    control_plane.plane.settings.stale_after_seconds = 0.5
    probe = SimProbe("h100", 4, faults=[Fault(index=1, kind="ecc", at=10)])
    stop, task = start_agent(control_plane, probe, "lab-h100", hourly_rate=eur("2"))

    async def free_gpus() -> list[int]:
        return [o.gpus_free for o in await lab_offers(control_plane)]

    await eventually(lambda: _equals(free_gpus(), [3]))  # GPU 1 reports uncorrectable ECC
    stop.set()
    report = await task
    assert report.unacked == 0
    control_plane.plane.hub.sweep(0.5)
    await eventually(lambda: _equals(free_gpus(), []), timeout=5)


async def test_a_token_without_the_telemetry_scope_is_refused(control_plane: Running) -> None:
    token = await control_plane.tokens.CreateToken(
        token_service_pb2.CreateTokenRequest(
            token=token_service_pb2.Token(scopes=["intents:read"])
        ),
        metadata=control_plane.metadata(),
    )
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    call = stub.StreamTelemetry(metadata=control_plane.metadata(token.secret))
    # Refused as the stream opens, before any message: a hello written meanwhile could
    # meet the ended stream, which grpc reports as its own INTERNAL error.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_malformed_hello_is_refused_with_the_field_named(control_plane: Running) -> None:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    call = stub.StreamTelemetry(metadata=control_plane.metadata())
    await call.write(pb.StreamTelemetryRequest(sequence=4, agent_instance="x"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence" in (caught.value.details() or "")


async def test_a_resumed_stream_is_answered_with_where_to_resume(control_plane: Running) -> None:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    inv = inventory("resume-node")
    box = Outbox(capacity=100, instance="boot-1")
    first = stub.StreamTelemetry(metadata=control_plane.metadata())
    await first.write(box.hello(inv))
    assert (await read(first)).acked_sequence == 0
    for _ in range(5):
        await first.write(box.put(pb.SampleBatch()))
    acked = 0
    while acked < 5:
        acked = (await read(first)).acked_sequence
    first.cancel()
    second = stub.StreamTelemetry(metadata=control_plane.metadata())
    await second.write(box.hello(inv))
    assert (await read(second)).acked_sequence == 5
    await second.write(box.put(pb.SampleBatch()))  # 6
    skipped = box.put(pb.SampleBatch())  # 7, never sent
    await second.write(box.put(pb.SampleBatch()))  # 8
    answers = [await read(second)]
    while answers[-1].acked_sequence < 8:
        answers.append(await read(second))
    assert [n for a in answers for n in a.missing_sequences] == [skipped.sequence]
    second.cancel()


async def read(call: Any) -> pb.StreamTelemetryResponse:
    answer = await call.read()
    assert isinstance(answer, pb.StreamTelemetryResponse), "the stream ended"
    return answer


async def _equals(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]


# -- a control plane killed mid-stream --------------------------------------------------


def journaled_sequences(data_dir: Path, instance: str) -> collections.Counter[int]:
    seen: collections.Counter[int] = collections.Counter()
    for segment in sorted((data_dir / "telemetry").glob("*.seg")):
        records, _ = read_segment(segment)
        for record in records:
            if record.kind != Kind.MESSAGE:
                continue
            request = pb.StreamTelemetryRequest.FromString(record.body)
            if request.agent_instance == instance and request.sequence:
                seen[request.sequence] += 1
    return seen


def agent_report(log: Path) -> dict[str, object]:
    for line in reversed(log.read_text().splitlines()):
        entry = json.loads(line)
        if entry["message"] == "agent stopped":
            report: dict[str, object] = entry["report"]
            return report
    raise AssertionError(f"the agent did not report:\n{log.read_text()[-2000:]}")


def instance_of(data_dir: Path) -> str:
    for segment in sorted((data_dir / "telemetry").glob("*.seg")):
        for record in read_segment(segment)[0]:
            return pb.StreamTelemetryRequest.FromString(record.body).agent_instance
    raise AssertionError("nothing journaled")


@pytest.mark.slow
def test_a_control_plane_killed_mid_stream_loses_nothing_and_takes_nothing_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "cp"
    server = ControlPlaneProcess(data, free_port())
    server.start()
    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token)
    agent_log = tmp_path / "agent.log"
    with agent_log.open("wb") as log:
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "agent.main",
                "--backend", "sim", "--sim-count", "8",
                "--node-name", "kill-9-node", "--provider", "lab",
                "--control-plane", server.address, "--token-file", str(token_file),
                "--interval", "0.02", "--kubernetes", "off",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while sum(journaled_sequences(data, instance_of_or_none(data)).values()) < 100:
            assert time.monotonic() < deadline, agent_log.read_text()[-2000:]
            time.sleep(0.1)
        server.kill()  # mid-stream, no chance to clean up
        time.sleep(1.0)  # the agent keeps sampling into its outbox meanwhile
        server.start()
        time.sleep(2.0)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        server.stop()
    report = agent_report(agent_log)
    assert report["dropped"] == 0 and report["unacked"] == 0, report
    assert report["connects"] == 2, report  # it did reconnect after the kill
    assert isinstance(report["sent_on_resume"], int) and report["sent_on_resume"] >= 10, report
    last = report["last_sequence"]
    assert isinstance(last, int) and last > 150
    seen = journaled_sequences(data, instance_of(data))
    assert sorted(seen) == list(range(1, last + 1)), "a message is missing"
    assert set(seen.values()) == {1}, "a message was taken twice"


def instance_of_or_none(data_dir: Path) -> str:
    try:
        return instance_of(data_dir)
    except (AssertionError, FileNotFoundError):
        return ""


async def test_a_journal_that_cannot_be_written_is_unavailable_and_nothing_is_acked(
    control_plane: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = telemetry_service_pb2_grpc.TelemetryServiceStub(control_plane.channel)
    inv = inventory("full-disk")
    box = Outbox(capacity=10, instance="boot-1")
    call = stub.StreamTelemetry(metadata=control_plane.metadata())
    await call.write(box.hello(inv))
    await read(call)
    journal = control_plane.plane.journal

    def disk_full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "_write", disk_full)
    await call.write(box.put(pb.SampleBatch()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read(call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "No space left" in (caught.value.details() or "")
    monkeypatch.undo()  # the disk has room again: the same message is taken this time
    again = stub.StreamTelemetry(metadata=control_plane.metadata())
    await again.write(box.hello(inv))
    assert (await read(again)).acked_sequence == 0
    await again.write(box.after(0)[0])
    assert (await read(again)).acked_sequence == 1
    again.cancel()
