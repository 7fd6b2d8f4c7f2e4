"""What an intent uses and has cost so far, from its history, its placement
and the GPUs attributed to it. Pure functions over plain inputs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from google.protobuf.duration_pb2 import Duration

from controlplane.intents import lifecycle
from flare.v1 import common_pb2, intent_pb2
from flare.v1 import telemetry_service_pb2 as pb

_MICRO = Decimal("0.000001")


def running_seconds(intent: intent_pb2.Intent, now: datetime) -> float:
    """Seconds spent RUNNING, summed over every stretch, up to `now`."""
    total = 0.0
    since: datetime | None = None
    for change in intent.history:
        moment = change.time.ToDatetime(tzinfo=now.tzinfo)
        if change.to_state == lifecycle.RUNNING and since is None:
            since = moment
        elif change.to_state != lifecycle.RUNNING and since is not None:
            total += (moment - since).total_seconds()
            since = None
    if since is not None:
        total += max(0.0, (now - since).total_seconds())
    return total


def cost_so_far(intent: intent_pb2.Intent, seconds: float) -> common_pb2.Money:
    hourly = intent.placement.hourly_cost
    try:
        rate = Decimal(hourly.amount or "0")
    except InvalidOperation:
        rate = Decimal(0)
    amount = (rate * Decimal(repr(seconds)) / 3600).quantize(_MICRO, ROUND_HALF_EVEN)
    return common_pb2.Money(currency_code=hourly.currency_code, amount=f"{amount:f}")


def usage(
    intent: intent_pb2.Intent, now: datetime, gpus: Iterable[tuple[str, pb.GpuSample | None]]
) -> intent_pb2.IntentUsage:
    """`gpus`: the intent's GPUs as (uuid, latest sample or None)."""
    seconds = running_seconds(intent, now)
    result = intent_pb2.IntentUsage(
        running_time=Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)),
        cost_so_far=cost_so_far(intent, seconds),
    )
    readings = []
    for uuid, sample in gpus:
        result.gpu_uuids.append(uuid)
        if sample is not None and sample.HasField("gpu_utilization_percent"):
            readings.append(sample.gpu_utilization_percent)
    if readings:
        result.gpu_utilization_percent = round(sum(readings) / len(readings), 2)
    return result
