"""The pure parts of cluster mode: where each intent field is stored, the CRD
schema built from the protos, revision stamping, and the engine's trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import descriptor

from controlplane.api.intents import generated_id
from controlplane.cluster import resources, schema
from controlplane.engine import waits_for_engine
from controlplane.intents import lifecycle
from controlplane.main import lease_timing
from flare.v1 import intent_pb2, token_service_pb2
from tests.intents import SEED_INFERENCE, intent_from

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def stored_intent() -> intent_pb2.Intent:
    intent = intent_from(SEED_INFERENCE)
    intent.name = "tenants/acme/intents/inference-1"
    intent.request_id = "req/ü 1"
    intent = lifecycle.created(intent, now=NOW)
    intent.revision = 41
    return intent


def test_user_fields_are_the_spec_output_fields_the_status() -> None:
    body = resources.intent_object(stored_intent(), "flare-system")

    assert set(body["spec"]) == {"objective", "workload", "constraints", "sla"}
    assert {"state", "history", "createTime", "requestId"} <= set(body["status"])
    assert "revision" not in body["status"] and "usage" not in body["status"]
    assert body["metadata"]["name"] == "acme.inference-1"
    assert body["metadata"]["resourceVersion"] == "41"
    assert body["metadata"]["labels"] == {
        resources.TENANT_LABEL: "acme",
        resources.REQUEST_LABEL: resources.request_label("req/ü 1"),
    }
    assert len(resources.request_label("x" * 500)) <= 63


def test_an_object_reads_back_as_the_intent_at_its_resource_version() -> None:
    intent = stored_intent()
    body = resources.intent_object(intent, "flare-system")
    body["metadata"]["resourceVersion"] = "57"

    read = resources.intent_of(body)

    intent.revision = 57
    intent.history[0].revision = 57
    assert read == intent


def test_stamping_fills_only_the_entries_of_the_last_write() -> None:
    intent = stored_intent()
    intent.history[0].revision = 12
    moved = lifecycle.transition(intent, lifecycle.PLANNING, reason="Planning", message="", now=NOW)

    resources.stamped(moved, 20)

    assert [t.revision for t in moved.history] == [12, 20]
    assert moved.revision == 20


def test_tokens_keep_only_the_hash_of_their_secret() -> None:
    token = token_service_pb2.Token(
        name="tenants/acme/tokens/ci", display_name="ci", scopes=["intents:read"], creator="x"
    )
    token.create_time.FromDatetime(NOW)
    body = resources.token_object("acme", token, bytes(range(32)), "flare-system")
    body["metadata"]["resourceVersion"] = "3"

    assert body["spec"]["secretHash"] == bytes(range(32)).hex()
    assert resources.token_of(body) == ("acme", token, bytes(range(32)))


def _properties(node: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = node.get("properties", {})
    return found


def _check_covered(message: descriptor.Descriptor, node: dict[str, Any]) -> None:
    if message.full_name.startswith("google.protobuf."):
        assert node["type"] == "string"
        return
    for field in message.fields:
        child = _properties(node)[field.json_name]
        if field.is_repeated:
            assert child["type"] == "array"
            child = child["items"]
        if field.message_type is not None:
            _check_covered(field.message_type, child)
        elif field.enum_type is not None:
            assert child["enum"] == [v.name for v in field.enum_type.values]


def test_the_crd_schema_names_every_stored_field_so_nothing_is_pruned() -> None:
    intents, tokens = schema.crds()
    root = intents["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    merged: dict[str, Any] = {
        "type": "object",
        "properties": {**root["spec"]["properties"], **root["status"]["properties"]},
    }
    message = intent_pb2.Intent.DESCRIPTOR
    stored = [f for f in message.fields if f.name not in resources.NOT_STORED | {"name"}]

    assert set(merged["properties"]) == {f.json_name for f in stored}
    for field in stored:
        node = merged["properties"][field.json_name]
        if field.message_type is not None:
            _check_covered(field.message_type, node["items"] if field.is_repeated else node)
    token_spec = tokens["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert token_spec["properties"]["secretHash"]["pattern"] == "^[0-9a-f]{64}$"


def test_the_engine_is_woken_by_what_others_change_not_by_its_own_steps() -> None:
    intent = stored_intent()
    planning = lifecycle.transition(intent, lifecycle.PLANNING, reason="P", message="", now=NOW)
    queued = lifecycle.transition(planning, lifecycle.QUEUED, reason="Q", message="", now=NOW)
    edited = intent_pb2.Intent()
    edited.CopyFrom(queued)
    edited.update_time.FromDatetime(NOW + timedelta(seconds=1))
    cancelling = intent_pb2.Intent()
    cancelling.CopyFrom(queued)
    cancelling.state = lifecycle.CANCELLING

    assert waits_for_engine(intent)  # PENDING: new
    assert not waits_for_engine(planning)
    assert not waits_for_engine(queued)
    assert waits_for_engine(edited)  # the user changed a queued intent
    assert waits_for_engine(cancelling)


def test_a_request_id_names_the_same_intent_on_every_replica() -> None:
    first = generated_id("train", "acme", "r-1")

    assert first == generated_id("train", "acme", "r-1")
    assert first != generated_id("train", "globex", "r-1")
    assert generated_id("train", "acme", "") != generated_id("train", "acme", "")
    assert len(generated_id("x" * 63, "acme", "r")) <= 63


def test_the_lease_duration_sets_renewal_and_retry() -> None:
    timing = lease_timing(6)

    assert (timing.lease_seconds, timing.renew_seconds, timing.retry_seconds) == (6, 4, 1)
    with pytest.raises(ValueError, match="at least 3 seconds"):
        lease_timing(2)
