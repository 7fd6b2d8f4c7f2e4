from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.intents import lifecycle
from flare.v1 import intent_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALL = list(lifecycle.TRANSITIONS)


def test_every_state_of_the_contract_is_in_the_table() -> None:
    contract = {v.number for v in intent_pb2.State.DESCRIPTOR.values if v.number}
    assert set(lifecycle.TRANSITIONS) == contract


def test_terminal_states_go_nowhere_and_every_live_state_can_fail() -> None:
    assert {lifecycle.SUCCEEDED, lifecycle.FAILED, lifecycle.CANCELLED} == lifecycle.TERMINAL
    for state in ALL:
        if state not in lifecycle.TERMINAL and state != lifecycle.CANCELLING:
            assert lifecycle.can_transition(state, lifecycle.FAILED)


def test_transition_records_history_and_refuses_what_the_table_forbids() -> None:
    intent = lifecycle.created(intent_pb2.Intent(name="tenants/t/intents/a"), now=NOW)
    planned = lifecycle.transition(
        intent, lifecycle.PLANNING, reason="Planning", message="m", now=NOW
    )
    assert intent.state == lifecycle.PENDING  # the input is not changed
    assert [(h.from_state, h.to_state, h.reason) for h in planned.history] == [
        (intent_pb2.STATE_UNSPECIFIED, lifecycle.PENDING, "Created"),
        (lifecycle.PENDING, lifecycle.PLANNING, "Planning"),
    ]
    with pytest.raises(lifecycle.TransitionError):
        lifecycle.transition(planned, lifecycle.RUNNING, reason="x", message="x", now=NOW)


@pytest.mark.parametrize(
    ("state", "target"),
    [
        (lifecycle.PENDING, lifecycle.CANCELLED),
        (lifecycle.QUEUED, lifecycle.CANCELLED),
        (lifecycle.RESERVING, lifecycle.CANCELLING),
        (lifecycle.RUNNING, lifecycle.CANCELLING),
        (lifecycle.CANCELLING, None),
        (lifecycle.CANCELLED, None),
    ],
)
def test_cancel_targets(state: int, target: int | None) -> None:
    assert lifecycle.cancel_target(state) == target


def test_a_queued_intent_that_ran_before_is_released_when_cancelled() -> None:
    """Preempted or failed over, it may have left its namespace for the next placement."""
    assert lifecycle.cancel_target(lifecycle.QUEUED, placed=True) == lifecycle.CANCELLING
    assert lifecycle.can_transition(lifecycle.QUEUED, lifecycle.CANCELLING)


@pytest.mark.parametrize("state", [lifecycle.SUCCEEDED, lifecycle.FAILED])
def test_cancelling_a_finished_intent_is_an_error(state: int) -> None:
    with pytest.raises(lifecycle.TransitionError):
        lifecycle.cancel_target(state)


def test_history_is_bounded_and_keeps_creation() -> None:
    intent = lifecycle.created(intent_pb2.Intent(name="tenants/t/intents/a"), now=NOW)
    intent = lifecycle.transition(intent, lifecycle.PLANNING, reason="p", message="", now=NOW)
    for _ in range(lifecycle.HISTORY_LIMIT):
        intent = lifecycle.transition(intent, lifecycle.QUEUED, reason="q", message="", now=NOW)
        intent = lifecycle.transition(intent, lifecycle.PLANNING, reason="p", message="", now=NOW)
    assert len(intent.history) == lifecycle.HISTORY_LIMIT
    assert intent.history[0].reason == "Created"
