"""Bad bytes at every RPC of a real control plane process: random bytes and
mutations of valid requests are answered with a proper status — never INTERNAL
or UNKNOWN — and the server stays up; bad HTTP requests at its REST gateway
are answered below 500. (The fuzzing campaign of the reliability
work sends many more; this keeps the guarantee in every test run.)"""

from __future__ import annotations

import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.outbox import Outbox
from flare.v1 import intent_pb2, intent_service_pb2, offer_service_pb2, token_service_pb2
from tests.api import rest_fuzz
from tests.controlplane_process import ControlPlaneProcess, free_port, running
from tests.intents import SEED_INFERENCE, intent_from
from tests.telemetry_support import inventory

BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FIXTURE = HealthCheck.function_scoped_fixture  # the server is module-scoped on purpose
SEEDS: dict[str, bytes] = {
    "/flare.v1.IntentService/CreateIntent": intent_service_pb2.CreateIntentRequest(
        intent=intent_from(SEED_INFERENCE), request_id="r-1"
    ).SerializeToString(),
    "/flare.v1.IntentService/PlanIntent": intent_service_pb2.PlanIntentRequest(
        intent=intent_from(SEED_INFERENCE)
    ).SerializeToString(),
    "/flare.v1.IntentService/GetIntent": intent_service_pb2.GetIntentRequest(
        name="tenants/default/intents/x"
    ).SerializeToString(),
    "/flare.v1.IntentService/ListIntents": intent_service_pb2.ListIntentsRequest(
        page_size=10, states=[intent_pb2.STATE_RUNNING]
    ).SerializeToString(),
    "/flare.v1.IntentService/CancelIntent": intent_service_pb2.CancelIntentRequest(
        name="tenants/default/intents/x"
    ).SerializeToString(),
    "/flare.v1.OfferService/ListOffers": offer_service_pb2.ListOffersRequest(
        page_size=5
    ).SerializeToString(),
    "/flare.v1.TokenService/CreateToken": token_service_pb2.CreateTokenRequest(
        token=token_service_pb2.Token(scopes=["intents:read"])
    ).SerializeToString(),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    rest = f"127.0.0.1:{free_port()}"
    with running(data, "--sync", "NORMAL", "--http-listen", rest) as process:
        process.rest_url = f"http://{rest}"
        yield process


def http_status(base_url: str, request: rest_fuzz.HttpRequest, token: str) -> int:
    """The status the REST gateway answers `request` with."""
    sent = urllib.request.Request(
        base_url + request.path,
        data=request.body or None,
        method=request.method,
        headers={**request.headers, "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            status: int = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(3)
        if action == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 1:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif data:
            del data[rng.randrange(len(data))]
    return bytes(data)


def call(server: ControlPlaneProcess, method: str, payload: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(server.address) as channel:
        unary: Any = channel.unary_unary(method)
        try:
            unary(
                payload,
                metadata=(("authorization", f"Bearer {server.admin_token}"),),
                timeout=10,
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=st.sampled_from(sorted(SEEDS)), noise=st.binary(max_size=200), seed=st.integers())
def test_no_request_breaks_the_server(
    server: ControlPlaneProcess, method: str, noise: bytes, seed: int
) -> None:
    rng = random.Random(seed)
    for payload in (noise, mutate(SEEDS[method], rng)):
        code = call(server, method, payload)
        assert code not in BROKEN, (method, payload, code)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(noise=st.lists(st.binary(max_size=120), min_size=1, max_size=5), seed=st.integers())
def test_no_agent_stream_breaks_the_server(
    server: ControlPlaneProcess, noise: list[bytes], seed: int
) -> None:
    rng = random.Random(seed)
    box = Outbox(capacity=10)
    hello = box.hello(inventory("fuzzed")).SerializeToString()
    messages = [hello if rng.random() < 0.5 else mutate(hello, rng), *noise]
    with grpc.insecure_channel(server.address) as channel:
        stream: Any = channel.stream_stream("/flare.v1.TelemetryService/StreamTelemetry")
        try:
            for _ in stream(
                iter(messages),
                metadata=(("authorization", f"Bearer {server.admin_token}"),),
                timeout=10,
            ):
                pass
        except grpc.RpcError as error:
            assert error.code() not in BROKEN, (messages, error.code(), error.details())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers())
def test_no_http_request_breaks_the_rest_gateway(server: ControlPlaneProcess, seed: int) -> None:
    request = rest_fuzz.request(random.Random(seed))
    status = http_status(server.rest_url, request, server.admin_token)
    assert status < 500, (request.kind, request.method, request.path[:200], status)


def test_the_server_is_still_serving_after_the_fuzzing(server: ControlPlaneProcess) -> None:
    assert server.process is not None and server.process.poll() is None
    request = intent_service_pb2.ListIntentsRequest(page_size=1).SerializeToString()
    assert call(server, "/flare.v1.IntentService/ListIntents", request) == grpc.StatusCode.OK
