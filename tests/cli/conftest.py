"""Fixtures: one real control plane per session, and flarectl as the user of
a fresh tenant per test (so a test sees only its own intents and request ids,
whatever ran before it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import (
    Cli,
    ControlPlane,
    cancel_all,
    create_token,
    new_tenant,
    running_controlplane,
)


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_controlplane(tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(controlplane: ControlPlane, home: Path) -> Iterator[Cli]:
    """flarectl as the user of a new tenant, with the everyday scopes. The
    tenant's intents are cancelled afterwards, to free their GPUs."""
    tenant = new_tenant()
    secret = create_token(controlplane, tenant).secret
    yield Cli(controlplane.address, secret, home, tenant)
    cancel_all(controlplane.address, secret)


@pytest.fixture
def admin_cli(controlplane: ControlPlane, home: Path) -> Cli:
    """flarectl with the bootstrap admin token (tenant "default")."""
    return Cli(controlplane.address, controlplane.admin_token, home)
