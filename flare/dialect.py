"""The seeds' JSON spellings, mapped onto the wire contract.

The seeds' users wrote intents like `"objective": "Cost_Minimization"`,
`"type": "job"`, `"max_hourly_cost": "5 EUR"`, `"availability": "99.9%"`,
`"max_interruption_time": "2m"` and `"env": ["K=V"]`. The protobuf JSON
mapping spells these `"OBJECTIVE_COST_MINIMIZATION"`, `"WORKLOAD_TYPE_JOB"`,
`{"currency_code": "EUR", "amount": "5"}`, `99.9`, `"120s"` and
`[{"name": "K", "value": "V"}]`. `normalize` rewrites the first into the second,
walking the message descriptor, so every message of the contract accepts both.
The REST gateway and flarectl apply it to what users send; gRPC clients send
typed messages and need none of it.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from flare.durations import DurationError, to_proto_json
from flare.money import MoneyError, parse_shorthand
from flare.violation import FieldViolation

# Spellings from the earlier FLARE API that differ from the enum value names.
_ENUM_ALIASES = {
    "WORKLOAD_TYPE_BATCH": "WORKLOAD_TYPE_JOB",
    "DEPLOYMENT_STRATEGY_FLEXIBILE": "DEPLOYMENT_STRATEGY_FLEXIBLE",
}
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _enum_prefix(enum: EnumDescriptor) -> str:
    return _CAMEL_BOUNDARY.sub("_", enum.name).upper() + "_"


def enum_value_name(enum: EnumDescriptor, text: str) -> str | None:
    """The enum value a user's spelling means: "Cost_Minimization",
    "cost-minimization", "COST_MINIMIZATION", "OBJECTIVE_COST_MINIMIZATION"
    and "any" (the unspecified value) all resolve. None when nothing matches."""
    if text in enum.values_by_name:
        return text
    prefix = _enum_prefix(enum)
    word = re.sub(r"[\s\-]+", "_", text.strip()).upper()
    candidate = word if word.startswith(prefix) else prefix + word
    if word == "ANY":
        candidate = prefix + "UNSPECIFIED"
    candidate = _ENUM_ALIASES.get(candidate, candidate)
    return candidate if candidate in enum.values_by_name else None


def normalize(
    data: Any, descriptor: Descriptor, path: str = ""
) -> tuple[Any, list[FieldViolation]]:
    """Rewrite the seeds' spellings in `data` (parsed JSON for a message of type
    `descriptor`) into protobuf JSON. Returns the new data and the violations
    found in shorthand values that cannot be rewritten; everything else is left
    for the protobuf JSON parser and the validator to judge."""
    if not isinstance(data, dict):
        return data, []
    out: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) or _by_json_name(descriptor, key)
        if field is None:
            out[key] = value
            continue
        field_path = f"{path}.{field.name}" if path else field.name
        if _is_repeated(field) and isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                new, found = _normalize_value(item, field, f"{field_path}[{index}]")
                items.append(new)
                violations.extend(found)
            out[key] = items
        else:
            out[key], found = _normalize_value(value, field, field_path)
            violations.extend(found)
    return out, violations


def _by_json_name(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    for field in descriptor.fields:
        if field.json_name == key:
            return field
    return None


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated) and not (
        field.message_type is not None and field.message_type.GetOptions().map_entry
    )


def _normalize_value(
    value: Any, field: FieldDescriptor, path: str
) -> tuple[Any, list[FieldViolation]]:
    enum = field.enum_type
    if enum is not None and isinstance(value, str):
        name = enum_value_name(enum, value)
        if name is None:
            accepted = ", ".join(
                v.name[len(_enum_prefix(enum)) :].lower() for v in enum.values if v.number != 0
            )
            return value, [FieldViolation(path, f"{value!r} is not one of: {accepted}")]
        return name, []
    if field.type == FieldDescriptor.TYPE_DOUBLE and isinstance(value, str) and value.endswith("%"):
        try:
            return float(value[:-1]), []
        except ValueError:
            return value, [FieldViolation(path, f"{value!r} is not a percentage such as 99.9%")]
    message = field.message_type
    if message is None:
        return value, []
    full_name = message.full_name
    if full_name == "flare.v1.Money" and isinstance(value, str | int | float):
        try:
            amount, code = parse_shorthand(str(value))
        except MoneyError as error:
            return value, [FieldViolation(path, str(error))]
        return {"currency_code": code, "amount": amount}, []
    if full_name == "google.protobuf.Duration" and isinstance(value, str):
        if value.endswith("s") and _is_plain_seconds(value):
            return value, []
        try:
            return to_proto_json(value), []
        except DurationError as error:
            return value, [FieldViolation(path, str(error))]
    if full_name == "flare.v1.EnvVar" and isinstance(value, str):
        name, sep, env_value = value.partition("=")
        if not sep or not name:
            return value, [FieldViolation(path, f"{value!r} is not NAME=value")]
        return {"name": name, "value": env_value}, []
    if isinstance(value, dict):
        return normalize(value, message, path)
    return value, []


def _is_plain_seconds(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?s", text) is not None
