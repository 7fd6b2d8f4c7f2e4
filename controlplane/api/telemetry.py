"""TelemetryService: agents' streams in (StreamTelemetry, or many of them over
a relay's RelayTelemetry), live GPU state out (WatchUtilization, scoped to the
caller's tenant)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from controlplane.api.interceptor import principal
from controlplane.api.relay import Admit, admitted, serve_relay
from controlplane.errors import PermissionDenied, Unauthenticated
from controlplane.telemetry.ingest import Ingest, Received
from controlplane.telemetry.watch import Selector, Watchers
from flare import tls
from flare.v1 import telemetry_service_pb2

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TelemetryServicer:
    def __init__(self, ingest: Ingest, watchers: Watchers, *, need_certificates: bool) -> None:
        self._ingest = ingest
        self._watchers = watchers
        # Mutual TLS for agents: a stream needs a client certificate naming its node.
        self._need_certificates = need_certificates

    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[Received],
        context: Context,
    ) -> AsyncIterator[telemetry_service_pb2.StreamTelemetryResponse]:
        if self._need_certificates:
            request_iterator = admitted(request_iterator, _node_named_by(tls.client_names(context)))
        async for response in self._ingest.serve(request_iterator):
            yield response

    async def RelayTelemetry(  # noqa: N802
        self,
        request_iterator: AsyncIterator[telemetry_service_pb2.RelayTelemetryRequest],
        context: Context,
    ) -> AsyncIterator[telemetry_service_pb2.RelayTelemetryResponse]:
        admit = None
        if self._need_certificates:
            admit = _cluster_named_by(tls.client_names(context))
        async for response in serve_relay(self._ingest, request_iterator, admit):
            yield response

    async def WatchUtilization(  # noqa: N802
        self, request: telemetry_service_pb2.WatchUtilizationRequest, context: Context
    ) -> AsyncIterator[telemetry_service_pb2.WatchUtilizationResponse]:
        caller = principal()
        selector = Selector.of(request, None if caller.is_admin else caller.tenant)
        async for response in self._watchers.watch(selector):
            yield response


def _node_named_by(names: frozenset[str]) -> Admit:
    """Admits a stream whose hello speaks for a node the client certificate names (so an
    agent can speak only for its own node)."""
    _require_certificate(names)

    def admit(first: Received) -> None:
        node = first.message.inventory.node
        if node not in names:
            raise PermissionDenied(
                f"the client certificate names {', '.join(sorted(names))}, not node {node!r}"
            )

    return admit


def _cluster_named_by(names: frozenset[str]) -> Admit:
    """Admits a relayed stream whose hello speaks for a node of the cluster the relay's
    client certificate names."""
    _require_certificate(names)

    def admit(first: Received) -> None:
        inventory = first.message.inventory
        cluster = inventory.cluster or inventory.provider  # as the node's key has it
        if cluster not in names:
            raise PermissionDenied(
                f"the relay's client certificate names {', '.join(sorted(names))}, "
                f"not cluster {cluster!r}"
            )

    return admit


def _require_certificate(names: frozenset[str]) -> None:
    if not names:
        raise Unauthenticated(
            "agents and relays must stream to the agent port (--agent-listen) "
            "with a client certificate"
        )


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
        "RelayTelemetry": grpc.stream_stream_rpc_method_handler(
            servicer.RelayTelemetry,
            request_deserializer=telemetry_service_pb2.RelayTelemetryRequest.FromString,
            response_serializer=telemetry_service_pb2.RelayTelemetryResponse.SerializeToString,
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
