"""What CreateIntent keeps of a client's intent: every field the user may set
(the proto's non-output fields), and none of the output fields it sends."""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from flare.v1 import intent_pb2, intent_service_pb2
from tests.controlplane_fixtures import Running
from tests.intents import gpu_job
from tests.telemetry_support import eventually


async def test_user_fields_are_kept_and_output_fields_ignored(control_plane: Running) -> None:
    intent = gpu_job("fields", count=1)
    intent.priority = intent_pb2.PRIORITY_HIGH
    intent.sla.preemptible = False
    intent.notification_url = "https://hooks.example.org/flare"
    intent.state = intent_pb2.STATE_RUNNING  # output only: ignored
    intent.endpoint = "http://forged.example"

    reply = await control_plane.intents.CreateIntent(
        intent_service_pb2.CreateIntentRequest(intent=intent, validate_only=True),
        metadata=control_plane.metadata(),
    )

    kept = reply.intent
    assert kept.priority == intent_pb2.PRIORITY_HIGH
    assert kept.sla.HasField("preemptible") and not kept.sla.preemptible
    assert kept.notification_url == "https://hooks.example.org/flare"
    assert kept.state == intent_pb2.STATE_PENDING and kept.endpoint == ""


async def test_raising_a_queued_intents_priority_lets_it_preempt(control_plane: Running) -> None:
    async def create(name: str, priority: intent_pb2.Priority.ValueType) -> str:
        intent = gpu_job(name, count=4)
        intent.priority = priority
        reply = await control_plane.intents.CreateIntent(
            intent_service_pb2.CreateIntentRequest(intent=intent),
            metadata=control_plane.metadata(),
        )
        return reply.intent.name

    async def get(name: str) -> intent_pb2.Intent:
        reply = await control_plane.intents.GetIntent(
            intent_service_pb2.GetIntentRequest(name=name), metadata=control_plane.metadata()
        )
        return reply.intent

    async def in_state(name: str, wanted: int) -> bool:
        return (await get(name)).state == wanted

    # Two LOW intents take the federation's 8 A100s; a third LOW preempts no one.
    fillers = [await create(f"filler-{i}", intent_pb2.PRIORITY_LOW) for i in range(2)]

    async def all_running() -> bool:
        return all([await in_state(name, intent_pb2.STATE_RUNNING) for name in fillers])

    await eventually(all_running)
    late = await create("late", intent_pb2.PRIORITY_LOW)
    await eventually(lambda: in_state(late, intent_pb2.STATE_QUEUED))

    await control_plane.intents.UpdateIntent(
        intent_service_pb2.UpdateIntentRequest(
            intent=intent_pb2.Intent(name=late, priority=intent_pb2.PRIORITY_HIGH),
            update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
        ),
        metadata=control_plane.metadata(),
    )
    await eventually(lambda: in_state(late, intent_pb2.STATE_RUNNING))

    raised = await get(late)
    yielded = [
        name for name in fillers if "Preempted" in [t.reason for t in (await get(name)).history]
    ]
    assert raised.priority == intent_pb2.PRIORITY_HIGH
    assert "Preempting" in [t.reason for t in raised.history]
    assert len(yielded) == 1
