"""FLARE's own Kubernetes resources, FlareIntent and FlareToken: their schema and
the conversion to and from the protobuf messages, as pure functions.

One rule places every field, read from the proto's field behaviours: the
IDENTIFIER is the object's name, OUTPUT_ONLY fields are the `status`, every
other field is the `spec`. Both are the message's proto JSON (camelCase names,
enum names, RFC 3339 times), so `kubectl get flareintents -o yaml` reads like the
API. Two intent fields are never stored: `revision` is the object's
resourceVersion and `usage` is computed when read.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from controlplane.names import tenant_of
from flare.v1 import intent_pb2, token_service_pb2

GROUP = "flare.fluidos.eu"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
INTENTS = "flareintents"
TOKENS = "flaretokens"
TENANT_LABEL = f"{GROUP}/tenant"
REQUEST_LABEL = f"{GROUP}/request"
# Computed, not stored: the object's resourceVersion and the usage as of a read.
NOT_STORED = {"revision", "usage"}

_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_IDENTIFIER = field_behavior_pb2.IDENTIFIER


def _behaviour(field: descriptor.FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def spec_fields(message: Any) -> list[descriptor.FieldDescriptor]:
    return [
        f
        for f in message.fields
        if f.name not in NOT_STORED and not {_OUTPUT_ONLY, _IDENTIFIER} & set(_behaviour(f))
    ]


def status_fields(message: Any) -> list[descriptor.FieldDescriptor]:
    return [f for f in message.fields if f.name not in NOT_STORED and _OUTPUT_ONLY in _behaviour(f)]


def object_name(resource_name: str) -> str:
    """ "tenants/acme/intents/train-1" -> "acme.train-1": tenant and id are DNS
    labels, so the pair is a valid object name and cannot collide."""
    parts = resource_name.split("/")
    return f"{parts[1]}.{parts[3]}"


def request_label(request_id: str) -> str:
    """A label value for a request id of any length and alphabet."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:40]


def _split(message: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    document = json_format.MessageToDict(message)
    kind = message.DESCRIPTOR
    spec = {
        f.json_name: document[f.json_name] for f in spec_fields(kind) if f.json_name in document
    }
    status = {
        f.json_name: document[f.json_name] for f in status_fields(kind) if f.json_name in document
    }
    return spec, status


def _join(message: Message, body: dict[str, Any]) -> None:
    document = {**(body.get("spec") or {}), **(body.get("status") or {})}
    allowed = {f.json_name for f in spec_fields(message.DESCRIPTOR)} | {
        f.json_name for f in status_fields(message.DESCRIPTOR)
    }
    json_format.ParseDict({k: v for k, v in document.items() if k in allowed}, message)


# -- FlareIntent ---------------------------------------------------------------------


def intent_object(intent: intent_pb2.Intent, namespace: str) -> dict[str, Any]:
    spec, status = _split(intent)
    labels = {TENANT_LABEL: tenant_of(intent.name)}
    if intent.request_id:
        labels[REQUEST_LABEL] = request_label(intent.request_id)
    metadata: dict[str, Any] = {
        "name": object_name(intent.name),
        "namespace": namespace,
        "labels": labels,
    }
    if intent.revision:
        metadata["resourceVersion"] = str(intent.revision)
    return {
        "apiVersion": API_VERSION,
        "kind": "FlareIntent",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def intent_of(body: dict[str, Any]) -> intent_pb2.Intent:
    """The intent a FlareIntent object holds, at the object's revision."""
    intent = intent_pb2.Intent()
    _join(intent, body)
    tenant, _, intent_id = body["metadata"]["name"].partition(".")
    intent.name = f"tenants/{tenant}/intents/{intent_id}"
    return stamped(intent, int(body["metadata"]["resourceVersion"]))


def stamped(intent: intent_pb2.Intent, revision: int) -> intent_pb2.Intent:
    """`intent` at `revision`. History entries still without a revision were
    added by the write that made this revision: they get it."""
    intent.revision = revision
    for entry in intent.history:
        if entry.revision == 0:
            entry.revision = revision
    return intent


# -- FlareToken ----------------------------------------------------------------------


def token_object(
    tenant: str, token: token_service_pb2.Token, secret_hash: bytes, namespace: str
) -> dict[str, Any]:
    spec, status = _split(token)
    spec["secretHash"] = secret_hash.hex()
    return {
        "apiVersion": API_VERSION,
        "kind": "FlareToken",
        "metadata": {
            "name": object_name(token.name),
            "namespace": namespace,
            "labels": {TENANT_LABEL: tenant},
        },
        "spec": spec,
        "status": status,
    }


def token_of(body: dict[str, Any]) -> tuple[str, token_service_pb2.Token, bytes]:
    token = token_service_pb2.Token()
    _join(token, body)
    tenant, _, token_id = body["metadata"]["name"].partition(".")
    token.name = f"tenants/{tenant}/tokens/{token_id}"
    return tenant, token, bytes.fromhex(body["spec"]["secretHash"])
