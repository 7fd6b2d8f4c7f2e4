"""Authentication, authorisation and error mapping for every RPC.

Each method needs one scope (METHOD_SCOPES, the one table of them). The
interceptor checks the bearer token, puts the caller's Principal where the
servicer finds it (`principal()`), and turns domain errors into statuses.
A request that is not a valid protobuf message is INVALID_ARGUMENT, not the
UNKNOWN that gRPC's own deserialisation failure would give. Health checking
and reflection need no token.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from controlplane import auth
from controlplane.api.status import to_grpc_status
from controlplane.errors import FlareError, InvalidArgument
from flare.violation import FieldViolation

log = logging.getLogger(__name__)

METHOD_SCOPES = {
    "/flare.v1.IntentService/CreateIntent": auth.INTENTS_WRITE,
    "/flare.v1.IntentService/PlanIntent": auth.INTENTS_READ,
    "/flare.v1.IntentService/GetIntent": auth.INTENTS_READ,
    "/flare.v1.IntentService/ListIntents": auth.INTENTS_READ,
    "/flare.v1.IntentService/WatchIntent": auth.INTENTS_READ,
    "/flare.v1.IntentService/CancelIntent": auth.INTENTS_DELETE,
    "/flare.v1.IntentService/UpdateIntent": auth.INTENTS_WRITE,
    "/flare.v1.OfferService/ListOffers": auth.OFFERS_READ,
    "/flare.v1.TokenService/CreateToken": auth.TOKENS_MANAGE,
    "/flare.v1.TokenService/ListTokens": auth.TOKENS_MANAGE,
    "/flare.v1.TokenService/RevokeToken": auth.TOKENS_MANAGE,
    "/flare.v1.TelemetryService/StreamTelemetry": auth.TELEMETRY_WRITE,
    "/flare.v1.TelemetryService/RelayTelemetry": auth.TELEMETRY_WRITE,
    "/flare.v1.TelemetryService/WatchUtilization": auth.INTENTS_READ,
}
_PRINCIPAL: contextvars.ContextVar[auth.Principal] = contextvars.ContextVar("principal")


class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # DecodeError, or a wrapper's own parse failure
            return _Malformed(error)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgument(
            [FieldViolation("request", f"not a valid message of this method: {request.error}")]
        )
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def principal() -> auth.Principal:
    """The authenticated caller of the RPC being served."""
    return _PRINCIPAL.get()


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: FlareError) -> None:
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _internal(method: str) -> None:
    log.exception("unexpected error", extra={"method": method})


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: auth.Authenticator) -> None:
        self._authenticator = authenticator

    async def _enter(
        self, context: grpc.aio.ServicerContext[Any, Any], scope: str
    ) -> contextvars.Token[auth.Principal]:
        metadata = dict(context.invocation_metadata() or ())
        value = metadata.get("authorization")
        caller = await self._authenticator.authenticate(value if isinstance(value, str) else None)
        caller.require(scope)
        return _PRINCIPAL.set(caller)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        scope = METHOD_SCOPES.get(method)
        if handler is None or scope is None:
            return handler
        enter = self._enter

        if handler.unary_unary:
            # grpc.aio handlers are coroutine functions; the stubs type them as sync.
            inner_unary: Any = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    token = await enter(context, scope)
                    try:
                        return await inner_unary(_checked(request), context)
                    finally:
                        _PRINCIPAL.reset(token)
                except FlareError as error:
                    await _abort(context, error)
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    _internal(method)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")

            return grpc.unary_unary_rpc_method_handler(
                unary, _tolerant(handler.request_deserializer), handler.response_serializer
            )

        streaming: Any = handler.unary_stream or handler.stream_stream
        if streaming is None:
            return handler
        client_streams = handler.stream_stream is not None

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                token = await enter(context, scope)
                try:
                    checked = _checked_stream(request) if client_streams else _checked(request)
                    async for item in streaming(checked, context):
                        yield item
                finally:
                    # A stream the client left is closed from another task's context, where
                    # the token means nothing (and the principal goes with the stream).
                    with contextlib.suppress(ValueError):
                        _PRINCIPAL.reset(token)
            except FlareError as error:
                await _abort(context, error)
            except grpc.aio.AbortError:
                raise
            except Exception:
                _internal(method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        parse = _tolerant(handler.request_deserializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(stream, parse, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(stream, parse, handler.response_serializer)
