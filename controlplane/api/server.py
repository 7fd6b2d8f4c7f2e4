"""The gRPC server: FLARE's services, health checking and reflection."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.api.intents import IntentServicer
from controlplane.api.interceptor import AuthInterceptor
from controlplane.api.offers import OfferServicer
from controlplane.api.telemetry import TelemetryServicer
from controlplane.api.telemetry import add_to_server as add_telemetry_to_server
from controlplane.api.tokens import TokenServicer
from controlplane.auth import Authenticator
from controlplane.engine import IntentEngine
from controlplane.federation.port import Federation
from controlplane.store.base import IntentStore, TokenStore
from controlplane.telemetry.ingest import Ingest
from controlplane.telemetry.watch import Watchers
from flare.v1 import (
    intent_pb2,
    intent_service_pb2,
    intent_service_pb2_grpc,
    offer_service_pb2,
    offer_service_pb2_grpc,
    telemetry_service_pb2,
    token_service_pb2,
    token_service_pb2_grpc,
)

SERVICE_NAMES = (
    intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name,
    offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"].full_name,
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    telemetry_service_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def build_server(
    *,
    intents: IntentStore,
    tokens: TokenStore,
    engine: IntentEngine,
    federation: Federation,
    authenticator: Authenticator,
    ingest: Ingest,
    watchers: Watchers,
    usage: Callable[[intent_pb2.Intent], intent_pb2.IntentUsage] | None = None,
    agents_need_certificates: bool = False,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(authenticator)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            # Agents and relays ping an idle connection every 20 s; without this the server
            # would answer pings more often than every 5 min with GOAWAY "too_many_pings".
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    intent_service_pb2_grpc.add_IntentServiceServicer_to_server(
        IntentServicer(intents, engine, usage=usage), server
    )
    offer_service_pb2_grpc.add_OfferServiceServicer_to_server(OfferServicer(federation), server)
    token_service_pb2_grpc.add_TokenServiceServicer_to_server(
        TokenServicer(tokens, authenticator), server
    )
    add_telemetry_to_server(
        TelemetryServicer(ingest, watchers, need_certificates=agents_need_certificates), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server, health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
