"""TokenService: create, list and revoke bearer tokens of a tenant."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from controlplane import auth
from controlplane.api import paging
from controlplane.api.interceptor import principal
from controlplane.clock import Clock, utc_now
from controlplane.errors import InvalidArgument, NotFound, PermissionDenied
from controlplane.names import parse_child, parse_parent, token_name
from controlplane.store.base import TokenStore
from flare.v1 import token_service_pb2, token_service_pb2_grpc
from flare.violation import FieldViolation

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TokenServicer(token_service_pb2_grpc.TokenServiceServicer):
    def __init__(
        self, store: TokenStore, authenticator: auth.Authenticator, *, clock: Clock = utc_now
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._clock = clock

    async def CreateToken(  # noqa: N802 - gRPC method name
        self, request: token_service_pb2.CreateTokenRequest, context: Context
    ) -> token_service_pb2.CreateTokenResponse:
        caller = principal()
        tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        scopes = list(request.token.scopes)
        beyond = sorted(set(scopes or auth.DEFAULT_SCOPES) - caller.scopes)
        if beyond and not caller.is_admin:
            raise PermissionDenied(
                f"a token cannot grant scopes its creator lacks: {', '.join(beyond)}"
            )
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        token, secret = await auth.create_token(
            self._store,
            tenant=tenant,
            display_name=request.token.display_name,
            scopes=scopes,
            ttl=ttl,
            creator=caller.token,
            now=self._clock(),
        )
        return token_service_pb2.CreateTokenResponse(token=token, secret=secret)

    async def ListTokens(  # noqa: N802
        self, request: token_service_pb2.ListTokensRequest, context: Context
    ) -> token_service_pb2.ListTokensResponse:
        caller = principal()
        tenant = caller.tenant_for(parse_parent(request.parent, default_tenant=caller.tenant))
        query = f"{tenant}|{request.show_inactive}"
        cursor = paging.decode(request.page_token, query) or ""
        if not isinstance(cursor, str):
            raise InvalidArgument([FieldViolation("page_token", "not a token from this API")])
        size = paging.page_size(request.page_size)
        now = self._clock()
        tokens: list[token_service_pb2.Token] = []
        while len(tokens) < size:
            batch = await self._store.tokens(tenant=tenant, limit=size, cursor=cursor)
            if not batch:
                cursor = ""
                break
            for record in batch:
                cursor = record.token.name
                if request.show_inactive or auth.is_active(record.token, now):
                    tokens.append(record.token)
                    if len(tokens) == size:
                        break
            if len(batch) < size and len(tokens) < size:
                cursor = ""
                break
        next_token = paging.encode(cursor, query) if cursor and len(tokens) == size else ""
        return token_service_pb2.ListTokensResponse(tokens=tokens, next_page_token=next_token)

    async def RevokeToken(  # noqa: N802
        self, request: token_service_pb2.RevokeTokenRequest, context: Context
    ) -> token_service_pb2.RevokeTokenResponse:
        caller = principal()
        tenant, token_id = parse_child(request.name, "tokens", default_tenant=caller.tenant)
        name = token_name(tenant, token_id)
        if tenant != caller.tenant and not caller.is_admin:
            raise NotFound(f"{name} not found")
        token = await auth.revoke_token(self._store, name, now=self._clock())
        self._authenticator.forget(name)
        return token_service_pb2.RevokeTokenResponse(token=token)
