"""TelemetryService: agents' streams in (StreamTelemetry), live GPU state out
(WatchUtilization, scoped to the caller's tenant)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from controlplane.api.interceptor import principal
from controlplane.telemetry.ingest import Ingest, Received
from controlplane.telemetry.watch import Selector, Watchers
from flare.v1 import telemetry_service_pb2

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TelemetryServicer:
    def __init__(self, ingest: Ingest, watchers: Watchers) -> None:
        self._ingest = ingest
        self._watchers = watchers

    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[Received],
        context: Context,
    ) -> AsyncIterator[telemetry_service_pb2.StreamTelemetryResponse]:
        async for response in self._ingest.serve(request_iterator):
            yield response

    async def WatchUtilization(  # noqa: N802
        self, request: telemetry_service_pb2.WatchUtilizationRequest, context: Context
    ) -> AsyncIterator[telemetry_service_pb2.WatchUtilizationResponse]:
        caller = principal()
        selector = Selector.of(request, None if caller.is_admin else caller.tenant)
        async for response in self._watchers.watch(selector):
            yield response


def add_to_server(servicer: TelemetryServicer, server: grpc.aio.Server) -> None:
    """Registers the service with one difference from the generated code: agents'
    messages arrive as Received (bytes and parsed message), for the journal."""
    service = telemetry_service_pb2.DESCRIPTOR.services_by_name["TelemetryService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "StreamTelemetry": grpc.stream_stream_rpc_method_handler(
            servicer.StreamTelemetry,
            request_deserializer=Received,
            response_serializer=telemetry_service_pb2.StreamTelemetryResponse.SerializeToString,
        ),
        "WatchUtilization": grpc.unary_stream_rpc_method_handler(
            servicer.WatchUtilization,
            request_deserializer=telemetry_service_pb2.WatchUtilizationRequest.FromString,
            response_serializer=telemetry_service_pb2.WatchUtilizationResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
