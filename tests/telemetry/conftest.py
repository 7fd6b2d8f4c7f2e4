"""Agents streaming into the in-process control plane, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.controlplane_fixtures import Running
from tests.telemetry_support import Agents


@pytest.fixture
async def agents(
    control_plane: Running,
) -> AsyncIterator[Agents]:
    running: Agents = []
    yield running
    for stop, task in running:
        stop.set()
        await task
