"""The seeds' REST paths, transcoded onto the gRPC methods."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.intents import SEED_INFERENCE, SEED_TRAINING


async def call(
    cp: Running, method: str, path: str, body: Any = None, token: str | None = "admin"
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {cp.admin_token}"} if token == "admin" else {}
    data = json.dumps(body) if body is not None else None
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cp.rest_url + path, data=data, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text() or "{}")


async def test_the_seeds_curl_examples_work_verbatim(control_plane: Running) -> None:
    status, created = await call(control_plane, "POST", "/api/v1/intents", SEED_TRAINING)
    assert status == 200, created
    intent = created["intent"]
    assert intent["objective"] == "OBJECTIVE_COST_MINIMIZATION"
    assert intent["workload"]["resources"]["gpu"] == {"model": "nvidia-a100", "count": 4}
    status, created_inference = await call(control_plane, "POST", "/api/v1/intents", SEED_INFERENCE)
    assert status == 200, created_inference
    constraints = created_inference["intent"]["constraints"]
    assert constraints["max_hourly_cost"] == {"currency_code": "EUR", "amount": "5"}

    intent_id = intent["name"].rsplit("/", 1)[1]
    for _ in range(100):
        status, got = await call(control_plane, "GET", f"/api/v1/intents/{intent_id}")
        if got["intent"]["state"] == "STATE_RUNNING":
            break
        await asyncio.sleep(0.02)
    assert got["intent"]["placement"]["provider"] == "eu-cheap"
    status, full = await call(control_plane, "GET", f"/api/v1/{intent['name']}")
    assert status == 200 and full["intent"]["name"] == intent["name"]

    status, listed = await call(
        control_plane, "GET", "/api/v1/intents?states=STATE_RUNNING&page_size=10"
    )
    assert status == 200 and intent["name"] in [i["name"] for i in listed["intents"]]

    status, cancelled = await call(control_plane, "DELETE", f"/api/v1/intents/{intent_id}")
    assert status == 200 and cancelled["intent"]["state"] in ("STATE_CANCELLING", "STATE_CANCELLED")


async def test_errors_use_the_google_json_shape(control_plane: Running) -> None:
    bad = {
        "intent": {
            "objective": "Cost_Minimization",
            "workload": {
                "type": "job",
                "name": "x",
                "image": "i",
                "resources": {"gpu": {"model": "h10"}},
            },
        }
    }
    status, body = await call(control_plane, "POST", "/api/v1/intents", bad)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    bad_request = next(d for d in body["error"]["details"] if d["@type"].endswith("BadRequest"))
    assert bad_request["field_violations"][0]["field"] == "intent.workload.resources.gpu.model"
    status, body = await call(
        control_plane, "POST", "/api/v1/intents", {"intent": {"objective": "Cheapest"}}
    )
    assert status == 400 and "intent.objective" in body["error"]["message"]
    status, body = await call(control_plane, "GET", "/api/v1/intents", token=None)
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    status, body = await call(control_plane, "GET", "/api/v1/intents/missing")
    assert status == 404
    status, body = await call(control_plane, "GET", "/api/v1/nothing-here")
    assert status == 404
    status, body = await call(control_plane, "GET", "/api/v1/intents?bogus=1")
    assert status == 400


async def test_resources_and_tokens_paths(control_plane: Running) -> None:
    status, offers = await call(
        control_plane, "GET", "/api/v1/resources?gpu.model=nvidia-a100&constraints.location=EU"
    )
    assert status == 200
    assert {o["provider"] for o in offers["offers"]} == {"eu-cheap", "eu-fast"}
    assert offers["offers"][0]["provider"] == "eu-cheap"  # cheapest first
    status, created = await call(
        control_plane,
        "POST",
        "/api/v1/auth/tokens",
        {"token": {"display_name": "ci", "scopes": ["offers:read"]}},
    )
    assert status == 200 and created["secret"].startswith("flr.")
    token_id = created["token"]["name"].rsplit("/", 1)[1]
    status, listed = await call(control_plane, "GET", "/api/v1/auth/tokens")
    assert created["token"]["name"] in [t["name"] for t in listed["tokens"]]
    status, revoked = await call(control_plane, "DELETE", f"/api/v1/auth/tokens/{token_id}")
    assert status == 200 and "revoke_time" in revoked["token"]


async def test_watch_streams_newline_delimited_json(control_plane: Running) -> None:
    status, created = await call(control_plane, "POST", "/api/v1/intents", SEED_TRAINING)
    assert status == 200
    intent_id = created["intent"]["name"].rsplit("/", 1)[1]
    headers = {"Authorization": f"Bearer {control_plane.admin_token}"}
    states = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{control_plane.rest_url}/api/v1/intents/{intent_id}:watch", headers=headers
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        async for line in response.content:
            event = json.loads(line)
            states.append(event["intent"]["state"])
            if states[-1] == "STATE_RUNNING":
                break
    assert states[-1] == "STATE_RUNNING"
    assert len(states) == len(set(states))


async def raw(cp: Running, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {cp.admin_token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(cp.rest_url + "/api/v1/intents", data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text() or "{}")


async def test_bodies_the_fuzzing_found_are_refused_with_a_reason(control_plane: Running) -> None:
    depth = 50_000
    for body, status, message in (
        (b'{"intent": "\\ud800"}', 400, "holds an unpaired surrogate"),
        (b'{"intent": {"objective": "\\udfff"}}', 400, "holds an unpaired surrogate"),
        (b'{"intent":' * depth + b"{}" + b"}" * depth, 400, "nests too deeply"),
        (b"[" * depth + b"]" * depth, 400, "nests too deeply"),
        (b'{"x": "' + b"y" * (4 * 2**20) + b'"}', 413, "the body is larger than 4 MiB"),
    ):
        answered, document = await raw(control_plane, body)
        assert (answered, message in json.dumps(document)) == (status, True), document


async def test_a_request_aiohttp_cannot_parse_is_answered_400_and_not_logged_as_an_error(
    control_plane: Running, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": "Bearer " + "x" * 10_000}
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        async with (
            aiohttp.ClientSession() as session,
            session.get(control_plane.rest_url + "/api/v1/intents", headers=headers) as response,
        ):
            assert response.status == 400
        await asyncio.sleep(0.1)
    assert [r for r in caplog.records if r.name == "aiohttp.server"] == []


async def test_a_yaml_body_is_read_like_json_and_yaml_aliases_are_refused(
    control_plane: Running,
) -> None:
    headers = {
        "Authorization": f"Bearer {control_plane.admin_token}",
        "Content-Type": "application/yaml",
    }
    created = (
        "intent:\n  objective: Cost_Minimization\n  workload:\n    type: job\n"
        "    name: yaml-job\n    image: busybox\n"
        "    resources: {gpu: {model: nvidia-a100, count: 1}}\n"
    )
    aliased = "intent: &x {workload: *x}\n"
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(control_plane.rest_url + "/api/v1/intents", data=created) as reply:
            body = await reply.json()
            assert reply.status == 200, body
            assert body["intent"]["workload"]["resources"]["gpu"] == {
                "model": "nvidia-a100",
                "count": 1,
            }
        async with session.post(control_plane.rest_url + "/api/v1/intents", data=aliased) as reply:
            body = await reply.json()
            assert reply.status == 400
            violations = body["error"]["details"][0]["field_violations"]
            assert violations[0]["field"] == "body"
            assert "aliases" in violations[0]["description"]


async def test_utilization_streams_over_rest(control_plane: Running) -> None:
    headers = {"Authorization": f"Bearer {control_plane.admin_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(control_plane.rest_url + "/api/v1/utilization") as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/x-ndjson"
        first = json.loads(await reply.content.readline())
        assert first["type"] == "WATCH_EVENT_TYPE_SNAPSHOT"


async def test_the_console_can_be_turned_off(tmp_path: Path, federation_file: Path) -> None:
    for console, status in ((True, 200), (False, 404)):
        settings = plane_settings(
            tmp_path / "data",
            http_listen="127.0.0.1:0",
            federation_file=federation_file,
            console=console,
        )
        async with (
            serving(settings) as running,
            aiohttp.ClientSession() as session,
            session.get(running.rest_url + "/console/") as reply,
        ):
            assert reply.status == status
