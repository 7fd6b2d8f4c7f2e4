"""The gRPC side: one channel, the three services' stubs, and the decoding of
a failed call (status code, message, google.rpc details) into ApiError."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from flare import tls
from flare.v1 import (
    intent_pb2,
    intent_service_pb2,
    intent_service_pb2_grpc,
    offer_service_pb2,
    offer_service_pb2_grpc,
    telemetry_service_pb2,
    telemetry_service_pb2_grpc,
    token_service_pb2,
    token_service_pb2_grpc,
)
from flarectl.config import Connection
from flarectl.errors import CliError, ExitCode

DEFAULT_TIMEOUT = 30.0
MAX_PAGE_SIZE = 1000

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

EXIT_CODES: dict[grpc.StatusCode, ExitCode] = {
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.USAGE,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.AUTH,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNAVAILABLE,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.FAILED_PRECONDITION,
}


class ApiError(CliError):
    """A call the control plane answered with an error status (or never answered)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(f"{code.name}: {message}", details, EXIT_CODES.get(code, ExitCode.ERROR))
        self.code = code
        self.message = message


def _detail_lines(error: grpc.Call, message: str) -> list[str]:
    """One line per field violation, precondition or quota failure in the
    status details."""
    try:
        status: Any = rpc_status.from_call(error)
    except ValueError:
        return []
    if status is None:
        return []
    lines: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            lines += [f"{v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            lines += [
                f"{v.subject}: {v.description}"
                for v in failure.violations
                if v.description and v.description != message
            ]
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            lines += [f"{v.subject}: {v.description}" for v in quota.violations]
    return lines


def decode_error(error: grpc.RpcError, connection: Connection) -> ApiError:
    if not isinstance(error, grpc.Call):
        return ApiError(grpc.StatusCode.UNKNOWN, str(error) or type(error).__name__)
    code = error.code()
    message = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return ApiError(
            code,
            f"cannot reach the FLARE control plane at {connection.address} ({message})",
            [
                f"address from {connection.address_source}; is flare-controlplane running "
                "there? Set --address or FLARE_ADDRESS"
            ],
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(code, f"{connection.address} did not answer in time ({message})")
    details = _detail_lines(error, message)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        if connection.token is None:
            details.append("no token given: pass --token, set FLARE_TOKEN or a config file")
        else:
            details.append(f"token from {connection.token_source}")
    return ApiError(code, message, details)


class Client:
    """The control plane's API over one channel; every failure raises ApiError."""

    def __init__(self, connection: Connection, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.connection = connection
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {connection.token}"),) if connection.token else ()
        )
        if connection.tls_ca is None:
            self._channel = grpc.insecure_channel(connection.address)
        else:
            try:
                credentials = tls.channel_credentials(connection.tls_ca)
            except tls.TlsError as error:
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
            self._channel = grpc.secure_channel(connection.address, credentials)
        self._intents = intent_service_pb2_grpc.IntentServiceStub(self._channel)
        self._offers = offer_service_pb2_grpc.OfferServiceStub(self._channel)
        self._tokens = token_service_pb2_grpc.TokenServiceStub(self._channel)
        self._telemetry = telemetry_service_pb2_grpc.TelemetryServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise decode_error(error, self.connection) from None

    # Intents

    def create_intent(
        self,
        intent: intent_pb2.Intent,
        *,
        intent_id: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> intent_service_pb2.CreateIntentResponse:
        request = intent_service_pb2.CreateIntentRequest(
            intent=intent,
            intent_id=intent_id,
            request_id=request_id,
            validate_only=validate_only,
        )
        return self._call(self._intents.CreateIntent, request)

    def plan_intent(self, intent: intent_pb2.Intent, *, top_k: int = 0) -> intent_pb2.Plan:
        request = intent_service_pb2.PlanIntentRequest(intent=intent, top_k=top_k)
        return self._call(self._intents.PlanIntent, request).plan

    def get_intent(self, name: str) -> intent_pb2.Intent:
        request = intent_service_pb2.GetIntentRequest(name=name)
        return self._call(self._intents.GetIntent, request).intent

    def list_intents(
        self,
        *,
        states: Sequence[intent_pb2.State.ValueType] = (),
        limit: int = 0,
        page_size: int = 0,
    ) -> intent_service_pb2.ListIntentsResponse:
        """All pages (up to `limit` intents, 0 for no limit), newest first."""
        merged = intent_service_pb2.ListIntentsResponse()
        request = intent_service_pb2.ListIntentsRequest(states=states)
        while True:
            request.page_size = _page_size(page_size, limit, len(merged.intents))
            page = self._call(self._intents.ListIntents, request)
            merged.intents.extend(page.intents)
            if not page.next_page_token or (limit and len(merged.intents) >= limit):
                break
            request.page_token = page.next_page_token
        if limit:
            del merged.intents[limit:]
        return merged

    def watch_intent(
        self, name: str, *, start_revision: int = 0, timeout: float | None = None
    ) -> Iterator[intent_service_pb2.WatchIntentResponse]:
        """Changes of one intent (or, with name "", of all the tenant's), as they come."""
        request = intent_service_pb2.WatchIntentRequest(name=name, start_revision=start_revision)
        call = self._intents.WatchIntent(request, metadata=self._metadata, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise decode_error(error, self.connection) from None
        finally:
            call.cancel()

    def watch_utilization(
        self, request: telemetry_service_pb2.WatchUtilizationRequest
    ) -> Iterator[telemetry_service_pb2.WatchUtilizationResponse]:
        """A snapshot of the GPUs the caller may see, then their changes."""
        call = self._telemetry.WatchUtilization(request, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as error:
            raise decode_error(error, self.connection) from None
        finally:
            call.cancel()

    def cancel_intent(self, name: str, *, reason: str = "") -> intent_pb2.Intent:
        request = intent_service_pb2.CancelIntentRequest(name=name, reason=reason)
        return self._call(self._intents.CancelIntent, request).intent

    # Offers

    def list_offers(
        self, request: offer_service_pb2.ListOffersRequest, *, limit: int = 0
    ) -> offer_service_pb2.ListOffersResponse:
        """All pages of offers (up to `limit`); total and rejections from the first."""
        merged = offer_service_pb2.ListOffersResponse()
        page_request = offer_service_pb2.ListOffersRequest()
        page_request.CopyFrom(request)
        while True:
            page_request.page_size = _page_size(request.page_size, limit, len(merged.offers))
            page = self._call(self._offers.ListOffers, page_request)
            if not merged.offers:
                merged.total_offers = page.total_offers
                merged.rejections.extend(page.rejections)
            merged.offers.extend(page.offers)
            if not page.next_page_token or (limit and len(merged.offers) >= limit):
                break
            page_request.page_token = page.next_page_token
        if limit:
            del merged.offers[limit:]
        return merged

    # Tokens

    def create_token(
        self,
        *,
        display_name: str,
        scopes: Sequence[str],
        ttl_seconds: float | None,
        parent: str = "",
    ) -> token_service_pb2.CreateTokenResponse:
        request = token_service_pb2.CreateTokenRequest(
            parent=parent,
            token=token_service_pb2.Token(display_name=display_name, scopes=scopes),
        )
        if ttl_seconds is not None:
            seconds = int(ttl_seconds)
            request.ttl.seconds = seconds
            request.ttl.nanos = round((ttl_seconds - seconds) * 1e9)
        return self._call(self._tokens.CreateToken, request)

    def list_tokens(
        self, *, parent: str = "", show_inactive: bool = False
    ) -> token_service_pb2.ListTokensResponse:
        merged = token_service_pb2.ListTokensResponse()
        request = token_service_pb2.ListTokensRequest(
            parent=parent, show_inactive=show_inactive, page_size=MAX_PAGE_SIZE
        )
        while True:
            page = self._call(self._tokens.ListTokens, request)
            merged.tokens.extend(page.tokens)
            if not page.next_page_token:
                return merged
            request.page_token = page.next_page_token

    def revoke_token(self, name: str) -> token_service_pb2.Token:
        request = token_service_pb2.RevokeTokenRequest(name=name)
        return self._call(self._tokens.RevokeToken, request).token


def _page_size(requested: int, limit: int, have: int) -> int:
    """The page size for the next page: what was asked, at most what is still
    wanted, at most the server's maximum."""
    size = requested or MAX_PAGE_SIZE
    if limit:
        size = min(size, limit - have)
    return max(1, min(size, MAX_PAGE_SIZE))
