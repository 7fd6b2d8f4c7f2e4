"""TelemetryService. The contract is defined; ingest and WatchUtilization
arrive with the node agent and telemetry work, so both methods say so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from controlplane.errors import Unimplemented
from flare.v1 import telemetry_service_pb2, telemetry_service_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
NOT_YET = "telemetry ingest is not implemented in this release; the agent's stream arrives with it"


class TelemetryServicer(telemetry_service_pb2_grpc.TelemetryServiceServicer):
    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[telemetry_service_pb2.StreamTelemetryRequest],
        context: Context,
    ) -> AsyncIterator[telemetry_service_pb2.StreamTelemetryResponse]:
        raise Unimplemented(NOT_YET)
        yield  # pragma: no cover - makes this an async generator

    async def WatchUtilization(  # noqa: N802
        self, request: telemetry_service_pb2.WatchUtilizationRequest, context: Context
    ) -> AsyncIterator[telemetry_service_pb2.WatchUtilizationResponse]:
        raise Unimplemented(NOT_YET)
        yield  # pragma: no cover
