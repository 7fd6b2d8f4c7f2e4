"""Build the packaged demo federation from real GPU cloud catalogs.

Reads the SkyPilot v8 catalogs (skypilot-org/skypilot-catalog, each cloud's
`vms.csv` saved as `<cloud>.csv` in the directory that --catalog-dir or
$FLARE_GPU_CATALOGS names) and writes
`controlplane/federation/data/catalog-federation.json` in the format that
`controlplane.federation.local.offers_from_document` reads. Columns are
selected by name (their order differs between catalogs). The rules, also in
docs/federation-data.md:

Clusters and nodes
- A provider cluster is one (cloud, region), named `<cloud>-<region>` in lower
  case; the region is the catalog's, lower-cased, with every run of other
  characters than a-z and 0-9 turned into "-". vast's Region is
  "City, CC, XX": the region is "city-cc" (just "cc" when the city is empty)
  and the country is CC.
- Every (instance type, region) row with a GPU gives NODES_PER_INSTANCE_TYPE
  (2) identical on-demand nodes (`<instance>-1`, `<instance>-2`, the instance
  type in the same lower-case form), each carrying the instance's GPUs, so
  that the federation has some capacity. A row with a positive SpotPrice also
  gives SPOT_NODES_PER_INSTANCE_TYPE (1) preemptible node (`<instance>-spot`)
  at the spot price. A row without Price but with a SpotPrice gives only the
  spot node. vast lists SpotPrice 0.00 in
  every row: a zero spot price is read as "no spot offer".
- Price per GPU-hour = instance price / GPU count, in USD as the catalogs
  give it, rounded to 6 decimals; conversion to the reference currency happens
  at placement, with the control plane's configurable exchange rates.

GPU models
- AcceleratorName goes through `flare.gpus.lookup`, then
  `flare.gpus.from_product_name`. An accelerator that the spec table does not
  characterise (see SKIPPED_ACCELERATORS for why each one is not there) is
  skipped and counted, never guessed.
- Per-GPU memory comes from GpuInfo: MemoryInfo.SizeInMiB of the first Gpus
  entry, which is per GPU in MiB, except in vast.csv (the whole instance, so
  divided by the GPU count) and shadeform.csv (per GPU in GB). It selects the
  datasheet memory variant of the model (A100 40 or 80, V100 16 or 32, H100
  80 or 94, ...): the nearest one, which must be within 10%; otherwise the row
  is skipped (a board that no datasheet describes, e.g. a 48 GB RTX 4090). A
  missing or zero size gives the model's most common variant.
- An instance type whose name says PCIe ("pcie"/"pci") gets interconnect
  "pcie" when its model's default is NVLink (e.g. lambda gpu_1x_h100_pcie).

Location, latency, availability, carbon
- Country: REGION_COUNTRY maps every region of the non-vast catalogs to its
  ISO-3166 alpha-2 code; an unknown region stops the build. A region mapped
  to None is one whose location the provider does not document (lambda's
  europe-south-1): its rows are skipped and counted.
- Latency to the consumer, who is in Frankfurt (DE): 5 ms in the same
  country, 25 ms elsewhere in Europe, 90 ms to North America, 150 ms to
  Africa, 200 ms to Asia and South America, 280 ms to Oceania (by the
  continent of `flare.geo`). A deliberately coarse model, not a measurement.
- Declared availability: 99.9% for clouds that run their own (or their named
  partners') data centres (lambda, nebius, cudo, seeweb, verda, and shadeform,
  whose offers are instances of such clouds); 99.0% for vast, a marketplace
  of independent hosts. An assumption, not an SLA the providers publish here.
- Carbon intensity: CARBON_G_PER_KWH, the emissions intensity of electricity
  generation per country from Ember's yearly electricity data (2024, or 2023
  where marked), as republished in thegreenwebfoundation/co2.js
  `data/output/average-intensities.json`, rounded to whole grams.

Usage: python scripts/build_catalog_federation.py [--catalog-dir DIR] [--output FILE] [--check]
Prints a summary (clouds, regions, nodes, GPU models, skipped rows and why).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from flare import geo, gpus

REPO = Path(__file__).resolve().parents[1]
# The directory of the catalogs (<cloud>.csv, see CATALOGS): --catalog-dir or this variable.
CATALOGS_ENV = "FLARE_GPU_CATALOGS"
DEFAULT_OUTPUT = REPO / "controlplane" / "federation" / "data" / "catalog-federation.json"

NODES_PER_INSTANCE_TYPE = 2
SPOT_NODES_PER_INSTANCE_TYPE = 1
CURRENCY = "USD"
MEMORY_TOLERANCE = 0.10

# cloud -> (local file, upstream path, commit, bytes) of the catalogs this file was built from.
# The byte count is checked, so a different version of a file stops the build.
CATALOGS: dict[str, tuple[str, str, str, int]] = {
    "cudo": (
        "cudo.csv",
        "catalogs/v8/cudo/vms.csv",
        "113567a74b2f208af08e0c9236e26cc354a2bf65",
        33536,
    ),
    "lambda": (
        "lambda.csv",
        "catalogs/v8/lambda/vms.csv",
        "0f4070387edc953d7004cff197940e1918a1d6aa",
        73947,
    ),
    "nebius": (
        "nebius.csv",
        "catalogs/v8/nebius/vms.csv",
        "0082b0435f3912ae4c566856b272455cc78f4f61",
        6302,
    ),
    "seeweb": (
        "seeweb.csv",
        "catalogs/v8/seeweb/vms.csv",
        "004a1aef76542bb40d12fcedaaf091551ddf5fb4",
        6311,
    ),
    "shadeform": (
        "shadeform.csv",
        "catalogs/v8/shadeform/vms.csv",
        "002363dac75913b446b2d3d564ae795678849dfd",
        23166,
    ),
    "vast": (
        "vast.csv",
        "catalogs/v8/vast/vms.csv",
        "01b8cdda287814b30ff0acb49746cca19fbd4355",
        12088,
    ),
    "verda": (
        "verda.csv",
        "catalogs/v8/verda/vms.csv",
        "000c1d0bf24621f4ac37cfa585f0897c1aa1d9cf",
        4997,
    ),
}

# Region -> ISO-3166 alpha-2 country, for every catalog but vast (whose Region
# carries the code). None: the provider does not document where it is.
REGION_COUNTRY: dict[str, dict[str, str | None]] = {
    "lambda": {
        # Lambda names its regions by area; the places are those its console shows.
        "asia-northeast-1": "JP",
        "asia-northeast-2": "JP",
        "asia-south-1": "IN",
        "australia-east-1": "AU",
        "europe-central-1": "DE",
        "europe-south-1": None,
        "me-west-1": "IL",
        **dict.fromkeys(
            [
                "us-east-1",
                "us-east-2",
                "us-east-3",
                "us-midwest-1",
                "us-south-1",
                "us-south-2",
                "us-south-3",
                "us-west-1",
                "us-west-2",
                "us-west-3",
            ],
            "US",
        ),
    },
    "cudo": {
        "ca-montreal-3": "CA",
        "no-kristiansand-1": "NO",
        "se-stockholm-1": "SE",
        "us-carlsbad-1": "US",
        "us-newyork-1": "US",
    },
    "nebius": {"eu-north1": "FI", "eu-west1": "FR", "us-central1": "US"},
    "seeweb": {"bg-sof1": "BG", "ch-lug1": "CH", "it-fr2": "IT", "it-mi2": "IT"},
    "verda": {"FIN-01": "FI", "FIN-02": "FI", "FIN-03": "FI"},
    "shadeform": {
        "austin-usa-1": "US",
        "bangalore-india-1": "IN",
        "beltsville-usa-1": "US",
        "calgary-canada-1": "CA",
        "casper-usa-2": "US",
        "chicago-usa-2": "US",
        "chicago-usa-3": "US",
        "culpeper-usa-1": "US",
        "dallas-usa-3": "US",
        "desmoines-usa-1": "US",
        "dulles-usa-1": "US",
        "dulles-usa-4": "US",
        "houston-usa-1": "US",
        "houston-usa-2": "US",
        "kansascity-usa-1": "US",
        "kansascity-usa-6": "US",
        "montreal-canada-2": "CA",
        "newyork-usa-1": "US",
        "paris-france-1": "FR",
        "paris-france-5": "FR",
        "phoenix-usa-2": "US",
        "saltlakecity-usa-1": "US",
        "sanjose-usa-2": "US",
        "tokyo-japan-1": "JP",
        "tokyo-japan-5": "JP",
        "warsaw-poland-1": "PL",
        "wichita-usa-1": "US",
    },
}

AVAILABILITY = {
    "lambda": 99.9,
    "nebius": 99.9,
    "cudo": 99.9,
    "seeweb": 99.9,
    "verda": 99.9,
    "shadeform": 99.9,
    "vast": 99.0,
}

CONSUMER_COUNTRY = "DE"
SAME_COUNTRY_MS = 5
LATENCY_MS_BY_CONTINENT = {
    "Europe": 25,
    "North America": 90,
    "Africa": 150,
    "Asia": 200,
    "South America": 200,
    "Oceania": 280,
}

# Ember yearly electricity data, emissions intensity of generation (gCO2/kWh),
# 2024 unless marked, via thegreenwebfoundation/co2.js
# data/output/average-intensities.json (commit 6628f83f24c2d836fb7ac0dd80eaf5012b27bae4).
CARBON_G_PER_KWH = {
    "AU": 552,
    "BG": 264,
    "CA": 175,
    "CH": 37,
    "CN": 560,
    "DE": 344,
    "FI": 72,
    "FR": 44,
    "GB": 211,
    "HK": 682,  # 2023
    "HR": 174,
    "HU": 183,
    "IL": 567,  # 2023
    "IN": 708,
    "IS": 28,  # 2023
    "IT": 288,
    "JP": 482,
    "NO": 31,
    "PL": 615,
    "RO": 246,
    "SE": 36,
    "SI": 228,
    "TH": 555,
    "TW": 636,
    "US": 384,
    "VN": 471,
}

# Accelerators of these catalogs that flare.gpus does not characterise, and why.
SKIPPED_ACCELERATORS = {
    "A16": "a four-GPU board; per-GPU power is not a datasheet figure",
    "A800": "export variant of the A100; no datasheet figures at hand for its PCIe board",
    "B300": "Blackwell Ultra per-GPU figures not confirmed",
    "GAUDI2": "Intel Gaudi is not a GPU architecture of flare.gpus",
    "RTX6000": "Quadro RTX 6000: the catalogs do not say which board (active or passive)",
    "RTX PRO 6000 96GB": "RTX PRO 6000 Blackwell figures not confirmed",
    "RTXPro6000": "RTX PRO 6000 Blackwell figures not confirmed",
    "RTX-PRO-6000": "RTX PRO 6000 Blackwell figures not confirmed",
    "RTXPRO6000S": "RTX PRO 6000 Blackwell figures not confirmed",
    "RTX5090": "GeForce RTX 5090 tensor figures not confirmed",
    "RTX3060": "consumer card, one name for several variants (3060 / 3060 Ti)",
    "RTX3070": "consumer card not in flare.gpus",
    "RTX3080": "consumer card not in flare.gpus",
    "RTX4060": "consumer card, one name for several variants (4060 / 4060 Ti)",
    "RTX4070": "consumer card, one name for several variants (4070 / Super / Ti)",
    "RTXA2000": "RTX A2000 has 6 and 12 GB boards with different figures",
}

_PCIE = re.compile(r"(^|[^a-z])pcie?($|[^a-z])")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_FOLD = str.maketrans({"ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "æ": "ae", "ø": "o", "ß": "ss"})


class BuildError(Exception):
    """The catalogs cannot be turned into a federation as documented."""


def slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD))
    ascii_only = folded.encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_only.lower()).strip("-")


@dataclass
class Summary:
    rows: Counter[str] = field(default_factory=Counter)
    cpu_only: Counter[str] = field(default_factory=Counter)
    used: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    regions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    nodes: Counter[str] = field(default_factory=Counter)
    spot_nodes: Counter[str] = field(default_factory=Counter)
    gpus: Counter[str] = field(default_factory=Counter)
    models: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


@dataclass(frozen=True)
class Place:
    region: str
    country: str


def place_of(cloud: str, region: str) -> Place | None:
    """The region slug and country of a catalog Region; None when the provider
    does not document its location. BuildError on a region nobody mapped."""
    if cloud == "vast":
        parts = [part.strip() for part in region.split(",")]
        if len(parts) != 3 or not re.fullmatch(r"[A-Z]{2}", parts[1]):
            raise BuildError(f"vast region {region!r} is not 'City, CC, XX'")
        city, country = parts[0], parts[1]
        name = slug(f"{city} {country}") if city else country.lower()
    else:
        known = REGION_COUNTRY.get(cloud, {})
        if region not in known:
            raise BuildError(f"{cloud} region {region!r} is not in REGION_COUNTRY")
        mapped = known[region]
        if mapped is None:
            return None
        country, name = mapped, slug(region)
    if country not in geo.CONTINENT_OF_COUNTRY:
        raise BuildError(f"{cloud} region {region!r}: country {country} has no continent")
    if country not in CARBON_G_PER_KWH:
        raise BuildError(f"{cloud} region {region!r}: no carbon intensity for {country}")
    return Place(name, country)


def latency_ms(country: str) -> int:
    if country == CONSUMER_COUNTRY:
        return SAME_COUNTRY_MS
    return LATENCY_MS_BY_CONTINENT[geo.CONTINENT_OF_COUNTRY[country]]


def per_gpu_memory_gib(cloud: str, gpu_info: str, count: int) -> float:
    """Per-GPU memory in GiB (GB for shadeform) as the catalog reports it; 0
    when it does not."""
    if not gpu_info.strip():
        return 0.0
    info = ast.literal_eval(gpu_info)
    size = float(info["Gpus"][0].get("MemoryInfo", {}).get("SizeInMiB", 0) or 0)
    if cloud == "shadeform":
        return size
    if cloud == "vast":
        size /= count
    return size / 1024


def memory_variant(spec: gpus.GpuSpec, reported: float) -> int | None:
    if reported <= 0:
        return spec.memory_gib[0]
    nearest = min(spec.memory_gib, key=lambda variant: abs(variant - reported))
    return nearest if abs(nearest - reported) <= MEMORY_TOLERANCE * nearest else None


def price(text: str) -> Decimal | None:
    text = text.strip()
    if not text:
        return None
    value = Decimal(text)
    return value if value > 0 else None


def per_gpu(amount: Decimal, count: int) -> float:
    return float((amount / count).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def build(catalog_dir: Path) -> tuple[dict[str, Any], Summary]:
    summary = Summary()
    providers: dict[str, dict[str, Any]] = {}
    for cloud, (filename, _, _, size) in sorted(CATALOGS.items()):
        path = catalog_dir / filename
        if path.stat().st_size != size:
            raise BuildError(f"{path} has {path.stat().st_size} bytes, the recorded one {size}")
        for row in read_rows(path):
            summary.rows[cloud] += 1
            accelerator = row["AcceleratorName"].strip()
            if not accelerator:
                summary.cpu_only[cloud] += 1
                continue
            reason = _add_row(cloud, row, accelerator, providers, summary)
            if reason:
                summary.skipped[(cloud, reason)] += 1
            else:
                summary.used[cloud] += 1
    document = {
        "description": (
            "GPU provider clusters built from the SkyPilot v8 cloud catalogs: one provider per "
            "(cloud, region), real instance types and list prices (USD per GPU-hour), with "
            "assumed capacity, latency and availability; see docs/federation-data.md."
        ),
        "source": {
            "repository": "skypilot-org/skypilot-catalog",
            "catalog_version": "v8",
            "files": [
                {"cloud": cloud, "path": upstream, "commit": commit}
                for cloud, (_, upstream, commit, _) in sorted(CATALOGS.items())
            ],
            "carbon_intensity": (
                "Ember yearly electricity data (generation, 2024 or latest), via "
                "thegreenwebfoundation/co2.js data/output/average-intensities.json"
            ),
        },
        "generated_by": "scripts/build_catalog_federation.py",
        "assumptions": {
            "nodes_per_instance_type": NODES_PER_INSTANCE_TYPE,
            "spot_nodes_per_instance_type": SPOT_NODES_PER_INSTANCE_TYPE,
            "consumer": f"{CONSUMER_COUNTRY}: {SAME_COUNTRY_MS} ms in the country, else by "
            "continent " + ", ".join(f"{k} {v} ms" for k, v in LATENCY_MS_BY_CONTINENT.items()),
        },
        "providers": [providers[name] for name in sorted(providers)],
    }
    return document, summary


def _add_row(
    cloud: str,
    row: Mapping[str, str],
    accelerator: str,
    providers: dict[str, dict[str, Any]],
    summary: Summary,
) -> str:
    """Add the nodes of one GPU row; the reason it was skipped, or ""."""
    region = row["Region"].strip()
    if not region:
        return "no Region"
    place = place_of(cloud, region)
    if place is None:
        return f"location of region {region} not documented"
    spec = gpus.lookup(accelerator) or gpus.from_product_name(accelerator)
    if spec is None:
        if accelerator not in SKIPPED_ACCELERATORS:
            raise BuildError(f"{cloud}: accelerator {accelerator!r} is neither known nor skipped")
        return f"{accelerator} not characterised"
    count_value = float(row["AcceleratorCount"])
    count = int(count_value)
    if count <= 0 or count != count_value:
        return f"GPU count {row['AcceleratorCount']!r}"
    memory = memory_variant(spec, per_gpu_memory_gib(cloud, row["GpuInfo"], count))
    if memory is None:
        return f"{accelerator} memory matches no datasheet variant"
    on_demand, spot = price(row["Price"]), price(row["SpotPrice"])
    if on_demand is None and spot is None:
        return "no price"
    name = f"{cloud}-{place.region}"
    provider = providers.setdefault(
        name,
        {
            "name": name,
            "cloud": cloud,
            "region": place.region,
            "country": place.country,
            "currency": CURRENCY,
            "latency_ms": latency_ms(place.country),
            "availability": AVAILABILITY[cloud],
            "carbon_intensity_g_per_kwh": CARBON_G_PER_KWH[place.country],
            "nodes": [],
        },
    )
    instance = row["InstanceType"].strip()
    base: dict[str, Any] = {"gpu_model": spec.model, "gpus": count, "gpu_memory_gib": memory}
    if spec.interconnect != "pcie" and _PCIE.search(instance.lower()):
        base["interconnect"] = "pcie"
    base["instance_type"] = instance
    nodes: list[dict[str, Any]] = []
    if on_demand is not None:
        nodes += [
            {
                "name": f"{slug(instance)}-{i}",
                **base,
                "price_per_gpu_hour": per_gpu(on_demand, count),
            }
            for i in range(1, NODES_PER_INSTANCE_TYPE + 1)
        ]
    if spot is not None:
        suffixes = ["spot"] + [f"spot-{i}" for i in range(2, SPOT_NODES_PER_INSTANCE_TYPE + 1)]
        nodes += [
            {
                "name": f"{slug(instance)}-{suffix}",
                **base,
                "price_per_gpu_hour": per_gpu(spot, count),
                "preemptible": True,
            }
            for suffix in suffixes[:SPOT_NODES_PER_INSTANCE_TYPE]
        ]
    taken = {node["name"] for node in provider["nodes"]}
    for node in nodes:
        if node["name"] in taken:
            raise BuildError(f"{name}: two nodes named {node['name']}")
    provider["nodes"] += nodes
    summary.regions[cloud].add(place.region)
    summary.nodes[cloud] += len(nodes)
    summary.spot_nodes[cloud] += sum(1 for node in nodes if node.get("preemptible"))
    summary.gpus[cloud] += count * len(nodes)
    summary.models[cloud].add(spec.model)
    return ""


def render(document: Mapping[str, Any]) -> str:
    """Compact JSON, one provider per line (small diffs, a few hundred KB)."""
    head = {key: value for key, value in document.items() if key != "providers"}
    lines = [_compact(head)[:-1] + ',"providers":[']
    lines.append(",\n".join(_compact(provider) for provider in document["providers"]))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def print_summary(summary: Summary, out: Path, size: int) -> None:
    header = f"{'cloud':<10}{'rows':>6}{'cpu':>6}{'used':>6}{'regions':>9}{'nodes':>7}"
    header += f"{'spot':>6}{'GPUs':>7}  models"
    print(header)
    for cloud in sorted(CATALOGS):
        models = ", ".join(sorted(m.removeprefix("nvidia-") for m in summary.models[cloud]))
        print(
            f"{cloud:<10}{summary.rows[cloud]:>6}{summary.cpu_only[cloud]:>6}"
            f"{summary.used[cloud]:>6}{len(summary.regions[cloud]):>9}{summary.nodes[cloud]:>7}"
            f"{summary.spot_nodes[cloud]:>6}{summary.gpus[cloud]:>7}  {models}"
        )
    every_model = set().union(*summary.models.values())
    print(
        f"{'total':<10}{sum(summary.rows.values()):>6}{sum(summary.cpu_only.values()):>6}"
        f"{sum(summary.used.values()):>6}{sum(len(r) for r in summary.regions.values()):>9}"
        f"{sum(summary.nodes.values()):>7}{sum(summary.spot_nodes.values()):>6}"
        f"{sum(summary.gpus.values()):>7}  {len(every_model)} models"
    )
    print(f"\nskipped GPU rows: {sum(summary.skipped.values())}")
    for (cloud, reason), count in sorted(summary.skipped.items()):
        print(f"  {count:>4}  {cloud:<10} {reason}")
    print(f"\nwrote {out} ({size} bytes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--catalog-dir",
        type=Path,
        default=os.environ.get(CATALOGS_ENV),
        help=f"the catalogs, one <cloud>.csv each (default: ${CATALOGS_ENV})",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="compare with --output instead of writing it"
    )
    parser.add_argument("--quiet", action="store_true", help="no summary")
    args = parser.parse_args(argv)
    if args.catalog_dir is None:
        parser.error(f"give --catalog-dir or set {CATALOGS_ENV}: the directory of the catalogs")
    try:
        document, summary = build(args.catalog_dir)
    except (BuildError, OSError) as error:
        print(f"build_catalog_federation: {error}", file=sys.stderr)
        return 2
    text = render(document)
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != text.encode():
            print(f"{args.output} is not what the catalogs give; rebuild it", file=sys.stderr)
            return 1
        return 0
    args.output.write_bytes(text.encode())
    if not args.quiet:
        print_summary(summary, args.output, len(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
