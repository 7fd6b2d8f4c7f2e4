"""Fixtures that run a real control plane (gRPC server, REST gateway, SQLite
store, local federation) in the test's event loop on free loopback ports."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.app import ControlPlane, Settings
from flare.v1 import (
    intent_service_pb2_grpc,
    offer_service_pb2_grpc,
    token_service_pb2_grpc,
)

TINY_FEDERATION = {
    "providers": [
        {
            "name": "eu-cheap",
            "region": "eu-west-1",
            "country": "IE",
            "currency": "EUR",
            "latency_ms": 40,
            "availability": 99.5,
            "nodes": [
                {
                    "name": "ie-a100",
                    "gpu_model": "nvidia-a100",
                    "gpus": 4,
                    "price_per_gpu_hour": 1.0,
                }
            ],
        },
        {
            "name": "eu-fast",
            "region": "eu-central-1",
            "country": "DE",
            "currency": "EUR",
            "latency_ms": 5,
            "availability": 99.99,
            "nodes": [
                {
                    "name": "de-a100",
                    "gpu_model": "nvidia-a100",
                    "gpus": 4,
                    "price_per_gpu_hour": 2.0,
                }
            ],
        },
        {
            "name": "us-h100",
            "region": "us-east-1",
            "country": "US",
            "currency": "USD",
            "latency_ms": 90,
            "availability": 99.9,
            "nodes": [
                {
                    "name": "us-h100-a",
                    "gpu_model": "nvidia-h100",
                    "gpus": 8,
                    "price_per_gpu_hour": 2.5,
                }
            ],
        },
    ]
}


@dataclass
class Running:
    plane: ControlPlane
    channel: grpc.aio.Channel
    admin_token: str
    rest_url: str

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.plane.metrics_port}/metrics"

    def metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token or self.admin_token}"),)

    @property
    def intents(self) -> intent_service_pb2_grpc.IntentServiceAsyncStub:
        return intent_service_pb2_grpc.IntentServiceStub(self.channel)

    @property
    def offers(self) -> offer_service_pb2_grpc.OfferServiceAsyncStub:
        return offer_service_pb2_grpc.OfferServiceStub(self.channel)

    @property
    def tokens(self) -> token_service_pb2_grpc.TokenServiceAsyncStub:
        return token_service_pb2_grpc.TokenServiceStub(self.channel)


@pytest.fixture
def federation_file(tmp_path: Path) -> Path:
    path = tmp_path / "federation.json"
    path.write_text(json.dumps(TINY_FEDERATION))
    return path


def plane_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of an in-process control plane for a test: gRPC on a free loopback
    port, no REST gateway or metrics unless `changes` ask for them, quick to stop."""
    defaults: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "http_listen": "",
        "metrics_listen": "",
        "synchronous": "NORMAL",
        "grace_seconds": 0.5,
    }
    return Settings(data_dir=data_dir, **{**defaults, **changes})


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Running]:
    """A control plane started with `settings` (SQLite: its admin token from the
    data directory), a channel to it, and both closed afterwards."""
    plane = ControlPlane(settings)
    await plane.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{plane.grpc_port}")
    token = plane.admin_token_path.read_text().strip()
    rest_url = f"http://127.0.0.1:{plane.http_port}" if settings.http_listen else ""
    try:
        yield Running(plane, channel, token, rest_url)
    finally:
        await channel.close()
        await plane.stop()


@pytest.fixture
async def control_plane(tmp_path: Path, federation_file: Path) -> AsyncIterator[Running]:
    settings = plane_settings(
        tmp_path / "data",
        http_listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
        federation_file=federation_file,
        ack_interval_seconds=0.05,
    )
    async with serving(settings) as running:
        yield running
