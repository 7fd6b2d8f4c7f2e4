"""The one place where domain errors become gRPC status codes with
google.rpc details (BadRequest, PreconditionFailure, QuotaFailure, ErrorInfo)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from controlplane import errors

DOMAIN = "flare.fluidos.eu"

CODES: dict[type[errors.FlareError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.Aborted: code_pb2.ABORTED,
    errors.OutOfRange: code_pb2.OUT_OF_RANGE,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status_proto(error: errors.FlareError) -> status_pb2.Status:
    code = next((c for kind, c in CODES.items() if isinstance(error, kind)), code_pb2.UNKNOWN)
    status = status_pb2.Status(code=code, message=str(error))
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN)))
    if isinstance(error, errors.InvalidArgument):
        bad = error_details_pb2.BadRequest()
        for violation in error.violations:
            bad.field_violations.add(field=violation.field, description=violation.description)
        status.details.append(_pack(bad))
    elif isinstance(error, errors.FailedPrecondition):
        failure = error_details_pb2.PreconditionFailure()
        failure.violations.add(type=error.kind, subject=error.subject, description=str(error))
        status.details.append(_pack(failure))
    elif isinstance(error, errors.ResourceExhausted):
        quota = error_details_pb2.QuotaFailure()
        quota.violations.add(subject=error.quota, description=str(error))
        status.details.append(_pack(quota))
    return status


def to_grpc_status(error: errors.FlareError) -> grpc.Status:
    status: grpc.Status = rpc_status.to_status(to_status_proto(error))
    return status


HTTP_CODES = {
    code_pb2.OK: 200,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.ABORTED: 409,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.CANCELLED: 499,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DEADLINE_EXCEEDED: 504,
}


def http_status(code: int) -> int:
    """The HTTP status of a google.rpc code, as google.api transcoding maps it."""
    return HTTP_CODES.get(code, 500)
