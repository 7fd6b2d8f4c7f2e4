"""Validation of intents and intent requests: a pure function from a message
to every violation in it, so a user fixes all of them in one round trip.

Paths name proto fields the way google.rpc.BadRequest expects:
"intent.workload.resources.gpu.count".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

from flare import geo, gpus
from flare.money import MoneyError, check_currency, parse_amount
from flare.quantity import QuantityError, parse_quantity
from flare.v1 import common_pb2, intent_pb2
from flare.violation import FieldViolation

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COMPUTE_CAPABILITY = re.compile(r"^\d{1,2}\.\d$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_GPUS_PER_INTENT = 1024
MAX_COMMANDS = 64
MAX_LIST = 256

_Violations = Iterator[FieldViolation]


def validate_intent(
    intent: intent_pb2.Intent, *, now: datetime, path: str = "intent"
) -> list[FieldViolation]:
    """Every violation in the user-settable fields of an intent."""
    return list(_intent(intent, now, path))


def validate_intent_id(intent_id: str, path: str = "intent_id") -> list[FieldViolation]:
    if intent_id and not DNS_LABEL.match(intent_id):
        return [_label(path, intent_id)]
    return []


def validate_request_id(request_id: str, path: str = "request_id") -> list[FieldViolation]:
    if request_id and not REQUEST_ID.match(request_id):
        return [
            FieldViolation(
                path, "must be 1 to 128 characters of letters, digits and . _ : - (a UUID fits)"
            )
        ]
    return []


def validate_money(money: common_pb2.Money, path: str) -> list[FieldViolation]:
    found = []
    try:
        parse_amount(money.amount)
    except MoneyError as error:
        found.append(FieldViolation(f"{path}.amount", str(error)))
    try:
        check_currency(money.currency_code)
    except MoneyError as error:
        found.append(FieldViolation(f"{path}.currency_code", str(error)))
    return found


def _intent(intent: intent_pb2.Intent, now: datetime, path: str) -> _Violations:
    if intent.objective == intent_pb2.OBJECTIVE_UNSPECIFIED:
        yield FieldViolation(
            f"{path}.objective",
            "required; one of Cost_Minimization, Performance_Maximization, "
            "Latency_Minimization, Energy_Efficiency, Balanced_Optimization",
        )
    if not intent.HasField("workload"):
        yield FieldViolation(f"{path}.workload", "required: type, name and image at least")
    else:
        yield from _workload(intent.workload, f"{path}.workload")
    if intent.HasField("constraints"):
        yield from _constraints(intent.constraints, now, f"{path}.constraints")
    if intent.HasField("sla"):
        yield from _sla(intent.sla, f"{path}.sla")
    if intent.notification_url and not is_webhook_url(intent.notification_url):
        yield FieldViolation(
            f"{path}.notification_url", "must be an http:// or https:// URL with a host"
        )


def is_webhook_url(url: str) -> bool:
    parsed = urlsplit(url)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and len(url) <= 2048


def _label(path: str, value: str) -> FieldViolation:
    return FieldViolation(
        path,
        f"{value!r} must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
        "starting and ending with a letter or digit",
    )


def _positive_quantity(value: str, path: str, *, allow_zero: bool = False) -> _Violations:
    try:
        amount = parse_quantity(value)
    except QuantityError as error:
        yield FieldViolation(path, str(error))
        return
    if amount < 0 or (amount == 0 and not allow_zero):
        yield FieldViolation(path, f"{value!r} must be greater than zero")


def _workload(workload: intent_pb2.Workload, path: str) -> _Violations:
    if workload.type == intent_pb2.WORKLOAD_TYPE_UNSPECIFIED:
        yield FieldViolation(f"{path}.type", "required: service or job")
    if not workload.name:
        yield FieldViolation(f"{path}.name", "required: a DNS-1123 label such as llm-inference")
    elif not DNS_LABEL.match(workload.name):
        yield _label(f"{path}.name", workload.name)
    if not workload.image:
        yield FieldViolation(
            f"{path}.image", "required: a container image such as pytorch/pytorch:2.4.0"
        )
    elif any(c.isspace() for c in workload.image) or len(workload.image) > 512:
        yield FieldViolation(f"{path}.image", "must be an image reference without spaces")
    if len(workload.commands) > MAX_COMMANDS:
        yield FieldViolation(f"{path}.commands", f"at most {MAX_COMMANDS} commands")
    for index, command in enumerate(workload.commands):
        if not command.strip():
            yield FieldViolation(f"{path}.commands[{index}]", "must not be empty")
    yield from _env(workload, path)
    yield from _ports(workload.ports, f"{path}.ports")
    if workload.HasField("resources"):
        yield from _resources(workload.resources, f"{path}.resources")
    for index, volume in enumerate(workload.storage.volumes):
        yield from _volume(volume, f"{path}.storage.volumes[{index}]")
    names = [v.name for v in workload.storage.volumes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield FieldViolation(f"{path}.storage.volumes", f"volume name {name!r} is used twice")
    if workload.HasField("scaling"):
        if workload.type == intent_pb2.WORKLOAD_TYPE_JOB:
            yield FieldViolation(f"{path}.scaling", "applies to services; a job uses batch")
        yield from _scaling(workload.scaling, f"{path}.scaling")
    if workload.HasField("batch"):
        if workload.type == intent_pb2.WORKLOAD_TYPE_SERVICE:
            yield FieldViolation(f"{path}.batch", "applies to jobs; a service uses scaling")
        yield from _batch(workload.batch, f"{path}.batch")


def _env(workload: intent_pb2.Workload, path: str) -> _Violations:
    seen: set[str] = set()
    for index, env in enumerate(workload.env):
        if not ENV_NAME.match(env.name):
            yield FieldViolation(
                f"{path}.env[{index}].name",
                f"{env.name!r} must be letters, digits and '_', not starting with a digit",
            )
        elif env.name in seen:
            yield FieldViolation(f"{path}.env[{index}].name", f"{env.name!r} is set twice")
        seen.add(env.name)
    for index, secret in enumerate(workload.secrets):
        secret_path = f"{path}.secrets[{index}]"
        if not DNS_SUBDOMAIN.match(secret.name):
            yield FieldViolation(f"{secret_path}.name", f"{secret.name!r} must be a Secret name")
        if not ENV_NAME.match(secret.env):
            yield FieldViolation(f"{secret_path}.env", f"{secret.env!r} must be a variable name")
        elif secret.env in seen:
            yield FieldViolation(f"{secret_path}.env", f"{secret.env!r} is already set")
        seen.add(secret.env)


def _ports(ports: Iterable[intent_pb2.Port], path: str) -> _Violations:
    seen: set[tuple[int, int]] = set()
    for index, port in enumerate(ports):
        port_path = f"{path}[{index}]"
        if not 1 <= port.port <= 65535:
            yield FieldViolation(f"{port_path}.port", f"{port.port} is not between 1 and 65535")
        key = (port.port, port.protocol or intent_pb2.PROTOCOL_TCP)
        if key in seen:
            yield FieldViolation(f"{port_path}.port", f"port {port.port} is listed twice")
        seen.add(key)
        if port.domain:
            if not DNS_SUBDOMAIN.match(port.domain):
                yield FieldViolation(f"{port_path}.domain", f"{port.domain!r} is not a host name")
            if not port.expose:
                yield FieldViolation(f"{port_path}.domain", "a domain needs expose: true")


def _resources(resources: intent_pb2.Resources, path: str) -> _Violations:
    if resources.cpu:
        yield from _positive_quantity(resources.cpu, f"{path}.cpu")
    if resources.memory:
        yield from _positive_quantity(resources.memory, f"{path}.memory")
    if resources.HasField("gpu"):
        yield from _gpu(resources.gpu, f"{path}.gpu")


def _vocabulary(value: str, allowed: tuple[str, ...], path: str) -> _Violations:
    if value and value != gpus.ANY and value not in allowed:
        yield FieldViolation(path, f"{value!r} is not one of: {', '.join(allowed)}")


def _gpu(gpu: intent_pb2.GpuRequirements, path: str) -> _Violations:
    spec = None
    if gpu.model and gpu.model.lower() != gpus.ANY:
        spec = gpus.lookup(gpu.model)
        if spec is None:
            close = gpus.suggest(gpu.model)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            yield FieldViolation(
                f"{path}.model",
                f"unknown GPU model {gpu.model!r}{hint} ('any' accepts every model)",
            )
    if not 0 <= gpu.count <= MAX_GPUS_PER_INTENT:
        yield FieldViolation(
            f"{path}.count", f"{gpu.count} is not between 1 and {MAX_GPUS_PER_INTENT}"
        )
    bounds: dict[str, Decimal] = {}
    for name in ("memory", "memory_min", "memory_max"):
        value = getattr(gpu, name)
        if value:
            found = list(_positive_quantity(value, f"{path}.{name}"))
            yield from found
            if not found:
                bounds[name] = parse_quantity(value)
    low = max((bounds[n] for n in ("memory", "memory_min") if n in bounds), default=None)
    if low is not None and "memory_max" in bounds and low > bounds["memory_max"]:
        yield FieldViolation(f"{path}.memory_max", "must not be below memory or memory_min")
    yield from _vocabulary(gpu.vendor, gpus.VENDORS, f"{path}.vendor")
    yield from _vocabulary(gpu.tier, gpus.TIERS, f"{path}.tier")
    yield from _vocabulary(gpu.architecture, gpus.ARCHITECTURES, f"{path}.architecture")
    yield from _vocabulary(gpu.interconnect, gpus.INTERCONNECTS, f"{path}.interconnect")
    yield from _vocabulary(gpu.topology, gpus.TOPOLOGIES, f"{path}.topology")
    yield from _vocabulary(
        gpu.sharing_strategy, gpus.SHARING_STRATEGIES, f"{path}.sharing_strategy"
    )
    if spec is not None:
        if gpu.vendor and gpu.vendor not in (gpus.ANY, spec.vendor):
            yield FieldViolation(f"{path}.vendor", f"{spec.model} is made by {spec.vendor}")
        if gpu.architecture and gpu.architecture not in (gpus.ANY, spec.architecture):
            yield FieldViolation(f"{path}.architecture", f"{spec.model} is {spec.architecture}")
    cc = gpu.compute_capability
    if cc and cc != gpus.ANY and not COMPUTE_CAPABILITY.match(cc):
        yield FieldViolation(f"{path}.compute_capability", "must look like 8.0 or 9.0")
    if gpu.cores_min < 0 or gpu.cores_max < 0:
        yield FieldViolation(f"{path}.cores_min", "core counts must not be negative")
    elif gpu.cores_max and gpu.cores_min > gpu.cores_max:
        yield FieldViolation(f"{path}.cores_max", "must not be below cores_min")
    if gpu.clock_speed_min:
        yield from _positive_quantity(gpu.clock_speed_min, f"{path}.clock_speed_min")
    if gpu.fp32_tflops < 0:
        yield FieldViolation(f"{path}.fp32_tflops", "must not be negative")
    if not 0 <= gpu.multi_gpu_efficiency <= 1:
        yield FieldViolation(f"{path}.multi_gpu_efficiency", "must be between 0 and 1")
    if gpu.HasField("shared") and gpu.HasField("dedicated") and gpu.shared and gpu.dedicated:
        yield FieldViolation(f"{path}.dedicated", "a GPU cannot be both shared and dedicated")


def _volume(volume: intent_pb2.Volume, path: str) -> _Violations:
    if not DNS_LABEL.match(volume.name):
        yield _label(f"{path}.name", volume.name)
    if volume.size:
        yield from _positive_quantity(volume.size, f"{path}.size")
    elif volume.type != intent_pb2.VOLUME_TYPE_TEMPORARY:
        yield FieldViolation(f"{path}.size", "required for a persistent volume, e.g. 50Gi")
    if not volume.path.startswith("/"):
        yield FieldViolation(f"{path}.path", f"{volume.path!r} must be an absolute path")


def _scaling(scaling: intent_pb2.Scaling, path: str) -> _Violations:
    if scaling.min_replicas < 0:
        yield FieldViolation(f"{path}.min_replicas", "must not be negative")
    if scaling.max_replicas and scaling.max_replicas < scaling.min_replicas:
        yield FieldViolation(f"{path}.max_replicas", "must not be below min_replicas")
    for name in ("target_cpu_percent", "target_gpu_percent"):
        value = getattr(scaling, name)
        if value and not 1 <= value <= 100:
            yield FieldViolation(f"{path}.{name}", f"{value} is not between 1 and 100")


def _batch(batch: intent_pb2.Batch, path: str) -> _Violations:
    if batch.parallel_tasks < 0:
        yield FieldViolation(f"{path}.parallel_tasks", "must not be negative")
    if batch.max_retries < 0:
        yield FieldViolation(f"{path}.max_retries", "must not be negative")
    if batch.HasField("timeout") and batch.timeout.ToTimedelta().total_seconds() <= 0:
        yield FieldViolation(f"{path}.timeout", "must be positive")


def _constraints(constraints: intent_pb2.Constraints, now: datetime, path: str) -> _Violations:
    for name in ("max_hourly_cost", "max_total_cost"):
        if constraints.HasField(name):
            yield from validate_money(getattr(constraints, name), f"{path}.{name}")
    if constraints.bid and not constraints.HasField("max_hourly_cost"):
        yield FieldViolation(f"{path}.bid", "needs max_hourly_cost, the most it may bid")
    if constraints.location:
        problem = geo.location_error(constraints.location)
        if problem:
            yield FieldViolation(f"{path}.location", problem)
    if constraints.max_latency_ms < 0:
        yield FieldViolation(f"{path}.max_latency_ms", "must not be negative")
    if constraints.HasField("deadline"):
        deadline = constraints.deadline.ToDatetime(tzinfo=now.tzinfo)
        if deadline <= now:
            yield FieldViolation(f"{path}.deadline", "must be in the future")
    if len(constraints.providers) > MAX_LIST:
        yield FieldViolation(f"{path}.providers", f"at most {MAX_LIST} providers")
    for index, provider in enumerate(constraints.providers):
        if not provider.strip():
            yield FieldViolation(f"{path}.providers[{index}]", "must not be empty")


def _sla(sla: intent_pb2.Sla, path: str) -> _Violations:
    if not 0 <= sla.availability <= 100:
        yield FieldViolation(f"{path}.availability", "must be a percentage between 0 and 100")
    interruption = sla.max_interruption_time
    if sla.HasField("max_interruption_time") and interruption.ToTimedelta().total_seconds() < 0:
        yield FieldViolation(f"{path}.max_interruption_time", "must not be negative")
