"""REST gateway: the HTTP/JSON paths of the seeds (/api/v1/intents,
/api/v1/resources, /api/v1/auth/tokens), transcoded onto the gRPC methods.

The routes come from the google.api.http annotations of the contract; nothing
here names a method. A request is decoded with the seeds' dialect
(flare.dialect), sent to the gRPC server over a local channel with the
caller's Authorization header, and the answer is encoded as JSON with proto
field names (snake_case). Errors use Google's JSON error shape:
{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ..., "details": [...]}}.
Server streams (WatchIntent) are sent as newline-delimited JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import yaml
from aiohttp import web
from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from controlplane import console as web_console
from controlplane.api.status import http_status
from flare.dialect import normalize
from flare.violation import FieldViolation

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 4 * 1024 * 1024
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
TOO_DEEP = "nests too deeply"
_VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")
_DETAIL_TYPES: dict[str, type[Message]] = {
    "type.googleapis.com/google.rpc.BadRequest": error_details_pb2.BadRequest,
    "type.googleapis.com/google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
    "type.googleapis.com/google.rpc.PreconditionFailure": error_details_pb2.PreconditionFailure,
    "type.googleapis.com/google.rpc.QuotaFailure": error_details_pb2.QuotaFailure,
}


@dataclass(frozen=True, slots=True)
class Route:
    verb: str
    template: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    body: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """ "/api/v1/{name=tenants/*/intents/*}:watch" -> a regex capturing `name`."""
    variables: list[str] = []
    regex, position = "", 0
    for match in _VARIABLE.finditer(template):
        regex += re.escape(template[position : match.start()])
        segments = (match.group(2) or "*").split("/")
        inner = "/".join(
            "[^/:]+" if s == "*" else "(?:[^:]*)" if s == "**" else re.escape(s) for s in segments
        )
        regex += f"(?P<v{len(variables)}>{inner})"
        variables.append(match.group(1))
        position = match.end()
    regex += re.escape(template[position:])
    return re.compile(f"^{regex}$"), tuple(variables)


def _rules(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str]]:
    verb = rule.WhichOneof("pattern")
    if verb and verb != "custom":
        yield verb.upper(), getattr(rule, verb), rule.body
    for extra in rule.additional_bindings:
        yield from _rules(extra)


def routes(services: Iterable[ServiceDescriptor]) -> list[Route]:
    found = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            for verb, template, body in _rules(options.Extensions[annotations_pb2.http]):
                pattern, variables = compile_template(template)
                found.append(Route(verb, template, pattern, variables, body, method))
    return found


class BadJson(Exception):
    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _field_at(descriptor: Descriptor, path: str) -> FieldDescriptor | None:
    field = None
    current: Descriptor | None = descriptor
    for part in path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(part)
        if field is None:
            return None
        current = field.message_type
    return field


def _query_value(field: FieldDescriptor, text: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return text.lower() in ("1", "true", "yes")
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(text)
    if field.cpp_type in (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    ):
        return int(text)
    return text


def build_request(
    route: Route,
    captured: dict[str, str],
    query: Iterable[tuple[str, str]],
    body: bytes,
    media_type: str = "application/json",
) -> Message:
    """The gRPC request message for an HTTP request on `route`. A body is JSON,
    or YAML when `media_type` says so."""
    descriptor = route.method.input_type
    data: dict[str, Any] = {}
    if route.body:
        payload = _yaml_payload(body) if media_type in YAML_MEDIA_TYPES else _json_payload(body)
        try:  # JSON's \ud800 escapes decode to text that is not Unicode
            json.dumps(payload, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise BadJson([FieldViolation("body", "holds an unpaired surrogate")]) from None
        if route.body == "*":
            if not isinstance(payload, dict):
                raise BadJson([FieldViolation("body", "must be an object (a mapping of fields)")])
            data = payload
        else:
            data[route.body] = payload
    bound = set(captured)
    for key, text in query:
        field = _field_at(descriptor, key)
        if field is None or key in bound:
            raise BadJson([FieldViolation(key, "unknown query parameter")])
        try:
            value = _query_value(field, text)
        except ValueError as error:
            raise BadJson([FieldViolation(key, f"{text!r}: {error}")]) from error
        if field.is_repeated:
            parts = key.split(".")
            node = data
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node.setdefault(parts[-1], []).append(value)
        else:
            _set_path(data, key, value)
    for path, value in captured.items():
        _set_path(data, path, value)
    request: Message = message_factory.GetMessageClass(descriptor)()
    try:
        normalised, violations = normalize(data, descriptor)
        if violations:
            raise BadJson(violations)
        json_format.ParseDict(normalised, request)
    except json_format.ParseError as error:
        raise BadJson([FieldViolation("body", str(error))]) from error
    except RecursionError:
        raise BadJson([FieldViolation("body", TOO_DEEP)]) from None
    return request


def _json_payload(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError as error:
        raise BadJson([FieldViolation("body", f"not JSON: {error}")]) from error
    except RecursionError:
        raise BadJson([FieldViolation("body", TOO_DEEP)]) from None


class _PlainYamlLoader(yaml.SafeLoader):
    """YAML without aliases: a request never needs them, and a few nested
    aliases expand to more than memory holds."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                None, None, "aliases (*name) are not accepted", event.start_mark
            )
        return super().compose_node(parent, index)


def _yaml_payload(body: bytes) -> Any:
    try:
        payload = yaml.load(body or b"{}", Loader=_PlainYamlLoader)  # a SafeLoader without aliases
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise BadJson([FieldViolation("body", f"not YAML: {error.problem}{where}")]) from error
    except yaml.YAMLError as error:
        raise BadJson([FieldViolation("body", f"not YAML: {error}")]) from error
    except RecursionError:
        raise BadJson([FieldViolation("body", TOO_DEEP)]) from None
    # YAML's dates and timestamps are written as text, as JSON would carry them.
    return {} if payload is None else json.loads(json.dumps(payload, default=str))


def _too_large() -> web.Response:
    message = f"the body is larger than {MAX_BODY_BYTES // 2**20} MiB"
    return web.json_response(error_body(code_pb2.INVALID_ARGUMENT, message, []), status=413)


def to_json(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def error_body(code: int, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "error": {
            "code": http_status(code),
            "status": code_pb2.Code.Name(code),
            "message": message,
            "details": details,
        }
    }


def _details(error: grpc.aio.AioRpcError) -> list[dict[str, Any]]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = []
            for packed in status.details:
                kind = _DETAIL_TYPES.get(packed.type_url)
                if kind is None:
                    continue
                detail = kind()
                packed.Unpack(detail)
                details.append({"@type": packed.type_url, **to_json(detail)})
            return details
    return []


class Gateway:
    def __init__(self, target: str, services: Iterable[ServiceDescriptor]) -> None:
        self._target = target
        self._routes = routes(services)
        self._channel: grpc.aio.Channel | None = None

    def app(self, *, console: bool = False) -> web.Application:
        """The gateway's application; with `console`, the web console too, at /console/."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        if console:
            app.add_routes(web_console.routes())
            app.on_response_prepare.append(web_console.on_prepare)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self._channel = grpc.aio.insecure_channel(self._target)

    async def _close(self, _app: web.Application) -> None:
        if self._channel is not None:
            await self._channel.close()

    def _match(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self._routes:
            if route.verb != verb:
                continue
            match = route.pattern.match(path)
            if match:
                return route, {name: match.group(f"v{i}") for i, name in enumerate(route.variables)}
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        matched = self._match(request.method, request.path)
        if matched is None:
            verbs = sorted({r.verb for r in self._routes if r.pattern.match(request.path)})
            if verbs:
                return web.json_response(
                    error_body(
                        code_pb2.UNIMPLEMENTED,
                        f"{request.method} is not allowed here; use {', '.join(verbs)}",
                        [],
                    ),
                    status=405,
                )
            return web.json_response(
                error_body(code_pb2.NOT_FOUND, f"no API at {request.path}", []), status=404
            )
        route, captured = matched
        # Refused before it is read when it says how long it is, and caught when it
        # does not (an escaping error would keep the buffered body alive a while).
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large()
        try:
            message = build_request(
                route, captured, request.query.items(), body, request.content_type
            )
        except BadJson as bad:
            detail = error_details_pb2.BadRequest()
            for violation in bad.violations:
                detail.field_violations.add(
                    field=violation.field, description=violation.description
                )
            details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", **to_json(detail)}]
            return web.json_response(
                error_body(code_pb2.INVALID_ARGUMENT, str(bad), details), status=400
            )
        metadata = []
        if "Authorization" in request.headers:
            metadata.append(("authorization", request.headers["Authorization"]))
        assert self._channel is not None
        output = message_factory.GetMessageClass(route.method.output_type)
        try:
            if route.method.server_streaming:
                return await self._stream(request, route, message, metadata, output)
            call = self._channel.unary_unary(
                route.path, request_serializer=_serialize, response_deserializer=output.FromString
            )
            response = await call(message, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            code = error.code().value[0]
            return web.json_response(
                error_body(code, error.details() or "", _details(error)), status=http_status(code)
            )
        return web.json_response(to_json(response))

    async def _stream(
        self,
        request: web.Request,
        route: Route,
        message: Message,
        metadata: list[tuple[str, str]],
        output: type[Message],
    ) -> web.StreamResponse:
        assert self._channel is not None
        call = self._channel.unary_stream(
            route.path, request_serializer=_serialize, response_deserializer=output.FromString
        )
        stream = call(message, metadata=metadata)
        response: web.StreamResponse | None = None
        try:
            async for item in stream:
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                    await response.prepare(request)
                await response.write(json.dumps(to_json(item)).encode() + b"\n")
        except grpc.aio.AioRpcError as error:
            code = error.code().value[0]
            body = error_body(code, error.details() or "", _details(error))
            if response is None:
                return web.json_response(body, status=http_status(code))
            await response.write(json.dumps(body).encode() + b"\n")
        finally:
            stream.cancel()
        if response is None:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
        return response


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
