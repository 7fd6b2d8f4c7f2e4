"""The CustomResourceDefinitions of FlareIntent and FlareToken, built from the
proto descriptors so that the stored schema can never drift from the API.

A structural schema matters here: the API server prunes fields its schema does
not name, so a hand-written schema that missed a proto field would silently
lose data. Built from the descriptors, every field has its place and type.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor

from controlplane.cluster import resources
from flare.v1 import intent_pb2, token_service_pb2

FD = descriptor.FieldDescriptor

_SCALARS: dict[int, dict[str, Any]] = {
    FD.TYPE_DOUBLE: {"type": "number"},
    FD.TYPE_FLOAT: {"type": "number"},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte"},
    FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FD.TYPE_UINT32: {"type": "integer", "minimum": 0},
    FD.TYPE_FIXED32: {"type": "integer", "minimum": 0},
    # Proto JSON writes 64-bit integers as strings.
    FD.TYPE_INT64: {"type": "string"},
    FD.TYPE_SINT64: {"type": "string"},
    FD.TYPE_SFIXED64: {"type": "string"},
    FD.TYPE_UINT64: {"type": "string"},
    FD.TYPE_FIXED64: {"type": "string"},
}
# Well-known types and their proto JSON forms.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
}


def field_schema(field: FD, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if field.message_type is not None:
        item = message_schema(field.message_type, seen)
    elif field.enum_type is not None:
        item = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    else:
        item = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": item}
    return item


def message_schema(message: descriptor.Descriptor, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    if message.full_name in seen:
        raise ValueError(f"{message.full_name} is recursive; a structural schema cannot say so")
    within = (*seen, message.full_name)
    return {
        "type": "object",
        "properties": {f.json_name: field_schema(f, within) for f in message.fields},
    }


def _part(fields: list[FD], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    properties = {f.json_name: field_schema(f) for f in fields}
    properties.update(extra or {})
    return {"type": "object", "properties": properties}


def _crd(
    kind: str,
    plural: str,
    message: descriptor.Descriptor,
    *,
    spec_extra: dict[str, Any] | None = None,
    columns: list[dict[str, str]],
    short_names: list[str],
) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _part(resources.spec_fields(message), spec_extra),
            "status": _part(resources.status_fields(message)),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{resources.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "flare"},
        },
        "spec": {
            "group": resources.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["flare"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resources.VERSION,
                    "served": True,
                    "storage": True,
                    # No status subresource: FLARE writes spec and status of an intent in
                    # one update, guarded by its resourceVersion.
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    escaped = resources.TENANT_LABEL.replace(".", "\\.")
    tenant = f".metadata.labels.{escaped}"
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return [
        _crd(
            "FlareIntent",
            resources.INTENTS,
            intent_pb2.Intent.DESCRIPTOR,
            short_names=["fi"],
            columns=[
                {"name": "Tenant", "type": "string", "jsonPath": tenant},
                {"name": "State", "type": "string", "jsonPath": ".status.state"},
                {"name": "Provider", "type": "string", "jsonPath": ".status.placement.provider"},
                {"name": "GPU", "type": "string", "jsonPath": ".status.placement.gpuModel"},
                age,
            ],
        ),
        _crd(
            "FlareToken",
            resources.TOKENS,
            token_service_pb2.Token.DESCRIPTOR,
            # Only the SHA-256 of the secret, hex: the secret itself is never stored.
            spec_extra={"secretHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            short_names=["ftok"],
            columns=[
                {"name": "Tenant", "type": "string", "jsonPath": tenant},
                {"name": "Expires", "type": "string", "jsonPath": ".status.expireTime"},
                {"name": "Revoked", "type": "string", "jsonPath": ".status.revokeTime"},
                age,
            ],
        ),
    ]
