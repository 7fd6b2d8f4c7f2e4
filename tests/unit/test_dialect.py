from __future__ import annotations

from google.protobuf import json_format

from flare.dialect import enum_value_name, normalize
from flare.v1 import intent_pb2
from tests.intents import SEED_INFERENCE


def test_objective_spellings() -> None:
    enum = intent_pb2.Objective.DESCRIPTOR
    for spelling in (
        "Cost_Minimization",
        "cost-minimization",
        "COST_MINIMIZATION",
        "OBJECTIVE_COST_MINIMIZATION",
    ):
        assert enum_value_name(enum, spelling) == "OBJECTIVE_COST_MINIMIZATION"
    assert enum_value_name(enum, "Cheapest") is None
    assert enum_value_name(intent_pb2.WorkloadType.DESCRIPTOR, "batch") == "WORKLOAD_TYPE_JOB"


def test_the_seed_inference_intent_maps_field_by_field() -> None:
    data, violations = normalize(SEED_INFERENCE["intent"], intent_pb2.Intent.DESCRIPTOR)
    assert violations == []
    intent = json_format.ParseDict(data, intent_pb2.Intent())
    assert intent.objective == intent_pb2.OBJECTIVE_LATENCY_MINIMIZATION
    assert intent.workload.type == intent_pb2.WORKLOAD_TYPE_SERVICE
    assert [(e.name, e.value) for e in intent.workload.env] == [
        ("MODEL_ID", "meta-llama/Llama-2-7b-chat-hf"),
        ("CUDA_VISIBLE_DEVICES", "0"),
    ]
    assert intent.workload.ports[0].protocol == intent_pb2.PROTOCOL_TCP
    assert intent.workload.storage.volumes[0].type == intent_pb2.VOLUME_TYPE_PERSISTENT
    assert (
        intent.constraints.max_hourly_cost.amount,
        intent.constraints.max_hourly_cost.currency_code,
    ) == ("5", "EUR")
    assert intent.sla.availability == 99.9
    assert intent.sla.max_interruption_time.seconds == 120


def test_bad_shorthand_is_reported_with_paths() -> None:
    _, violations = normalize(
        {
            "objective": "Fastest",
            "constraints": {"max_hourly_cost": "five"},
            "sla": {"max_interruption_time": "soon"},
            "workload": {"env": ["NOEQUALS"]},
        },
        intent_pb2.Intent.DESCRIPTOR,
    )
    assert sorted(v.field for v in violations) == [
        "constraints.max_hourly_cost",
        "objective",
        "sla.max_interruption_time",
        "workload.env[0]",
    ]


def test_canonical_protobuf_json_passes_unchanged() -> None:
    canonical = {
        "objective": "OBJECTIVE_ENERGY_EFFICIENCY",
        "sla": {"max_interruption_time": "30s"},
        "constraints": {"max_hourly_cost": {"currency_code": "USD", "amount": "2"}},
    }
    data, violations = normalize(canonical, intent_pb2.Intent.DESCRIPTOR)
    assert violations == [] and data == canonical
