"""Tokens, and the exit codes of failures: bad token (4), server down (5),
invalid input (2), a state that forbids the request (6)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from controlplane.api.status import to_grpc_status
from controlplane.errors import FailedPrecondition
from flare.v1 import intent_service_pb2
from tests.cli.support import EXAMPLES, Cli, explain, new_tenant, properties
from tests.controlplane_process import free_port

TRAINING = EXAMPLES / "training-4xa100.json"


def test_a_bad_token_is_exit_code_4(cli: Cli) -> None:
    for token in ("not-a-token", "flr.default.nosuchtoken.secret"):
        result = cli.with_token(token).run("list")
        assert result.exit_code == 4, explain(result)
        assert result.stderr.startswith("error: UNAUTHENTICATED: ")
        assert "  token from FLARE_TOKEN" in result.stderr


def test_no_token_at_all_is_exit_code_4_with_a_hint(cli: Cli) -> None:
    result = cli.with_token(None).run("list")
    assert result.exit_code == 4, explain(result)
    assert result.stderr.splitlines() == [
        "error: UNAUTHENTICATED: missing bearer token: send 'authorization: Bearer <token>'",
        "  no token given: pass --token, set FLARE_TOKEN or a config file",
    ]


def test_a_server_that_is_down_is_exit_code_5_naming_the_address(cli: Cli) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = cli.run("list", "--address", address)
    assert result.exit_code == 5, explain(result)
    first, hint = result.stderr.splitlines()
    assert first.startswith(
        f"error: UNAVAILABLE: cannot reach the FLARE control plane at {address} ("
    )
    assert hint.startswith("  address from --address;")

    from_env = cli.run("offers", env={"FLARE_ADDRESS": address})
    assert from_env.exit_code == 5
    assert address in from_env.stderr
    assert "address from FLARE_ADDRESS" in from_env.stderr


def test_token_create_list_and_revoke(admin_cli: Cli) -> None:
    tenant = new_tenant()
    created = admin_cli.json(
        "token",
        "create",
        "--tenant",
        tenant,
        "--name",
        "ci pipeline",
        "--scope",
        "intents:read",
        "--scope",
        "offers:read",
        "--ttl",
        "24h",
    )
    token, secret = created["token"], created["secret"]
    assert token["name"].startswith(f"tenants/{tenant}/tokens/")
    assert token["display_name"] == "ci pipeline"
    assert token["scopes"] == ["intents:read", "offers:read"]
    expires = datetime.fromisoformat(token["expire_time"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=5)
    assert secret.startswith(f"flr.{tenant}.")

    listed = admin_cli.json("token", "list", "--tenant", tenant)["tokens"]
    assert [t["name"] for t in listed] == [token["name"]]
    assert "secret" not in listed[0]
    table = admin_cli.ok("token", "list", "--tenant", tenant).stdout
    assert token["name"].rsplit("/", 1)[1] in table
    assert "intents:read, offers:read" in table

    # The new token works for what its scopes allow, and only that.
    user = admin_cli.with_token(secret)
    assert user.json("list") == {"intents": []}
    assert user.json("offers", "--limit", "1")["offers"]
    denied = user.run("apply", "-f", str(TRAINING))
    assert denied.exit_code == 4, explain(denied)
    assert denied.stderr.splitlines()[0] == (
        "error: PERMISSION_DENIED: this token lacks the intents:write scope"
    )

    revoked = admin_cli.ok("token", "revoke", token["name"])
    assert revoked.stdout.strip() == f"token {token['name']} revoked"
    after = user.run("list")
    assert after.exit_code == 4, explain(after)
    assert after.stderr.splitlines()[0] == "error: UNAUTHENTICATED: token revoked"

    assert admin_cli.json("token", "list", "--tenant", tenant) == {"tokens": []}
    everything = admin_cli.json("token", "list", "--tenant", tenant, "--all")["tokens"]
    assert everything[0]["name"] == token["name"]
    assert "revoke_time" in everything[0]
    # Revoking twice is not an error.
    admin_cli.ok("token", "revoke", token["name"])


def test_token_create_prints_the_secret_once(admin_cli: Cli) -> None:
    result = admin_cli.ok("token", "create", "--tenant", new_tenant(), "--name", "laptop")
    shown = properties(result.stdout)
    assert shown["display name"] == "laptop"
    assert set(shown["scopes"].split(", ")) == {
        "intents:read",
        "intents:write",
        "intents:delete",
        "offers:read",
    }
    assert shown["expires"] == "never"
    secrets = [line for line in result.stdout.splitlines() if line.startswith("secret: flr.")]
    assert len(secrets) == 1
    assert "not shown again" in result.stderr


def test_a_user_cannot_grant_scopes_it_lacks(cli: Cli) -> None:
    result = cli.run("token", "create", "--scope", "admin")
    assert result.exit_code == 4, explain(result)
    assert "PERMISSION_DENIED" in result.stderr


def test_revoking_an_unknown_token_is_exit_code_3(admin_cli: Cli) -> None:
    result = admin_cli.run("token", "revoke", "no-such-token")
    assert result.exit_code == 3, explain(result)
    assert result.stderr.startswith("error: NOT_FOUND: ")


def test_an_invalid_intent_is_exit_code_2_with_every_field_path(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "objective: cost_minimization\n"
        "workload:\n"
        "  type: job\n"
        "  name: Not_A_Label\n"
        "  image: pytorch/pytorch:2.4.0\n"
        "  resources:\n"
        "    gpu: {model: nvidia-h100, count: -1}\n"
    )
    result = cli.run("apply", "-f", str(bad))
    assert result.exit_code == 2, explain(result)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: INVALID_ARGUMENT: ")
    assert "  intent.workload.resources.gpu.count: -1 is not between 1 and 1024" in lines
    assert any(line.startswith("  intent.workload.name: 'Not_A_Label'") for line in lines)
    # plan and --dry-run report the same problems.
    for args in (("plan", "-f", str(bad)), ("apply", "--dry-run", "-f", str(bad))):
        again = cli.run(*args)
        assert again.exit_code == 2
        assert "  intent.workload.resources.gpu.count: -1 is not between 1 and 1024" in (
            again.stderr.splitlines()
        )
    assert cli.json("list") == {"intents": []}


def test_shorthand_the_dialect_cannot_read_is_exit_code_2_before_any_call(
    cli: Cli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"intent": {"objective": "Cheapest", "workload": {"type": "job", "name": "x",'
        ' "image": "y", "env": ["NOVALUE"]}, "constraints": {"max_hourly_cost": "five euros"}}}'
    )
    # No server is needed to find these: the address points nowhere.
    result = cli.run("apply", "-f", str(bad), "--address", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2, explain(result)
    assert result.stderr.splitlines() == [
        f"error: {bad}: invalid intent",
        "  intent.objective: 'Cheapest' is not one of: cost_minimization, "
        "performance_maximization, latency_minimization, energy_efficiency, "
        "balanced_optimization",
        "  intent.workload.env[0]: 'NOVALUE' is not NAME=value",
        "  intent.constraints.max_hourly_cost: 'five euros' is not an amount with a currency, "
        "such as '5 EUR'",
    ]


def test_unreadable_or_malformed_files_are_exit_code_2(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = cli.run("apply", "-f", str(missing))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {missing}: no such file"

    broken = tmp_path / "broken.yaml"
    broken.write_text("objective: cost_minimization\n  workload: [\n")
    result = cli.run("plan", "-f", str(broken))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {broken}: not valid YAML: ")
    assert "line 2" in result.stderr

    result = cli.run("apply", "-f", "-", stdin='{"intent": {"objective": }')
    assert result.exit_code == 2
    assert result.stderr.startswith("error: <stdin>: not valid JSON: Expecting value at line 1")

    result = cli.run("apply", "-f", "-", stdin="- just\n- a list\n")
    assert result.exit_code == 2
    assert "expected an intent" in result.stderr

    result = cli.run("apply", "-f", "-", stdin='{"objective": 1, "workload": {"gpus": 2}}')
    assert result.exit_code == 2
    assert 'has no field named "gpus"' in result.stderr


def _refuse_cancel(
    request: intent_service_pb2.CancelIntentRequest, context: grpc.ServicerContext
) -> intent_service_pb2.CancelIntentResponse:
    """CancelIntent of a fake service whose intents have all succeeded: it
    answers with the status the control plane sends (same mapping code)."""
    error = FailedPrecondition("cannot cancel an intent that has succeeded", subject=request.name)
    context.abort_with_status(to_grpc_status(error))
    raise AssertionError("abort_with_status returns only by raising")


def test_failed_precondition_is_exit_code_6(cli: Cli) -> None:
    """No simulated job finishes by itself, so a real control plane cannot be
    brought to refuse a cancel; a fake service sends the same status."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        _refuse_cancel,
        request_deserializer=intent_service_pb2.CancelIntentRequest.FromString,
        response_serializer=intent_service_pb2.CancelIntentResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("flare.v1.IntentService", {"CancelIntent": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = cli.run("cancel", "done-job", "--address", f"127.0.0.1:{port}")
    finally:
        server.stop(None)
    assert result.exit_code == 6, explain(result)
    assert result.stderr.splitlines() == [
        "error: FAILED_PRECONDITION: cannot cancel an intent that has succeeded"
    ]
