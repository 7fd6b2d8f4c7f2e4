"""Helpers for the flarectl tests: a real control plane in a subprocess, and
flarectl run in-process (CliRunner) or as its own process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner, Result

from flare.v1 import (
    intent_service_pb2,
    intent_service_pb2_grpc,
    token_service_pb2,
    token_service_pb2_grpc,
)
from flarectl.main import app
from tests.controlplane_process import ControlPlaneProcess, StartError, free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SMALL_FEDERATION = REPO / "tests" / "data" / "small-federation.json"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
WAIT = "30s"  # --timeout of `flarectl watch --until` in the tests


@dataclass(frozen=True)
class ControlPlane:
    address: str
    admin_token: str
    data_dir: Path
    log_path: Path


@contextlib.contextmanager
def running_controlplane(data_dir: Path, port: int | None = None) -> Iterator[ControlPlane]:
    """`flare-controlplane` on a loopback port, serving until the block ends."""
    server = ControlPlaneProcess(
        data_dir, port or free_port(), ("--federation-file", str(SMALL_FEDERATION))
    )
    try:
        server.start()
    except StartError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield ControlPlane(server.address, server.admin_token, data_dir, server.log_path)
    finally:
        server.stop()


_CELL_GAP = re.compile(r"\s{2,}")


def table_rows(output: str, title: str) -> list[list[str]]:
    """The header and rows of the table printed under `title`, cells split on
    runs of two or more spaces."""
    lines = [line.rstrip() for line in output.splitlines()]
    rows: list[list[str]] = []
    for line in lines[lines.index(title) + 1 :]:
        if not line or line.startswith("─"):
            if rows and not line:
                break
            continue
        if not line.startswith(" ") and rows and len(_CELL_GAP.split(line)) == 1:
            break  # the next table's title
        rows.append(_CELL_GAP.split(line.strip()))
    return rows


def properties(output: str) -> dict[str, str]:
    """The `key  value` lines at the top of `flarectl get` and `token create`."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = _CELL_GAP.split(line.strip(), maxsplit=1)
        if len(parts) != 2 or parts[0].isupper():
            break
        found[parts[0]] = parts[1]
    return found


def explain(result: Result) -> str:
    return (
        f"exit code {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n"
        f"{result.stderr}\n--- exception\n{result.exception!r}"
    )


@dataclass(frozen=True)
class Cli:
    """flarectl, run in-process with CliRunner, as the user of one tenant."""

    address: str
    token: str | None
    home: Path
    tenant: str = "default"

    def environ(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
        environ: dict[str, str | None] = {
            "FLARE_ADDRESS": self.address,
            "FLARE_TOKEN": self.token,
            "FLARE_CONFIG": None,
            "FLARE_DATA_DIR": str(self.home / "no-data-dir"),
            "HOME": str(self.home),
            "COLUMNS": None,
        }
        environ.update(extra or {})
        return environ

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> Result:
        return CliRunner().invoke(app, list(args), input=stdin, env=self.environ(env))

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, explain(result)
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ok(*args, "-o", "json", stdin=stdin).stdout)

    def intent_name(self, intent_id: str) -> str:
        return f"tenants/{self.tenant}/intents/{intent_id}"

    def apply(self, path: Path | str, *extra: str, stdin: str | None = None) -> dict[str, Any]:
        intent: dict[str, Any] = self.json("apply", "-f", str(path), *extra, stdin=stdin)
        return intent

    def get(self, name: str) -> dict[str, Any]:
        intent: dict[str, Any] = self.json("get", name)
        return intent

    def wait_for(self, name: str, state: str) -> Result:
        """`flarectl watch NAME --until STATE`, which must succeed."""
        return self.ok("watch", name, "--until", state, "--timeout", WAIT)

    def with_token(self, token: str | None) -> Cli:
        return Cli(self.address, token, self.home, self.tenant)


def create_token(
    controlplane: ControlPlane, tenant: str, scopes: Sequence[str] = ()
) -> token_service_pb2.CreateTokenResponse:
    """A token in `tenant`, made with the admin token over gRPC directly."""
    with grpc.insecure_channel(controlplane.address) as channel:
        stub = token_service_pb2_grpc.TokenServiceStub(channel)
        response: token_service_pb2.CreateTokenResponse = stub.CreateToken(
            token_service_pb2.CreateTokenRequest(
                parent=f"tenants/{tenant}",
                token=token_service_pb2.Token(display_name="flarectl tests", scopes=scopes),
            ),
            metadata=(("authorization", f"Bearer {controlplane.admin_token}"),),
            timeout=10,
        )
    return response


def cancel_all(address: str, token: str) -> None:
    """Cancels every intent of the token's tenant, so that the next test finds
    the federation's GPUs free again."""
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(address) as channel:
        stub = intent_service_pb2_grpc.IntentServiceStub(channel)
        listed = stub.ListIntents(
            intent_service_pb2.ListIntentsRequest(page_size=1000), metadata=metadata, timeout=10
        )
        for intent in listed.intents:
            with contextlib.suppress(grpc.RpcError):  # already succeeded or failed
                stub.CancelIntent(
                    intent_service_pb2.CancelIntentRequest(name=intent.name),
                    metadata=metadata,
                    timeout=10,
                )


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def run_flarectl(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """flarectl as a process of its own (`python -m flarectl`)."""
    environ = {**os.environ, **env}
    environ.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "flarectl", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
