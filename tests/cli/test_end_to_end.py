"""flarectl as its own process, the way people run it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.support import EXAMPLES, Cli, run_flarectl
from tests.controlplane_process import free_port


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    result = run_flarectl(["--help"], {"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for command in ("apply", "plan", "get", "list", "watch", "cancel", "offers", "token"):
        assert f" {command} " in text
    for code in range(7):
        assert f"{code} " in text.split("Exit codes:", 1)[1]
    assert "5 the control plane cannot be reached" in text


def test_apply_then_get_as_processes(cli: Cli) -> None:
    env = {k: v for k, v in cli.environ().items() if v is not None}
    applied = run_flarectl(["apply", "-f", str(EXAMPLES / "inference-service.json")], env)
    assert applied.returncode == 0, applied.stderr
    name = applied.stdout.split()[1]
    assert name.startswith(f"tenants/{cli.tenant}/intents/llm-inference-")

    watched = run_flarectl(["watch", name, "--until", "running", "--timeout", "30s"], env)
    assert watched.returncode == 0, watched.stderr
    got = run_flarectl(["get", name.rsplit("/", 1)[1], "-o", "json"], env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["endpoint"]


def test_a_server_that_is_down_as_a_process(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run_flarectl(["list"], {"HOME": str(tmp_path), "FLARE_ADDRESS": address})
    assert result.returncode == 5
    assert f"cannot reach the FLARE control plane at {address}" in result.stderr
    assert result.stdout == ""
