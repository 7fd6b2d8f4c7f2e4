"""What CreateIntent keeps of a client's intent: every field the user may set
(the proto's non-output fields), and none of the output fields it sends."""

from __future__ import annotations

from flare.v1 import intent_pb2, intent_service_pb2
from tests.controlplane_fixtures import Running
from tests.intents import gpu_job


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
