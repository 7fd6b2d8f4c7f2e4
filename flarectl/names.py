"""The words flarectl shows and accepts for enum values and resource names."""

from __future__ import annotations

from flare.dialect import enum_value_name
from flare.v1 import intent_pb2

_STATE = intent_pb2.DESCRIPTOR.enum_types_by_name["State"]
_OBJECTIVE = intent_pb2.DESCRIPTOR.enum_types_by_name["Objective"]
_WORKLOAD_TYPE = intent_pb2.DESCRIPTOR.enum_types_by_name["WorkloadType"]

# Short objective names for options and tables; the seeds' spellings
# ("Cost_Minimization") are accepted as well.
OBJECTIVES: dict[str, intent_pb2.Objective.ValueType] = {
    "cost": intent_pb2.OBJECTIVE_COST_MINIMIZATION,
    "performance": intent_pb2.OBJECTIVE_PERFORMANCE_MAXIMIZATION,
    "latency": intent_pb2.OBJECTIVE_LATENCY_MINIMIZATION,
    "energy": intent_pb2.OBJECTIVE_ENERGY_EFFICIENCY,
    "balanced": intent_pb2.OBJECTIVE_BALANCED_OPTIMIZATION,
}
TERMINAL_STATES = frozenset(
    {intent_pb2.STATE_SUCCEEDED, intent_pb2.STATE_FAILED, intent_pb2.STATE_CANCELLED}
)


def _short(prefix: str, value_name: str) -> str:
    return value_name.removeprefix(prefix).lower()


def state_name(state: int) -> str:
    """ "running" for STATE_RUNNING; "" for the unspecified value."""
    if state == intent_pb2.STATE_UNSPECIFIED:
        return ""
    value = _STATE.values_by_number.get(state)
    return _short("STATE_", value.name) if value else str(state)


def state_names() -> list[str]:
    return [_short("STATE_", v.name) for v in _STATE.values if v.number != 0]


def parse_state(text: str) -> intent_pb2.State.ValueType:
    """STATE_RUNNING for "RUNNING", "running" or "STATE_RUNNING"; ValueError otherwise."""
    value_name = enum_value_name(_STATE, text)
    if value_name is None or value_name == "STATE_UNSPECIFIED":
        raise ValueError(f"{text!r} is not one of: {', '.join(state_names())}")
    return intent_pb2.State.ValueType(_STATE.values_by_name[value_name].number)


def objective_name(objective: int) -> str:
    for short, number in OBJECTIVES.items():
        if number == objective:
            return short
    return ""


def parse_objective(text: str) -> intent_pb2.Objective.ValueType:
    """The objective for "cost", "Cost_Minimization" or "OBJECTIVE_COST_MINIMIZATION"."""
    if text.lower() in OBJECTIVES:
        return OBJECTIVES[text.lower()]
    value_name = enum_value_name(_OBJECTIVE, text)
    if value_name is None or value_name == "OBJECTIVE_UNSPECIFIED":
        raise ValueError(f"{text!r} is not one of: {', '.join(OBJECTIVES)}")
    return intent_pb2.Objective.ValueType(_OBJECTIVE.values_by_name[value_name].number)


def workload_type_name(workload_type: int) -> str:
    if workload_type == intent_pb2.WORKLOAD_TYPE_UNSPECIFIED:
        return ""
    value = _WORKLOAD_TYPE.values_by_number.get(workload_type)
    return _short("WORKLOAD_TYPE_", value.name) if value else str(workload_type)


def resource_id(name: str) -> str:
    """The last segment of a resource name: "llm-1" for "tenants/acme/intents/llm-1"."""
    return name.rsplit("/", 1)[-1]


def tenant_parent(tenant: str | None) -> str:
    """The parent field for --tenant: "tenants/acme", or "" for the caller's tenant."""
    if not tenant:
        return ""
    return tenant if tenant.startswith("tenants/") else f"tenants/{tenant}"
