"""apply, plan, get, list, cancel against a real control plane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from flare.v1 import intent_pb2
from tests.cli.support import EXAMPLES, Cli, properties, table_rows

TRAINING = EXAMPLES / "training-4xa100.json"
INFERENCE = EXAMPLES / "inference-service.json"
UNPLACEABLE = EXAMPLES / "unplaceable.yaml"


@pytest.mark.parametrize(
    ("example", "workload", "provider"),
    [
        (TRAINING, "gpu-training", None),
        # The only EU A100 within 50 ms at 99.9% availability and the lowest latency.
        (INFERENCE, "llm-inference", "rhein-compute"),
    ],
)
def test_the_seeds_intents_are_created_and_run(
    cli: Cli, example: Path, workload: str, provider: str | None
) -> None:
    result = cli.ok("apply", "-f", str(example))
    line = result.stdout.strip()
    assert line.startswith(f"intent tenants/{cli.tenant}/intents/{workload}-")
    assert "created" in line
    name = line.split()[1]

    watched = cli.wait_for(name, "running")
    states = [row.split()[2] for row in watched.stdout.splitlines()[1:]]
    assert states[-1] == "running"

    intent = cli.get(name)
    assert intent["state"] == "STATE_RUNNING"
    assert intent["workload"]["name"] == workload
    assert intent["placement"]["gpu_model"] == "nvidia-a100"
    if provider:
        assert intent["placement"]["provider"] == provider
    reasons = [change["reason"] for change in intent["history"]]
    assert reasons[0] == "Created"
    assert "Placed" in reasons


def test_the_inference_seed_keeps_its_seed_values(cli: Cli) -> None:
    intent = cli.apply(INFERENCE)
    workload = intent["workload"]
    assert intent["objective"] == "OBJECTIVE_LATENCY_MINIMIZATION"
    assert workload["type"] == "WORKLOAD_TYPE_SERVICE"
    assert workload["env"] == [
        {"name": "MODEL_ID", "value": "meta-llama/Llama-2-7b-chat-hf"},
        {"name": "CUDA_VISIBLE_DEVICES", "value": "0"},
    ]
    assert workload["ports"] == [
        {
            "port": 8000,
            "protocol": "PROTOCOL_TCP",
            "expose": True,
            "domain": "llm-api.mycompany.com",
        }
    ]
    assert workload["storage"]["volumes"][0]["type"] == "VOLUME_TYPE_PERSISTENT"
    assert intent["constraints"]["max_hourly_cost"] == {"currency_code": "EUR", "amount": "5"}
    assert intent["sla"] == {"availability": 99.9, "max_interruption_time": "120s"}


def test_applying_the_same_file_again_returns_the_same_intent(cli: Cli) -> None:
    first = cli.ok("apply", "-f", str(TRAINING)).stdout
    second = cli.ok("apply", "-f", str(TRAINING)).stdout
    name = first.split()[1]
    assert "created" in first
    assert second.startswith(f"intent {name} unchanged")

    # The same intent in another layout (YAML on stdin, bare, no wrapper) is the same intent.
    bare = json.loads(TRAINING.read_text())["intent"]
    third = cli.apply("-", stdin=yaml.safe_dump(bare))
    assert third["name"] == name

    intents = cli.json("list")["intents"]
    assert [i["name"] for i in intents] == [name]


def test_a_new_request_id_or_intent_id_creates_another_intent(cli: Cli) -> None:
    first = cli.apply(TRAINING)
    other = cli.apply(TRAINING, "--request-id", "second-run")
    named = cli.apply(TRAINING, "--id", "nightly-training")
    assert named["name"] == cli.intent_name("nightly-training")
    assert len({first["name"], other["name"], named["name"]}) == 3
    again = cli.apply(TRAINING, "--id", "nightly-training")
    assert again["name"] == named["name"]
    assert len(cli.json("list")["intents"]) == 3


def test_dry_run_validates_and_stores_nothing(cli: Cli) -> None:
    result = cli.ok("apply", "-f", str(INFERENCE), "--dry-run")
    assert "is valid (dry run: nothing was stored)" in result.stdout
    assert cli.json("list") == {"intents": []}


def test_plan_ranks_candidates_and_explains_rejections(cli: Cli) -> None:
    result = cli.ok("plan", "-f", str(TRAINING))
    output = result.stdout
    assert output.splitlines()[0].startswith("objective: cost, offers considered: ")
    header, *rows = table_rows(output, "candidates")
    assert header == ["RANK", "PROVIDER", "NODE", "REGION", "GPU", "PRICE/H", "SCORE", "COST"]
    assert [row[0] for row in rows] == [str(rank) for rank in range(1, len(rows) + 1)]
    fitting = cli.json("offers", "--gpu", "nvidia-a100", "--count", "4", "--available")
    assert len(rows) == min(5, len(fitting["offers"]))
    assert all(row[4] == "nvidia-a100 x4" for row in rows)
    rejected = table_rows(output, "rejected")
    assert rejected[0] == ["REASON", "MESSAGE", "OFFERS"]
    assert rejected[1][:2] == ["gpu_model", "not nvidia-a100"]

    plan = cli.json("plan", "-f", str(TRAINING))
    scores = [candidate.get("score", 0.0) for candidate in plan["candidates"]]
    assert scores == sorted(scores, reverse=True)
    providers = [candidate["placement"]["provider"] for candidate in plan["candidates"]]
    assert [row[1] for row in rows] == providers
    # Every offer that is not an A100 is rejected for its model.
    offers = cli.json("offers")
    a100s = cli.json("offers", "--gpu", "nvidia-a100")
    counts = {r["reason"]: r["count"] for r in plan["rejections"]}
    assert counts["gpu_model"] == offers["total_offers"] - len(a100s["offers"])
    # Planning stores nothing.
    assert cli.json("list") == {"intents": []}


def test_plan_top_limits_the_candidates(cli: Cli) -> None:
    plan = cli.json("plan", "-f", str(TRAINING), "--top", "2")
    assert [c["rank"] for c in plan["candidates"]] == [1, 2]


def test_list_filters_by_state_and_follows_pages(cli: Cli) -> None:
    running = cli.apply(TRAINING)["name"]
    queued = cli.apply(UNPLACEABLE)["name"]
    cli.wait_for(running, "running")
    cli.wait_for(queued, "queued")

    only_running = cli.json("list", "--state", "RUNNING")["intents"]
    assert [i["name"] for i in only_running] == [running]
    table = cli.ok("list", "--state", "queued").stdout
    assert queued.rsplit("/", 1)[1] in table
    assert running.rsplit("/", 1)[1] not in table
    assert " queued " in table
    both = cli.json("list", "--state", "running", "--state", "queued")["intents"]
    assert {i["name"] for i in both} == {running, queued}
    assert cli.json("list", "--state", "cancelled") == {"intents": []}

    # Newest first, one intent per page, every page followed.
    paged = cli.json("list", "--page-size", "1")["intents"]
    assert [i["name"] for i in paged] == [queued, running]
    assert [i["name"] for i in cli.json("list", "--limit", "1")["intents"]] == [queued]


def test_list_rejects_an_unknown_state(cli: Cli) -> None:
    result = cli.run("list", "--state", "sleeping")
    assert result.exit_code == 2
    assert "'sleeping' is not one of: pending, planning, queued" in result.stderr


def test_get_by_id_and_by_full_name(cli: Cli) -> None:
    created = cli.apply(TRAINING, "--id", "by-name")
    assert created["name"] == cli.intent_name("by-name")
    by_id = cli.get("by-name")
    by_name = cli.get(cli.intent_name("by-name"))
    assert by_id["name"] == by_name["name"] == created["name"]
    assert by_id["uid"] == by_name["uid"] == created["uid"]

    shown = properties(cli.ok("get", "by-name").stdout)
    assert shown["name"] == created["name"]
    assert shown["objective"] == "cost"
    assert shown["workload"] == "job gpu-training (pytorch/pytorch:2.1.0-cuda12.1-cudnn8-devel)"
    assert shown["gpu"] == "nvidia-a100 x4"


def test_json_and_yaml_output_parse_back(cli: Cli) -> None:
    name = cli.apply(INFERENCE)["name"]
    cli.wait_for(name, "running")
    as_json = json.loads(cli.ok("get", name, "-o", "json").stdout)
    as_yaml = yaml.safe_load(cli.ok("get", name, "-o", "yaml").stdout)
    # Usage is as of each read (time running, cost so far): it moves between the two.
    assert as_json.pop("usage")["cost_so_far"]["currency_code"] == "EUR"
    assert as_yaml.pop("usage")["running_time"].endswith("s")
    assert as_json == as_yaml
    # Protobuf JSON with the proto field names.
    assert "state_message" in as_json
    assert "stateMessage" not in as_json
    intent = json_format.ParseDict(as_json, intent_pb2.Intent())
    assert intent.state == intent_pb2.STATE_RUNNING
    assert intent.workload.resources.gpu.model == "nvidia-a100"

    listed = yaml.safe_load(cli.ok("list", "-o", "yaml").stdout)
    assert [i["name"] for i in listed["intents"]] == [name]

    # What get prints can be applied again: the same intent, not a second one.
    again = cli.apply("-", stdin=cli.ok("get", name, "-o", "yaml").stdout)
    assert again["name"] == name


def test_cancel_releases_the_intent_and_cancelling_again_is_fine(cli: Cli) -> None:
    name = cli.apply(TRAINING)["name"]
    cli.wait_for(name, "running")

    result = cli.ok("cancel", name.rsplit("/", 1)[1], "--reason", "no longer needed")
    assert result.stdout.strip() in (f"intent {name} cancelling", f"intent {name} cancelled")
    cli.wait_for(name, "cancelled")

    intent = cli.get(name)
    assert intent["state"] == "STATE_CANCELLED"
    messages = {change["to_state"]: change["message"] for change in intent["history"]}
    assert messages["STATE_CANCELLING"] == "no longer needed"

    twice = cli.ok("cancel", name)
    assert twice.stdout.strip() == f"intent {name} cancelled"
    assert cli.json("list", "--state", "cancelled")["intents"][0]["name"] == name


def test_an_unknown_intent_is_exit_code_3(cli: Cli) -> None:
    name = cli.intent_name("no-such-intent")
    for command in ("get", "cancel", "watch"):
        result = cli.run(command, "no-such-intent")
        assert result.exit_code == 3, command
        assert result.stderr.splitlines()[0] == f"error: NOT_FOUND: {name} not found"


def test_the_unplaceable_example_stays_queued_and_says_why(cli: Cli) -> None:
    name = cli.apply(UNPLACEABLE)["name"]
    cli.wait_for(name, "queued")

    table = cli.ok("get", name).stdout
    assert properties(table)["state"].startswith("queued: ")
    assert table_rows(table, "rejected")[1] == ["gpu_model", "not amd-mi250x", "16"]

    intent = cli.get(name)
    assert intent["state"] == "STATE_QUEUED"
    assert "placement" not in intent
    assert intent["history"][-1]["reason"] == "NoMatchingOffer"
    rejections = intent["last_plan"]["rejections"]
    assert rejections[0]["reason"] == "gpu_model"
    assert sum(r["count"] for r in rejections) == intent["last_plan"]["offers_considered"]
