"""FLARE's words to FLUIDOS's and back: an intent's needs as a K8Slice selector
and configuration, and a PeeringCandidate carrying the agent's Flavor as an
offer with the same facts the agent was configured with."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agent.config import ProviderConfig
from agent.kube.flavor import flavor_for
from agent.probe.sim import SimProbe
from controlplane.federation.fluidos.offers import offer_of
from controlplane.federation.fluidos.selector import (
    gpu_filters,
    k8slice_configuration,
    k8slice_selector,
)
from controlplane.placement.requirements import Requirements, from_intent
from flare.money import Money
from tests.intents import SEED_TRAINING, gpu_job, intent_from


def by_field(filters: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in filters}


def test_the_count_is_a_minimum_not_an_exact_match() -> None:
    count = by_field(gpu_filters(Requirements(gpu_count=2)))["count"]
    assert count == {"field": "count", "filter": "NumberRangeFilter", "data": {"min": 2}}


def test_strings_are_matched_as_strings_and_memory_bounds_cover_every_gpu() -> None:
    needs = from_intent(intent_from(SEED_TRAINING))
    filters = by_field(gpu_filters(needs))
    assert filters["model"] == {
        "field": "model",
        "filter": "StringFilter",
        "data": {"value": needs.gpu_model},
    }
    if needs.tier:
        assert filters["tier"]["filter"] == "StringFilter"
    if needs.min_memory_gib:
        expected = f"{int(needs.min_memory_gib * needs.gpu_count)}Gi"
        assert filters["memory"]["data"]["min"] == expected


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_is_sent_as_asked_and_only_when_asked(flag: bool) -> None:
    assert "shared" not in by_field(gpu_filters(Requirements()))
    shared = by_field(gpu_filters(Requirements(shared=flag)))["shared"]
    assert shared == {"field": "shared", "filter": "BooleanFilter", "data": flag}


def test_latency_and_spot_become_bounds_too() -> None:
    filters = by_field(gpu_filters(Requirements(max_latency_ms=20, preemptible=False)))
    assert filters["network_latency_ms"]["data"] == {"max": 20}
    assert filters["pre_emptible"]["data"] is False


def test_no_gpu_means_no_gpu_filters() -> None:
    assert gpu_filters(Requirements(gpu_count=0)) == []
    selector = k8slice_selector(Requirements(gpu_count=0), cpu="2", memory="8Gi")
    assert selector == {
        "flavorType": "K8Slice",
        "filters": {
            "cpuFilter": {"name": "Range", "data": {"min": "2"}},
            "memoryFilter": {"name": "Range", "data": {"min": "8Gi"}},
        },
    }


def test_the_configuration_buys_the_gpus_and_their_memory() -> None:
    config = k8slice_configuration(
        cpu="8", memory="64Gi", gpu_model="nvidia-h100", gpu_count=2, gpu_memory_gib=80.0
    )
    assert config == {
        "type": "K8Slice",
        "data": {
            "cpu": "8",
            "memory": "64Gi",
            "pods": "110",
            "gpu": {"model": "nvidia-h100", "cores": "2", "memory": "160Gi"},
        },
    }


PROVIDER = ProviderConfig(
    provider_name="acme-gpu",
    region="eu-west-1",
    zone="eu-west-1a",
    hourly_rate=Money(Decimal("2.50"), "EUR"),
    country="IE",
    availability_percent=99.9,
    network_latency_ms=12,
    node_id="acme-node",
    domain="acme.example",
    ip="10.0.0.1",
    liqo_id="liqo-acme",
)


def candidate(flavor: dict[str, Any], *, available: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"peeringcandidate-{flavor['metadata']['name']}"},
        "spec": {"flavor": flavor, "available": available, "interestedSolverIDs": []},
    }


def agent_flavor(model: str = "h100", count: int = 8) -> dict[str, Any]:
    node = {
        "metadata": {"name": "gpu-node-1", "uid": "0000"},
        "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110"}},
    }
    return flavor_for(node, SimProbe(model, count).inventory(), PROVIDER)


def test_the_agents_flavor_comes_back_as_the_same_offer() -> None:
    offer = offer_of(candidate(agent_flavor()))
    assert offer is not None
    assert offer.name == "providers/acme-gpu/offers/peeringcandidate-flare-gpu-node-1"
    assert (offer.provider, offer.cluster, offer.node) == ("acme-gpu", "liqo-acme", "gpu-node-1")
    assert (offer.gpu_model, offer.gpus_total, offer.gpu_memory_gib) == ("nvidia-h100", 8, 80.0)
    assert offer.price_per_gpu_hour == Decimal("2.5") and offer.currency == "EUR"
    assert (offer.region, offer.zone, offer.country, offer.continent) == (
        "eu-west-1",
        "eu-west-1a",
        "IE",
        "Europe",
    )
    assert (offer.availability, offer.latency_ms) == (99.9, 12)
    assert offer.interconnect == "nvlink"


def test_a_flavor_without_flares_traits_is_priced_per_gpu_from_its_price() -> None:
    flavor = agent_flavor(count=4)
    gpu = flavor["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]
    upstream_only = {key: gpu[key] for key in ("model", "cores", "memory")}
    flavor["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"] = upstream_only
    offer = offer_of(candidate(flavor))
    assert offer is not None
    assert offer.gpus_total == 4 and offer.price_per_gpu_hour == Decimal("2.5")
    assert offer.availability == 0.0  # no SLA stated: meets no availability bound


def test_candidates_that_are_no_gpu_offer_are_left_out() -> None:
    flavor = agent_flavor()
    unknown = agent_flavor()
    unknown["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]["model"] = "nvidia-x9"
    no_gpu = agent_flavor()
    del no_gpu["spec"]["flavorType"]["typeData"]["characteristics"]["gpu"]
    service = agent_flavor()
    service["spec"]["flavorType"]["typeIdentifier"] = "Service"
    for bad in (unknown, no_gpu, service):
        assert offer_of(candidate(bad)) is None
    taken = offer_of(candidate(flavor, available=False))
    assert taken is not None and taken.gpus_free == 0


def test_a_job_intent_selects_what_the_planner_would() -> None:
    needs = from_intent(gpu_job(model="nvidia-a100", count=4))
    filters = by_field(gpu_filters(needs))
    assert filters["count"]["data"] == {"min": 4}
    assert filters["model"]["data"] == {"value": "nvidia-a100"}
