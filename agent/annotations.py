"""The one table of the Node annotations and labels the agent writes and FLARE reads.

Keys are spelled as the FLUIDOS GPU code reads them (hyphenated: `gpu.fluidos.eu/memory-per-gpu`,
`cost.fluidos.eu/hourly-rate`). The spellings of FLARE's earlier documentation are aliases:
understood on read, never written. Every value is a string on the Node; `read` turns it into a
typed value and reports, rather than raises on, what cannot be parsed.

A node whose GPUs are not all one model is annotated with its majority model (ties go to the
model with more memory per GPU, then to the name): model, count, memory and the traits describe
those GPUs only, so that count x memory-per-gpu stays true, and `gpu.fluidos.eu/mix` lists every
model with its count.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum

from agent.config import NETWORK_TIERS, ProviderConfig
from agent.dra import Published
from agent.probe.base import GpuInfo, Inventory
from flare import gpus
from flare.money import CURRENCIES
from flare.quantity import QuantityError, format_bytes_gi, parse_quantity

LABEL_GPU = "node.fluidos.eu/gpu"
LABEL_RESOURCES = "node-role.fluidos.eu/resources"
LABELS = {LABEL_GPU: "true", LABEL_RESOURCES: "true"}

# Models whose NVIDIA datasheets list Multi-Instance GPU partitioning.
MIG_MODELS = frozenset(
    {"nvidia-a100", "nvidia-a30", "nvidia-h100", "nvidia-h200", "nvidia-gh200", "nvidia-b200"}
)


class Kind(Enum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    QUANTITY = "quantity"
    ENUM = "enum"


Value = str | int | Decimal | bool


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    kind: Kind
    unit: str
    example: str
    source: str
    meaning: str
    allowed: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    pattern: str = ""  # for strings: the full match the value must satisfy
    minimum: Decimal | None = None
    maximum: Decimal | None = None


_LOWER_HYPHEN = r"[a-z0-9]+(-[a-z0-9]+)*"
_ZERO = Decimal(0)
_ONE = Decimal(1)

KEYS: tuple[Key, ...] = (
    Key("gpu.fluidos.eu/vendor", Kind.ENUM, "", "nvidia", "probe: device vendor (NVML or amdsmi)",
        "GPU vendor", allowed=gpus.VENDORS),
    Key("gpu.fluidos.eu/model", Kind.STRING, "", "nvidia-h100",
        "probe: nvmlDeviceGetName / amdsmi product name, normalised by flare.gpus",
        "model of the node's GPUs (the majority model on a mixed node)",
        pattern=rf"({'|'.join(gpus.VENDORS)})-[a-z0-9]+(-[a-z0-9]+)*"),
    Key("gpu.fluidos.eu/count", Kind.INT, "GPUs", "8", "probe: nvmlDeviceGetCount",
        "number of GPUs of that model", minimum=_ONE),
    Key("gpu.fluidos.eu/memory-per-gpu", Kind.QUANTITY, "bytes (written in Gi)", "80Gi",
        "probe: nvmlDeviceGetMemoryInfo (total)", "memory of one GPU",
        aliases=("gpu.fluidos.eu/memory",), minimum=_ONE),
    Key("gpu.fluidos.eu/tier", Kind.ENUM, "", "premium", "table: flare.gpus tier of the model",
        "market tier", allowed=gpus.TIERS),
    Key("gpu.fluidos.eu/architecture", Kind.ENUM, "", "hopper",
        "probe: nvmlDeviceGetArchitecture / amdsmi ASIC info", "GPU architecture",
        allowed=gpus.ARCHITECTURES),
    Key("gpu.fluidos.eu/interconnect", Kind.ENUM, "", "nvlink",
        "probe: nvmlDeviceGetNvLinkState / amdsmi XGMI links (one GPU: the model's table entry)",
        "how the GPUs reach each other", allowed=gpus.INTERCONNECTS),
    Key("gpu.fluidos.eu/compute-capability", Kind.STRING, "", "9.0",
        "probe: nvmlDeviceGetCudaComputeCapability", "CUDA compute capability (NVIDIA only)",
        aliases=("gpu.fluidos.eu/compute_capability",), pattern=r"\d+\.\d+"),
    Key("gpu.fluidos.eu/fp32-tflops", Kind.FLOAT, "TFLOPS per GPU", "67",
        "table: flare.gpus figures for the interconnect (PCIe boards have their own)",
        "dense FP32 throughput of one GPU", aliases=("gpu.fluidos.eu/fp32_tflops",),
        minimum=_ZERO),
    Key("gpu.fluidos.eu/cores", Kind.INT, "cores per GPU", "16896",
        "read only: no probe call reports it yet; an operator may set it",
        "shader (CUDA) cores of one GPU", minimum=_ONE),
    Key("gpu.fluidos.eu/multi-gpu-efficiency", Kind.FLOAT, "fraction", "0.9",
        "read only: set by an operator", "scaling efficiency across the node's GPUs",
        aliases=("gpu.fluidos.eu/multi_gpu_efficiency",), minimum=_ZERO, maximum=_ONE),
    Key("gpu.fluidos.eu/mix", Kind.STRING, "GPUs per model", "nvidia-h100=6,nvidia-a100=2",
        "probe: every GPU's normalised model (written only when they differ)",
        "all models of a mixed node with their counts",
        pattern=r"[a-z0-9-]+=\d+(,[a-z0-9-]+=\d+)+"),
    Key("gpu.fluidos.eu/dra-driver", Kind.STRING, "", "gpu.nvidia.com",
        "ResourceSlices: spec.driver of the slices publishing the node's GPUs",
        "the DRA driver through which pods can claim the GPUs (resource.k8s.io/v1)",
        pattern=r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"),
    Key("gpu.fluidos.eu/dra-gpus", Kind.INT, "GPUs", "8",
        "ResourceSlices: devices of that driver whose type is a whole GPU",
        "GPUs the DRA driver offers for ResourceClaims", minimum=_ZERO),
    Key("nvidia.fluidos.eu/mig-capable", Kind.BOOL, "", "true",
        "probe: nvmlDeviceGetMigMode, or the model's MIG support",
        "whether the GPUs can be partitioned with MIG (NVIDIA only)",
        aliases=("nvidia.fluidos.eu/mig_capable",)),
    Key("location.fluidos.eu/region", Kind.STRING, "", "eu-west-1", "config: --region",
        "provider region", pattern=_LOWER_HYPHEN),
    Key("location.fluidos.eu/zone", Kind.STRING, "", "eu-west-1a", "config: --zone",
        "provider zone", pattern=_LOWER_HYPHEN),
    Key("cost.fluidos.eu/hourly-rate", Kind.FLOAT, "currency per GPU-hour", "2.50",
        "config: --hourly-rate", "price of one GPU for one hour",
        aliases=("cost.fluidos.eu/hourly_rate",), minimum=_ZERO),
    Key("cost.fluidos.eu/currency", Kind.ENUM, "ISO 4217", "EUR",
        "config: --hourly-rate (its currency)", "currency of the hourly rate",
        allowed=tuple(sorted(CURRENCIES))),
    Key("provider.fluidos.eu/name", Kind.STRING, "", "acme-gpu", "config: --provider",
        "who sells the node", pattern=r"[^\n]{1,63}"),
    Key("provider.fluidos.eu/preemptible", Kind.BOOL, "", "false", "config: --preemptible",
        "whether workloads may be evicted for the provider's own use"),
    Key("network.fluidos.eu/bandwidth-gbps", Kind.INT, "Gbit/s", "100",
        "config: --network-bandwidth-gbps", "network bandwidth of the node", minimum=_ONE),
    Key("network.fluidos.eu/latency-ms", Kind.INT, "ms", "5", "config: --network-latency-ms",
        "network latency to the provider's gateway", minimum=_ZERO),
    Key("network.fluidos.eu/tier", Kind.ENUM, "", "premium", "config: --network-tier",
        "network quality class", allowed=NETWORK_TIERS),
)  # fmt: skip

BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
ALIASES: dict[str, str] = {alias: key.name for key in KEYS for alias in key.aliases}


@dataclass(frozen=True, slots=True)
class Parsed:
    """Typed values by canonical key, and what could not be understood."""

    values: dict[str, Value] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_value(key: Key, text: str) -> Value:
    """The typed value of one annotation; ValueError saying why when it is malformed."""
    match key.kind:
        case Kind.STRING:
            if key.pattern and not re.fullmatch(key.pattern, text):
                raise ValueError(f"{text!r} is not of the form {key.example!r}")
            return text
        case Kind.ENUM:
            if text not in key.allowed:
                raise ValueError(f"{text!r} is not one of {', '.join(key.allowed)}")
            return text
        case Kind.BOOL:
            if text not in ("true", "false"):
                raise ValueError(f"{text!r} is not 'true' or 'false'")
            return text == "true"
        case Kind.INT:
            if not re.fullmatch(r"-?\d+", text):
                raise ValueError(f"{text!r} is not a whole number")
            _check_range(key, Decimal(text))
            return int(text)
        case Kind.FLOAT:
            if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", text):
                raise ValueError(f"{text!r} is not a decimal number")
            try:
                number = Decimal(text)
            except InvalidOperation as error:  # pragma: no cover - guarded by the pattern
                raise ValueError(f"{text!r} is not a decimal number") from error
            _check_range(key, number)
            return number
        case Kind.QUANTITY:
            try:
                quantity = parse_quantity(text)
            except QuantityError as error:
                raise ValueError(str(error)) from error
            _check_range(key, quantity)
            return quantity
    raise AssertionError(key.kind)  # pragma: no cover


def _check_range(key: Key, number: Decimal) -> None:
    if key.minimum is not None and number < key.minimum:
        raise ValueError(f"{number} is below the minimum {key.minimum}")
    if key.maximum is not None and number > key.maximum:
        raise ValueError(f"{number} is above the maximum {key.maximum}")


def read(annotations: Mapping[str, str]) -> Parsed:
    """Typed values of the known keys among `annotations`, aliases resolved. The canonical
    spelling wins over an alias; a disagreement between them is a problem. Unknown keys are
    ignored."""
    parsed = Parsed()
    for name in sorted(annotations):
        canonical = ALIASES.get(name, name)
        key = BY_NAME.get(canonical)
        if key is None:
            continue
        text = annotations[name]
        if name == canonical:
            value = _parse_reported(key, name, text, parsed.problems)
        else:
            value = _parse_alias(key, name, text, parsed.problems)
        if value is None:
            continue
        earlier = parsed.values.get(canonical)
        if earlier is not None and earlier != value:
            parsed.problems.append(
                f"{name}: {text!r} disagrees with {canonical} ({earlier!r}); using {canonical}"
            )
        if earlier is None or name == canonical:
            parsed.values[canonical] = value
    return parsed


def _parse_reported(key: Key, name: str, text: str, problems: list[str]) -> Value | None:
    try:
        return parse_value(key, text)
    except ValueError as error:
        problems.append(f"{name}: {error}")
        return None


def _parse_alias(key: Key, name: str, text: str, problems: list[str]) -> Value | None:
    # The earlier documentation wrote per-GPU memory as a bare number of Gi in places.
    if key.name == "gpu.fluidos.eu/memory-per-gpu" and re.fullmatch(r"\d+(\.\d+)?", text):
        text = f"{text}Gi"
    return _parse_reported(key, name, text, problems)


def validate(annotations: Mapping[str, str]) -> list[str]:
    """Problems with the values of the known keys (and aliases) in `annotations`."""
    return read(annotations).problems


def _decimal_text(number: Decimal) -> str:
    text = f"{number:f}"
    return text


def _float_text(number: float) -> str:
    return f"{number:g}"


def majority(devices: tuple[GpuInfo, ...]) -> tuple[str, int, Counter[str]]:
    """(model, count) of the most common model among `devices`, and every model's count."""
    counts = Counter(gpu.model or gpu.raw_name for gpu in devices)
    memory = {gpu.model or gpu.raw_name: gpu.memory_bytes for gpu in devices}
    model = min(counts, key=lambda m: (-counts[m], -memory[m], m))
    return model, counts[model], counts


def interconnect(inventory: Inventory, devices: tuple[GpuInfo, ...], table: str) -> str:
    """NVLink or Infinity Fabric when the GPUs are linked that way, PCIe otherwise; a single
    GPU has no peer, so the model's table entry stands."""
    if len(devices) < 2:
        return table if table in gpus.INTERCONNECTS else "pcie"
    indexes = {gpu.index for gpu in devices}
    kinds = {
        link.link_type
        for link in inventory.links
        if link.gpu_a in indexes and link.gpu_b in indexes
    }
    if "nvlink" in kinds:
        return "nvlink"
    if "xgmi" in kinds:
        return "infinity-fabric"
    return "pcie"


def labels_for(inventory: Inventory) -> dict[str, str]:
    """The selector labels: every agent node offers resources; GPU nodes say so."""
    labels = {LABEL_RESOURCES: "true"}
    if inventory.gpus:
        labels[LABEL_GPU] = "true"
    return labels


def annotations_for(
    inventory: Inventory, config: ProviderConfig, dra: Published | None = None
) -> dict[str, str]:
    """What the agent writes on its Node for this inventory and provider configuration,
    and what the node's DRA driver publishes of its GPUs."""
    out: dict[str, str] = {
        "location.fluidos.eu/region": config.region,
        "cost.fluidos.eu/hourly-rate": _decimal_text(config.hourly_rate.amount),
        "cost.fluidos.eu/currency": config.hourly_rate.currency,
        "provider.fluidos.eu/name": config.provider_name,
        "provider.fluidos.eu/preemptible": "true" if config.preemptible else "false",
    }
    if config.zone:
        out["location.fluidos.eu/zone"] = config.zone
    if config.network_bandwidth_gbps is not None:
        out["network.fluidos.eu/bandwidth-gbps"] = str(config.network_bandwidth_gbps)
    if config.network_latency_ms is not None:
        out["network.fluidos.eu/latency-ms"] = str(config.network_latency_ms)
    if config.network_tier is not None:
        out["network.fluidos.eu/tier"] = config.network_tier
    if inventory.gpus:
        out.update(_gpu_annotations(inventory))
        if dra is not None:
            out["gpu.fluidos.eu/dra-driver"] = dra.driver
            out["gpu.fluidos.eu/dra-gpus"] = str(dra.whole_gpus)
    return dict(sorted(out.items()))


def _gpu_annotations(inventory: Inventory) -> dict[str, str]:
    model, count, counts = majority(inventory.gpus)
    devices = tuple(gpu for gpu in inventory.gpus if (gpu.model or gpu.raw_name) == model)
    first = devices[0]
    spec = gpus.lookup(model)
    out = {
        "gpu.fluidos.eu/count": str(count),
        "gpu.fluidos.eu/memory-per-gpu": format_bytes_gi(
            gpus.nominal_memory_gib(spec, min(g.memory_bytes for g in devices)) * 2**30
        ),
    }
    if first.vendor in gpus.VENDORS:
        out["gpu.fluidos.eu/vendor"] = first.vendor
    if spec is not None:
        out["gpu.fluidos.eu/model"] = spec.model
        out["gpu.fluidos.eu/tier"] = spec.tier
    link = interconnect(inventory, devices, spec.interconnect if spec else "pcie")
    out["gpu.fluidos.eu/interconnect"] = link
    architecture = first.architecture or (spec.architecture if spec else "")
    if architecture in gpus.ARCHITECTURES:
        out["gpu.fluidos.eu/architecture"] = architecture
    if first.compute_capability:
        out["gpu.fluidos.eu/compute-capability"] = first.compute_capability
    if spec is not None:
        out["gpu.fluidos.eu/fp32-tflops"] = _float_text(spec.figures(link)[0])
    if first.vendor == "nvidia":
        capable = any(g.mig_enabled for g in devices) or (spec is not None and model in MIG_MODELS)
        out["nvidia.fluidos.eu/mig-capable"] = "true" if capable else "false"
    if len(counts) > 1:
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        out["gpu.fluidos.eu/mix"] = ",".join(f"{name}={n}" for name, n in ordered)
    return out


def render_markdown() -> str:
    """docs/annotations.md, generated from this table."""
    lines = [
        "# Node annotations and labels",
        "",
        "<!-- Generated from agent/annotations.py by agent.annotations.render_markdown();"
        " do not edit. -->",
        "",
        "The node agent writes these annotations on its own Node with server-side apply (field",
        "manager `flare-agent`) and FLARE reads them. Every value is a string; the type says how",
        "it is parsed and validated, on write and on read. A malformed value is reported, never",
        "fatal.",
        "",
        "| key | type | unit | example | source | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in KEYS:
        kind = key.kind.value
        if key.allowed:
            kind = f"enum: {', '.join(f'`{v}`' for v in key.allowed)}"
        lines.append(
            f"| `{key.name}` | {kind} | {key.unit} | `{key.example}` | {key.source} "
            f"| {key.meaning} |"
        )
    lines += [
        "",
        "## Aliases",
        "",
        "Spellings of FLARE's earlier documentation. They are understood on read and never",
        "written; when both spellings are present the canonical one wins and the disagreement is",
        "reported. A bare number under `gpu.fluidos.eu/memory` is read as Gi.",
        "",
        "| alias | canonical key |",
        "| --- | --- |",
    ]
    lines += [f"| `{alias}` | `{name}` |" for alias, name in ALIASES.items()]
    lines += [
        "",
        "## Labels",
        "",
        "| label | value | when |",
        "| --- | --- | --- |",
        f"| `{LABEL_RESOURCES}` | `true` | every node the agent runs on: FLUIDOS publishes it |",
        f"| `{LABEL_GPU}` | `true` | the node has at least one GPU |",
        "",
        "## Mixed nodes",
        "",
        "When a node's GPUs are not all one model, the annotations describe the majority model",
        "(ties: more memory per GPU, then the name): `count`, `memory-per-gpu` and the traits are",
        "those GPUs', so count x memory-per-gpu stays true, and `gpu.fluidos.eu/mix` lists every",
        "model with its count, most common first.",
        "",
        "## Cross-check with GPU Feature Discovery",
        "",
        "When the Node carries GFD's `nvidia.com/gpu.product`, `nvidia.com/gpu.count` or",
        "`nvidia.com/gpu.memory` (MiB), the agent compares them with its own inventory. A",
        "disagreement (another model, another count, memory more than 5% apart) sets the Node",
        "condition `FlareGpuInventoryMismatch=True` and records a Warning Event on the Node; the",
        "condition goes back to `False` once they agree.",
        "",
        "## Cross-check with DRA ResourceSlices",
        "",
        "Where a DRA driver publishes the node's GPUs (`resource.k8s.io/v1` ResourceSlices with",
        "`spec.nodeName` the node; drivers `gpu.nvidia.com` and `gpu.amd.com`), the agent reads",
        "the whole GPUs of each pool's newest generation and compares them with its inventory:",
        "the count, each GPU's identity (NVIDIA's `uuid`, AMD's",
        "`resource.kubernetes.io/pciBusID`), its model (`productName` through flare.gpus) and",
        "its `memory` capacity (5% tolerance; AMD's 0, unreadable, is not compared). A",
        "disagreement goes to the same condition and Warning Event as GFD's. The driver and its",
        "GPU count become `gpu.fluidos.eu/dra-driver` and `gpu.fluidos.eu/dra-gpus`, and",
        "`dra_driver`, `dra_gpus` in the Flavor. Where the agent may not list ResourceSlices",
        "(403) or the cluster does not serve them (404), it says so once and checks nothing.",
        "",
        "## FLUIDOS Flavor",
        "",
        "The agent also keeps one `Flavor` (`nodecore.fluidos.eu/v1alpha1`, namespace `fluidos`",
        "unless configured) per node, named `flare-<node name>`, owned by the Node so that it goes",
        "with it, and applied by the same field manager. Its status is never written.",
        "",
        "| Flavor field | from |",
        "| --- | --- |",
        "| `spec.flavorType.typeIdentifier` | `K8Slice` |",
        "| `...characteristics.architecture` | the Node's `status.nodeInfo.architecture` |",
        "| `...characteristics.cpu`, `memory`, `pods` | the Node's `status.allocatable` |",
        "| `...characteristics.gpu.model` | `gpu.fluidos.eu/model` |",
        "| `...characteristics.gpu.cores` | number of GPUs of that model (upstream counts GPUs) |",
        "| `...characteristics.gpu.memory` | count x memory-per-gpu, in Gi |",
        "| `...characteristics.gpu.<trait>` | FLARE traits upstream's GPU lacks (below) |",
        "| `...policies.partitionability` | minimum 0 and steps of 1 CPU, 1Gi, 1 pod, 1 GPU |",
        "| `spec.price` | hourly rate x count, the currency, period `hourly` |",
        "| `spec.location` | country and city from the configuration; region and zone in "
        "`additionalNotes` |",
        "| `spec.owner` | node id, domain, ip (and Liqo id) from the configuration |",
        "| `spec.providerID` | the configured node id |",
        "",
        "Upstream's GPU struct has only `model`, `cores` and `memory`. `typeData` keeps unknown",
        "fields, so the other traits go next to them inside `characteristics.gpu`, with the JSON",
        "names of the FLUIDOS GPU fork, whose solver filters read them there: `vendor`, `tier`,",
        "`count`, `architecture`, `interconnect`, `compute_capability`, `fp32_tflops`,",
        "`multi_instance`, `region`, `zone`, `hourly_rate`, `provider`, `pre_emptible`,",
        "`network_bandwidth`, `network_latency_ms`, `network_tier`, and FLARE's `dra_driver`,",
        "`dra_gpus`. Upstream ignores them.",
        "",
    ]
    return "\n".join(lines)
