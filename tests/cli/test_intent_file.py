"""Reading intent files: formats, the seeds' spellings and the request id."""

from __future__ import annotations

import json

import pytest

from flare.v1 import intent_pb2
from flarectl.errors import ExitCode, InputError
from flarectl.intent_file import parse_intent
from tests.cli.support import EXAMPLES

SEED_TRAINING = (EXAMPLES / "training-4xa100.json").read_text()

SAME_AS_YAML = """
# the training seed, bare and in YAML
objective: OBJECTIVE_COST_MINIMIZATION
workload:
  type: WORKLOAD_TYPE_JOB
  name: gpu-training
  image: pytorch/pytorch:2.1.0-cuda12.1-cudnn8-devel
  resources:
    gpu: {model: nvidia-a100, count: 4}
"""


def test_every_example_is_a_valid_intent() -> None:
    files = sorted(EXAMPLES.glob("*.json")) + sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) == 5
    for path in files:
        loaded = parse_intent(str(path), path.read_text())
        assert loaded.intent.objective != intent_pb2.OBJECTIVE_UNSPECIFIED, path
        assert loaded.intent.workload.resources.gpu.count > 0, path


def test_the_seed_spelling_becomes_the_wire_contract() -> None:
    text = (EXAMPLES / "inference-service.json").read_text()
    intent = parse_intent("inference-service.json", text).intent
    assert intent.objective == intent_pb2.OBJECTIVE_LATENCY_MINIMIZATION
    assert intent.workload.type == intent_pb2.WORKLOAD_TYPE_SERVICE
    assert [(e.name, e.value) for e in intent.workload.env] == [
        ("MODEL_ID", "meta-llama/Llama-2-7b-chat-hf"),
        ("CUDA_VISIBLE_DEVICES", "0"),
    ]
    assert intent.workload.ports[0].protocol == intent_pb2.PROTOCOL_TCP
    assert intent.constraints.max_hourly_cost.amount == "5"
    assert intent.constraints.max_hourly_cost.currency_code == "EUR"
    assert intent.sla.availability == pytest.approx(99.9)
    assert intent.sla.max_interruption_time.seconds == 120


def test_wrapped_and_bare_json_and_yaml_are_the_same_intent_and_key() -> None:
    wrapped = parse_intent("a.json", SEED_TRAINING)
    bare = parse_intent("b.json", json.dumps(json.loads(SEED_TRAINING)["intent"]))
    as_yaml = parse_intent("c.yaml", SAME_AS_YAML)
    assert wrapped.intent == bare.intent == as_yaml.intent
    assert wrapped.request_id() == bare.request_id() == as_yaml.request_id()
    assert wrapped.request_id().startswith("flarectl-")


def test_the_request_id_ignores_output_only_fields_but_not_the_intent_id() -> None:
    plain = parse_intent("a.json", SEED_TRAINING)
    data = json.loads(SEED_TRAINING)
    data["intent"].update(name="tenants/x/intents/y", state="STATE_RUNNING", revision="7")
    fetched = parse_intent("b.json", json.dumps(data))
    assert fetched.request_id() == plain.request_id()
    assert plain.request_id("one") != plain.request_id("two") != plain.request_id()
    data["intent"]["workload"]["resources"]["gpu"]["count"] = 8
    assert parse_intent("c.json", json.dumps(data)).request_id() != plain.request_id()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("a: 1\n---\nb: 2\n", "holds 2 YAML documents; an intent file holds exactly one"),
        ('{"intent": {}, "intent_id": "x"}', "unexpected keys next to 'intent': intent_id"),
        ('{"intent": "x"}', "'intent' must be a mapping with objective and workload"),
        ("just text", "expected an intent: a mapping with objective and workload"),
        ('{"objective": ', "not valid JSON: Expecting value at line 1 column 15"),
    ],
)
def test_what_is_not_an_intent(text: str, problem: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_intent("f", text)
    assert raised.value.headline == f"f: {problem}"
    assert raised.value.exit_code == ExitCode.USAGE
