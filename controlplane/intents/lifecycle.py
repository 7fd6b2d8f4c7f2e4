"""The intent state machine: the allowed transitions, in one place.

    PENDING ─▶ PLANNING ─▶ RESERVING ─▶ DEPLOYING ─▶ RUNNING ─▶ SUCCEEDED
                  │  ▲          │            │           │
                  ▼  │          └──(re-plan: reservation or deploy failed,
                QUEUED              provider lost)──▶ PLANNING
    RUNNING ─▶ QUEUED when preempted. Any live state ─▶ FAILED. Cancel: before
    RESERVING ─▶ CANCELLED at once; from RESERVING on ─▶ CANCELLING (release) ─▶ CANCELLED.

Functions here are pure: they take an Intent message and return a new one.
"""

from __future__ import annotations

from datetime import datetime

from flare.v1 import intent_pb2

State = intent_pb2.State
PENDING = intent_pb2.STATE_PENDING
PLANNING = intent_pb2.STATE_PLANNING
QUEUED = intent_pb2.STATE_QUEUED
RESERVING = intent_pb2.STATE_RESERVING
DEPLOYING = intent_pb2.STATE_DEPLOYING
RUNNING = intent_pb2.STATE_RUNNING
CANCELLING = intent_pb2.STATE_CANCELLING
SUCCEEDED = intent_pb2.STATE_SUCCEEDED
FAILED = intent_pb2.STATE_FAILED
CANCELLED = intent_pb2.STATE_CANCELLED

TRANSITIONS: dict[int, frozenset[int]] = {
    PENDING: frozenset({PLANNING, CANCELLED, FAILED}),
    PLANNING: frozenset({QUEUED, RESERVING, CANCELLED, FAILED}),
    # QUEUED -> CANCELLING: queued again after it ran (preempted, failed over), it may
    # have left something behind to release.
    QUEUED: frozenset({PLANNING, CANCELLING, CANCELLED, FAILED}),
    RESERVING: frozenset({DEPLOYING, PLANNING, CANCELLING, FAILED}),
    DEPLOYING: frozenset({RUNNING, PLANNING, CANCELLING, FAILED}),
    # RUNNING -> QUEUED: preempted by an intent of higher priority.
    RUNNING: frozenset({SUCCEEDED, PLANNING, QUEUED, CANCELLING, FAILED}),
    CANCELLING: frozenset({CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
TERMINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
# States in which the intent holds capacity of a provider.
HOLDING = frozenset({RESERVING, DEPLOYING, RUNNING, CANCELLING})
# States after the federation confirmed the hold (RESERVING may not have it yet).
RESERVED = frozenset({DEPLOYING, RUNNING, CANCELLING})
# Most transitions kept in an intent's history; older ones are dropped (the
# first, creation, is always kept).
HISTORY_LIMIT = 200


class TransitionError(ValueError):
    """A transition the state machine does not allow."""


def name(state: int) -> str:
    return State.Name(state).removeprefix("STATE_")  # type: ignore[arg-type]


def can_transition(source: int, target: int) -> bool:
    return target in TRANSITIONS.get(source, frozenset())


def transition(
    intent: intent_pb2.Intent,
    target: int,
    *,
    reason: str,
    message: str,
    now: datetime,
) -> intent_pb2.Intent:
    """A copy of `intent` in state `target`, with the change in its history.

    The store fills in the revision when it commits the change."""
    if not can_transition(intent.state, target):
        raise TransitionError(f"{name(intent.state)} -> {name(target)} is not allowed")
    changed = intent_pb2.Intent()
    changed.CopyFrom(intent)
    _record(changed, target, reason=reason, message=message, now=now)
    return changed


def noted(
    intent: intent_pb2.Intent, *, reason: str, message: str, now: datetime
) -> intent_pb2.Intent:
    """A copy of `intent` with an event in its history that changes no state
    (a GPU of the intent went unhealthy, its agent went quiet, it recovered)."""
    changed = intent_pb2.Intent()
    changed.CopyFrom(intent)
    state_message = changed.state_message
    _record(changed, intent.state, reason=reason, message=message, now=now)
    changed.state_message = state_message
    return changed


def created(intent: intent_pb2.Intent, *, now: datetime) -> intent_pb2.Intent:
    """A copy of a new intent in PENDING, its creation in the history."""
    changed = intent_pb2.Intent()
    changed.CopyFrom(intent)
    changed.create_time.FromDatetime(now)
    _record(changed, PENDING, reason="Created", message="intent accepted", now=now)
    return changed


def _record(
    intent: intent_pb2.Intent, target: int, *, reason: str, message: str, now: datetime
) -> None:
    entry = intent.history.add(
        from_state=intent.state,
        to_state=target,
        reason=reason,
        message=message,
    )
    entry.time.FromDatetime(now)
    if len(intent.history) > HISTORY_LIMIT:
        del intent.history[1 : len(intent.history) - HISTORY_LIMIT + 1]
    intent.state = target  # type: ignore[assignment]
    intent.state_message = message
    intent.update_time.FromDatetime(now)


def cancel_target(state: int, *, placed: bool = False) -> int | None:
    """Where a cancel takes an intent: CANCELLED at once when it holds nothing,
    CANCELLING when something must be released — it holds GPUs, or it is queued
    after it ran somewhere (`placed`: preempted or failed over, its namespace kept
    for the next placement) —, None when it is already cancelled or cancelling
    (cancel is idempotent). Raises TransitionError for an intent that already
    SUCCEEDED or FAILED."""
    if state in (CANCELLED, CANCELLING):
        return None
    if state in (SUCCEEDED, FAILED):
        raise TransitionError(f"the intent already {name(state).lower()}; nothing to cancel")
    if state in HOLDING or (state == QUEUED and placed):
        return CANCELLING
    return CANCELLED
