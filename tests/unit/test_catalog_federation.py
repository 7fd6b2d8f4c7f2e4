"""The packaged federation built from the SkyPilot catalogs
(scripts/build_catalog_federation.py, docs/federation-data.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from controlplane.federation.local import DEMO_FEDERATION, load_offers
from controlplane.placement import filters, planner, requirements, table
from controlplane.placement.offers import Offer
from flare import geo, gpus
from tests.env_dirs import directory_named_by
from tests.intents import SEED_INFERENCE, SEED_TRAINING, intent_from

REPO = Path(__file__).resolve().parents[2]
# Where the SkyPilot catalogs the packaged federation is built from are, when they are at hand.
CATALOGS_ENV = "FLARE_GPU_CATALOGS"
SCRIPT = REPO / "scripts" / "build_catalog_federation.py"
CLOUDS = {"cudo", "lambda", "nebius", "seeweb", "shadeform", "vast", "verda"}

OFFERS = load_offers()
BY_NAME = {offer.name: offer for offer in OFFERS}
TABLE = table.build(OFFERS)


def packaged_bytes() -> bytes:
    return resources.files("controlplane.federation.data").joinpath(DEMO_FEDERATION).read_bytes()


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(packaged_bytes())
    return loaded


def offer(provider: str, node: str) -> Offer:
    return BY_NAME[f"providers/{provider}/offers/{node}"]


def test_the_embedded_default_is_the_catalog_federation() -> None:
    assert DEMO_FEDERATION == "catalog-federation.json"
    assert len(OFFERS) > 1000
    assert len({o.provider for o in OFFERS}) > 50
    assert len(packaged_bytes()) < 400_000


def test_the_file_names_its_sources() -> None:
    doc = document()
    assert doc["generated_by"] == "scripts/build_catalog_federation.py"
    source = doc["source"]
    assert source["repository"] == "skypilot-org/skypilot-catalog"
    assert source["catalog_version"] == "v8"
    assert {f["cloud"] for f in source["files"]} == CLOUDS
    for entry in source["files"]:
        assert entry["path"] == f"catalogs/v8/{entry['cloud']}/vms.csv"
        assert len(entry["commit"]) == 40
        int(entry["commit"], 16)


def test_every_offer_is_characterised_and_located() -> None:
    for o in OFFERS:
        spec = gpus.BY_MODEL[o.gpu_model]
        assert o.gpu_memory_gib in spec.memory_gib, o.name
        assert (o.fp32_tflops, o.fp16_tflops, o.tdp_watts) == spec.figures(o.interconnect)
        assert o.currency == "USD"
        assert o.price_per_gpu_hour > 0
        assert o.continent == geo.CONTINENT_OF_COUNTRY[o.country], o.name
        assert o.carbon_intensity_g_per_kwh > 0
        assert o.provider == o.provider.lower()
        assert o.provider.split("-", 1)[0] in CLOUDS, o.provider


def test_a_lambda_h100_row() -> None:
    # lambda.csv: gpu_8x_h100_sxm5, 8 H100, 31.92 USD/h in us-east-1.
    eight = offer("lambda-us-east-1", "gpu-8x-h100-sxm5-1")
    assert (eight.gpu_model, eight.gpus_total) == ("nvidia-h100", 8)
    assert eight.price_per_gpu_hour == Decimal("3.99")
    assert (eight.country, eight.continent, eight.region) == ("US", "North America", "us-east-1")
    assert eight.latency_ms == 90
    assert eight.availability == 99.9
    assert not eight.preemptible
    twin = offer("lambda-us-east-1", "gpu-8x-h100-sxm5-2")
    assert twin.price_per_gpu_hour == eight.price_per_gpu_hour
    pcie = offer("lambda-us-east-1", "gpu-1x-h100-pcie-1")
    assert (pcie.interconnect, pcie.price_per_gpu_hour) == ("pcie", Decimal("3.29"))
    frankfurt = offer("lambda-europe-central-1", "gpu-8x-h100-sxm5-1")
    assert (frankfurt.country, frankfurt.latency_ms) == ("DE", 5)


def test_memory_variants_come_from_the_catalog() -> None:
    assert offer("lambda-us-east-1", "gpu-8x-a100-1").gpu_memory_gib == 40
    assert offer("lambda-us-east-1", "gpu-8x-a100-80gb-sxm4-1").gpu_memory_gib == 80
    gh200 = offer("lambda-us-east-1", "gpu-1x-gh200-1")
    assert (gh200.gpu_model, gh200.gpu_memory_gib) == ("nvidia-gh200", 96)
    # vast gives the memory of the whole instance: 2 x 40 GB A100s.
    assert offer("vast-slovenia-si", "2x-a100-sxm4-32-65536-1").gpu_memory_gib == 40
    assert offer("vast-bulgaria-bg", "1x-h100-nvl-32-65536-1").gpu_memory_gib == 94


def test_vast_regions_take_the_country_code() -> None:
    france = [o for o in OFFERS if o.provider == "vast-france-fr"]
    assert france
    assert {(o.country, o.continent, o.region) for o in france} == {("FR", "Europe", "france-fr")}
    one_h200 = offer("vast-france-fr", "1x-h200-32-65536-1")
    assert one_h200.price_per_gpu_hour == Decimal("2.65")
    assert one_h200.availability == 99.0
    # vast's "EU" tag covers Iceland, which is not in the European Union.
    iceland = {o.country for o in OFFERS if o.provider.startswith("vast-iceland")}
    assert iceland == {"IS"}


def test_spot_prices_give_preemptible_nodes() -> None:
    spot = offer("nebius-eu-north1", "gpu-h100-sxm-8gpu-128vcpu-1600gb-spot")
    assert spot.preemptible
    assert spot.price_per_gpu_hour == Decimal("1.25")  # 10.00 USD/h for 8 GPUs
    on_demand = offer("nebius-eu-north1", "gpu-h100-sxm-8gpu-128vcpu-1600gb-1")
    assert not on_demand.preemptible
    assert on_demand.price_per_gpu_hour == Decimal("2.95")
    # verda lists 8B200.240V with a spot price only.
    b200 = [o for o in OFFERS if o.provider == "verda-fin-03" and o.node.startswith("8b200")]
    assert [o.node for o in b200] == ["8b200-240v-spot"]
    # vast's SpotPrice is 0.00 everywhere: no spot offer.
    assert not any(o.preemptible for o in OFFERS if o.provider.startswith("vast-"))


def test_an_eu_location_admits_only_eu_member_states() -> None:
    location = next(f for f in filters.FILTERS if f.reason == "location")
    mask = location.mask(requirements.Requirements(location="EU"), TABLE)
    assert mask is not None
    countries = np.asarray([o.country for o in OFFERS])
    in_eu = np.isin(countries, sorted(geo.EU_MEMBER_STATES))
    assert np.array_equal(mask, in_eu)
    admitted = set(countries[mask])
    assert {"DE", "FR", "FI", "SE", "IT"} <= admitted
    rejected = set(countries[~mask])
    assert {"NO", "IS", "US", "JP"} <= rejected  # Europe, but not the EU, and elsewhere


def test_the_seed_intents_are_placeable() -> None:
    for seed in (SEED_INFERENCE, SEED_TRAINING):
        intent = intent_from(seed)
        result = planner.plan(requirements.from_intent(intent), TABLE, intent.objective)
        assert result.best is not None, result.rejections
    inference = intent_from(SEED_INFERENCE)
    best = planner.plan(requirements.from_intent(inference), TABLE, inference.objective).best
    assert best is not None
    assert best.offer.country in geo.EU_MEMBER_STATES
    assert best.offer.gpu_memory_gib >= 40


def test_the_build_script_reproduces_the_packaged_file(tmp_path: Path) -> None:
    catalogs = directory_named_by(CATALOGS_ENV, "no catalogs to rebuild the federation from")
    output = tmp_path / "catalog-federation.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--catalog-dir",
            str(catalogs),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped GPU rows" in done.stdout
    assert output.read_bytes() == packaged_bytes()
