"""TelemetryService: agents' streams in (StreamTelemetry). WatchUtilization
arrives with the telemetry work and says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from controlplane.errors import Unimplemented
from controlplane.telemetry.ingest import Ingest
from flare.v1 import telemetry_service_pb2, telemetry_service_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TelemetryServicer(telemetry_service_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[telemetry_service_pb2.StreamTelemetryRequest],
        context: Context,
    ) -> AsyncIterator[telemetry_service_pb2.StreamTelemetryResponse]:
        async for response in self._ingest.serve(request_iterator):
            yield response

    async def WatchUtilization(  # noqa: N802
        self, request: telemetry_service_pb2.WatchUtilizationRequest, context: Context
    ) -> AsyncIterator[telemetry_service_pb2.WatchUtilizationResponse]:
        raise Unimplemented("WatchUtilization is not implemented in this release")
        yield  # pragma: no cover - makes this an async generator
