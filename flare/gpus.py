"""The GPU vocabulary: models, aliases, vendors, architectures, tiers, interconnects.

One table for the whole system: intents are validated against it, the agent
normalises what NVML or amdsmi report with it, and placement reads the
performance and power figures from it. Spellings are those of the
gpu.fluidos.eu annotations (lower case, hyphenated, vendor-prefixed models).

Figures are per GPU, dense (no sparsity), from the vendors' datasheets named in
each row's `source`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

VENDORS = ("nvidia", "amd", "intel")
ARCHITECTURES = (
    "blackwell",
    "hopper",
    "ada-lovelace",
    "ampere",
    "turing",
    "volta",
    "cdna3",
    "cdna2",
    "rdna3",
)
TIERS = ("premium", "standard", "gaming", "inference", "budget")
INTERCONNECTS = ("nvlink", "infinity-fabric", "pcie", "xe-link")
TOPOLOGIES = ("all-to-all", "nvswitch", "ring", "mesh")
SHARING_STRATEGIES = ("mig", "sriov", "time-slicing", "mps", "none")
ANY = "any"


@dataclass(frozen=True, slots=True)
class GpuSpec:
    model: str
    vendor: str
    architecture: str
    memory_gib: tuple[int, ...]  # memory variants; the first is the most common
    compute_capability: str  # CUDA compute capability; "" for AMD
    fp32_tflops: float
    fp16_tflops: float  # dense FP16/BF16 tensor (matrix) throughput
    memory_bandwidth_gbs: int
    tdp_watts: int
    interconnect: str
    tier: str
    aliases: tuple[str, ...]
    source: str
    # The PCIe board of a model whose main figures are for SXM/OAM modules.
    pcie: PcieVariant | None = None

    def figures(self, interconnect: str) -> tuple[float, float, int]:
        """(FP32 TFLOPS, dense FP16/BF16 TFLOPS, TDP watts) of the board an
        offer has: the PCIe variant's when the offer says PCIe."""
        if interconnect == "pcie" and self.pcie is not None:
            return self.pcie.fp32_tflops, self.pcie.fp16_tflops, self.pcie.tdp_watts
        return self.fp32_tflops, self.fp16_tflops, self.tdp_watts


@dataclass(frozen=True, slots=True)
class PcieVariant:
    fp32_tflops: float
    fp16_tflops: float
    memory_bandwidth_gbs: int
    tdp_watts: int
    source: str


_H100 = "NVIDIA H100 Tensor Core GPU datasheet (SXM5 figures)"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB figures)"
SPECS: tuple[GpuSpec, ...] = (
    GpuSpec(
        "nvidia-b200",
        "nvidia",
        "blackwell",
        (180, 192),
        "10.0",
        80.0,
        2250.0,
        8000,
        1000,
        "nvlink",
        "premium",
        ("b200",),
        "NVIDIA HGX B200 datasheet",
    ),
    GpuSpec(
        "nvidia-h200",
        "nvidia",
        "hopper",
        (141,),
        "9.0",
        67.0,
        989.0,
        4800,
        700,
        "nvlink",
        "premium",
        ("h200", "h200-sxm"),
        "NVIDIA H200 datasheet (SXM)",
    ),
    GpuSpec(
        "nvidia-gh200",
        "nvidia",
        "hopper",
        (96, 144),
        "9.0",
        67.0,
        990.0,
        4000,
        1000,
        "nvlink",
        "premium",
        ("gh200", "gh200-96gb", "gh200-144gb", "grace-hopper"),
        "NVIDIA GH200 Grace Hopper Superchip datasheet (96 GB HBM3 figures; the power is the "
        "module's configurable maximum, Grace CPU and memory included)",
    ),
    GpuSpec(
        "nvidia-h100",
        "nvidia",
        "hopper",
        (80, 94),
        "9.0",
        67.0,
        989.0,
        3350,
        700,
        "nvlink",
        "premium",
        ("h100", "h100-80gb", "h100-sxm", "h100-sxm5", "h100-pcie", "h100-nvl", "h100-mega"),
        _H100,
        PcieVariant(51.0, 756.0, 2000, 350, "NVIDIA H100 Tensor Core GPU datasheet (PCIe figures)"),
    ),
    GpuSpec(
        "nvidia-a100",
        "nvidia",
        "ampere",
        (80, 40),
        "8.0",
        19.5,
        312.0,
        2039,
        400,
        "nvlink",
        "premium",
        ("a100", "a100-80gb", "a100-40gb", "a100-sxm", "a100-sxm4", "a100-pcie", "a100-80gb-sxm"),
        _A100,
        PcieVariant(
            19.5, 312.0, 1935, 300, "NVIDIA A100 Tensor Core GPU datasheet (PCIe 80GB figures)"
        ),
    ),
    GpuSpec(
        "nvidia-l40s",
        "nvidia",
        "ada-lovelace",
        (48,),
        "8.9",
        91.6,
        362.0,
        864,
        350,
        "pcie",
        "standard",
        ("l40s",),
        "NVIDIA L40S datasheet",
    ),
    GpuSpec(
        "nvidia-l40",
        "nvidia",
        "ada-lovelace",
        (48,),
        "8.9",
        90.5,
        181.0,
        864,
        300,
        "pcie",
        "standard",
        ("l40",),
        "NVIDIA L40 datasheet",
    ),
    GpuSpec(
        "nvidia-a40",
        "nvidia",
        "ampere",
        (48,),
        "8.6",
        37.4,
        150.0,
        696,
        300,
        "pcie",
        "standard",
        ("a40",),
        "NVIDIA A40 datasheet",
    ),
    GpuSpec(
        "nvidia-a30",
        "nvidia",
        "ampere",
        (24,),
        "8.0",
        10.3,
        165.0,
        933,
        165,
        "pcie",
        "standard",
        ("a30", "a30-24gb"),
        "NVIDIA A30 Tensor Core GPU datasheet",
    ),
    GpuSpec(
        "nvidia-rtx-6000-ada",
        "nvidia",
        "ada-lovelace",
        (48,),
        "8.9",
        91.1,
        364.2,
        960,
        300,
        "pcie",
        "standard",
        ("rtx-6000-ada", "rtx6000-ada", "rtx6000ada", "rtx-6000-ada-generation"),
        "NVIDIA RTX 6000 Ada Generation datasheet; dense FP16 (FP32 accumulate) from the "
        "NVIDIA Ada GPU architecture whitepaper",
    ),
    GpuSpec(
        "nvidia-rtx-a6000",
        "nvidia",
        "ampere",
        (48,),
        "8.6",
        38.7,
        155.0,
        768,
        300,
        "pcie",
        "standard",
        ("a6000", "rtx-a6000", "rtxa6000"),
        "NVIDIA RTX A6000 datasheet",
    ),
    GpuSpec(
        "nvidia-rtx-a5000",
        "nvidia",
        "ampere",
        (24,),
        "8.6",
        27.8,
        111.1,
        768,
        230,
        "pcie",
        "standard",
        ("a5000", "rtx-a5000", "rtxa5000"),
        "NVIDIA RTX A5000 datasheet (tensor figure halved: the datasheet quotes it with sparsity)",
    ),
    GpuSpec(
        "nvidia-rtx-a4000",
        "nvidia",
        "ampere",
        (16,),
        "8.6",
        19.2,
        76.7,
        448,
        140,
        "pcie",
        "standard",
        ("a4000", "rtx-a4000", "rtxa4000"),
        "NVIDIA RTX A4000 datasheet (tensor figure halved: the datasheet quotes it with sparsity)",
    ),
    GpuSpec(
        "nvidia-a10",
        "nvidia",
        "ampere",
        (24,),
        "8.6",
        31.2,
        125.0,
        600,
        150,
        "pcie",
        "inference",
        ("a10", "a10g"),
        "NVIDIA A10 datasheet",
    ),
    GpuSpec(
        "nvidia-l4",
        "nvidia",
        "ada-lovelace",
        (24,),
        "8.9",
        30.3,
        121.0,
        300,
        72,
        "pcie",
        "inference",
        ("l4",),
        "NVIDIA L4 datasheet",
    ),
    GpuSpec(
        "nvidia-t4",
        "nvidia",
        "turing",
        (16,),
        "7.5",
        8.1,
        65.0,
        320,
        70,
        "pcie",
        "inference",
        ("t4", "tesla-t4"),
        "NVIDIA T4 datasheet",
    ),
    GpuSpec(
        "nvidia-v100",
        "nvidia",
        "volta",
        (32, 16),
        "7.0",
        15.7,
        125.0,
        900,
        300,
        "nvlink",
        "standard",
        ("v100", "v100-32gb", "v100-16gb", "tesla-v100"),
        "NVIDIA V100 datasheet (SXM2)",
    ),
    GpuSpec(
        "nvidia-rtx-4090",
        "nvidia",
        "ada-lovelace",
        (24,),
        "8.9",
        82.6,
        165.2,
        1008,
        450,
        "pcie",
        "gaming",
        ("rtx-4090", "rtx4090", "4090"),
        "NVIDIA Ada GPU architecture whitepaper",
    ),
    GpuSpec(
        "nvidia-rtx-4080",
        "nvidia",
        "ada-lovelace",
        (16,),
        "8.9",
        48.7,
        97.5,
        717,
        320,
        "pcie",
        "gaming",
        ("rtx-4080", "rtx4080", "4080"),
        "NVIDIA Ada GPU architecture whitepaper",
    ),
    GpuSpec(
        "nvidia-rtx-3090",
        "nvidia",
        "ampere",
        (24,),
        "8.6",
        35.6,
        71.0,
        936,
        350,
        "pcie",
        "gaming",
        ("rtx-3090", "rtx3090", "3090"),
        "NVIDIA Ampere GA102 whitepaper",
    ),
    GpuSpec(
        "amd-mi300x",
        "amd",
        "cdna3",
        (192,),
        "",
        163.4,
        1307.4,
        5300,
        750,
        "infinity-fabric",
        "premium",
        ("mi300x", "instinct-mi300x"),
        "AMD Instinct MI300X datasheet",
    ),
    GpuSpec(
        "amd-mi250x",
        "amd",
        "cdna2",
        (128,),
        "",
        47.9,
        383.0,
        3277,
        560,
        "infinity-fabric",
        "premium",
        ("mi250x", "instinct-mi250x"),
        "AMD Instinct MI250X datasheet",
    ),
    GpuSpec(
        "amd-rx-7900xtx",
        "amd",
        "rdna3",
        (24,),
        "",
        61.4,
        122.8,
        960,
        355,
        "pcie",
        "gaming",
        ("rx-7900xtx", "7900xtx", "rx7900xtx"),
        "AMD Radeon RX 7900 XTX specifications",
    ),
)

BY_MODEL: dict[str, GpuSpec] = {spec.model: spec for spec in SPECS}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY: dict[str, GpuSpec] = {}
for _spec in SPECS:
    for _name in (_spec.model, _spec.model.split("-", 1)[1], *_spec.aliases):
        _BY_KEY[_key(_name)] = _spec
# Longest first, so "h100nvl" is tried before "h100" and "a100" before "a10".
_KEYS_LONGEST_FIRST = sorted(_BY_KEY, key=len, reverse=True)
_VENDOR_WORDS = re.compile(r"\b(nvidia|amd|tesla|geforce|radeon|instinct|ati)\b")


def lookup(name: str) -> GpuSpec | None:
    """Resolve a model name or alias as a user writes it: "nvidia-h100", "H100",
    "A100-80GB", "NVIDIA A100". Unknown names give None (see `suggest`)."""
    exact = _BY_KEY.get(_key(name))
    if exact:
        return exact
    return _BY_KEY.get(_key(_VENDOR_WORDS.sub(" ", name.lower())))


def from_product_name(product: str) -> GpuSpec | None:
    """Resolve what a driver reports ("NVIDIA H100 80GB HBM3",
    "NVIDIA-H100-PCIe-80Gi", "AMD Instinct MI300X") by the longest known model
    name it contains."""
    known = lookup(product)
    if known:
        return known
    bare = _key(_VENDOR_WORDS.sub(" ", product.lower()))
    for key in _KEYS_LONGEST_FIRST:
        if len(key) >= 3 and key in bare and not key.isdigit():
            return _BY_KEY[key]
    return None


def normalize_model(name: str) -> str | None:
    spec = lookup(name)
    return spec.model if spec else None


# How far a driver's memory reading may sit from the board's nominal memory: drivers keep
# some for themselves (an 80 GB H100 reports 81,559 MiB, 79.6 GiB).
MEMORY_TOLERANCE = 0.05


def nominal_memory_gib(spec: GpuSpec | None, memory_bytes: int) -> int:
    """The board's memory as sold, from what the driver reports: drivers keep
    some for themselves (an 80 GB H100 reports 81,559 MiB, 79.6 GiB), so a
    reading within 5% of one of the model's memory variants is that variant;
    anything else is whole GiB, rounded down."""
    gib = memory_bytes / 2**30
    if spec is not None:
        nearest = min(spec.memory_gib, key=lambda variant: abs(variant - gib))
        if abs(nearest - gib) <= MEMORY_TOLERANCE * nearest:
            return nearest
    return int(gib)


def suggest(name: str, limit: int = 3) -> list[str]:
    """Known model names closest to an unknown one."""
    names = [spec.model for spec in SPECS]
    close = difflib.get_close_matches(name.lower(), names, n=limit, cutoff=0.4)
    if close:
        return close
    keys = difflib.get_close_matches(_key(name), list(_BY_KEY), n=limit, cutoff=0.4)
    return list(dict.fromkeys(_BY_KEY[k].model for k in keys))
