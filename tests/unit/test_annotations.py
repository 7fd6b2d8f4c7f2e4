"""The annotation table: what the agent writes for an inventory, how values are validated and
read back, aliases, mixed nodes, the Flavor built from them, and the generated document."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from agent import annotations as table
from agent.config import ConfigError, ProviderConfig
from agent.kube.flavor import flavor_for, flavor_name
from agent.kube.node_writer import gfd_mismatches
from agent.probe.base import Inventory
from agent.probe.sim import SimProbe
from flare.money import Money

DOC = Path(__file__).resolve().parents[2] / "docs" / "annotations.md"


def config(**changes: object) -> ProviderConfig:
    base = ProviderConfig(
        provider_name="acme-gpu",
        region="eu-west-1",
        zone="eu-west-1a",
        hourly_rate=Money(Decimal("2.50"), "EUR"),
        network_bandwidth_gbps=100,
        network_latency_ms=5,
        network_tier="premium",
        node_id="node-acme",
        domain="acme.example",
        ip="10.0.0.1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def h100x8() -> Inventory:
    return SimProbe("nvidia-h100", 8).inventory()


def mixed() -> Inventory:
    h100 = SimProbe("nvidia-h100", 6).inventory()
    a100 = SimProbe("nvidia-a100", 2, seed=1).inventory()
    extra = tuple(dataclasses.replace(g, index=g.index + 6) for g in a100.gpus)
    return dataclasses.replace(h100, gpus=h100.gpus + extra)


def test_h100x8_annotations_are_exactly_these() -> None:
    assert table.annotations_for(h100x8(), config()) == {
        "cost.fluidos.eu/currency": "EUR",
        "cost.fluidos.eu/hourly-rate": "2.50",
        "gpu.fluidos.eu/architecture": "hopper",
        "gpu.fluidos.eu/compute-capability": "9.0",
        "gpu.fluidos.eu/count": "8",
        "gpu.fluidos.eu/fp32-tflops": "67",
        "gpu.fluidos.eu/interconnect": "nvlink",
        "gpu.fluidos.eu/memory-per-gpu": "80Gi",
        "gpu.fluidos.eu/model": "nvidia-h100",
        "gpu.fluidos.eu/tier": "premium",
        "gpu.fluidos.eu/vendor": "nvidia",
        "location.fluidos.eu/region": "eu-west-1",
        "location.fluidos.eu/zone": "eu-west-1a",
        "network.fluidos.eu/bandwidth-gbps": "100",
        "network.fluidos.eu/latency-ms": "5",
        "network.fluidos.eu/tier": "premium",
        "nvidia.fluidos.eu/mig-capable": "true",
        "provider.fluidos.eu/name": "acme-gpu",
        "provider.fluidos.eu/preemptible": "false",
    }
    assert table.labels_for(h100x8()) == {
        "node.fluidos.eu/gpu": "true",
        "node-role.fluidos.eu/resources": "true",
    }


def test_optional_configuration_is_left_out_and_what_is_written_validates() -> None:
    plain = config(zone="", network_bandwidth_gbps=None, network_latency_ms=None)
    written = table.annotations_for(h100x8(), dataclasses.replace(plain, network_tier=None))
    assert not any(k.startswith("network.") for k in written)
    assert "location.fluidos.eu/zone" not in written
    assert table.validate(written) == []


def test_pcie_links_and_a_single_gpu() -> None:
    inventory = h100x8()
    pcie = dataclasses.replace(
        inventory,
        links=tuple(dataclasses.replace(k, link_type="hostbridge") for k in inventory.links),
    )
    written = table.annotations_for(pcie, config())
    # The PCIe board has its own, lower, FP32 figure.
    assert (written["gpu.fluidos.eu/interconnect"], written["gpu.fluidos.eu/fp32-tflops"]) == (
        "pcie",
        "51",
    )
    amd = table.annotations_for(SimProbe("amd-mi300x", 1).inventory(), config())
    assert amd["gpu.fluidos.eu/vendor"] == "amd"
    assert "gpu.fluidos.eu/compute-capability" not in amd
    assert "nvidia.fluidos.eu/mig-capable" not in amd


def test_a_node_without_gpus_has_no_gpu_keys_or_gpu_label() -> None:
    empty = dataclasses.replace(h100x8(), gpus=(), links=())
    written = table.annotations_for(empty, config())
    assert not any(k.startswith(("gpu.", "nvidia.")) for k in written)
    assert table.labels_for(empty) == {"node-role.fluidos.eu/resources": "true"}


def test_mixed_node_annotates_the_majority_model_and_records_the_mix() -> None:
    written = table.annotations_for(mixed(), config())
    assert written["gpu.fluidos.eu/model"] == "nvidia-h100"
    assert written["gpu.fluidos.eu/count"] == "6"
    assert written["gpu.fluidos.eu/memory-per-gpu"] == "80Gi"
    assert written["gpu.fluidos.eu/mix"] == "nvidia-h100=6,nvidia-a100=2"
    assert table.validate(written) == []
    assert "gpu.fluidos.eu/mix" not in table.annotations_for(h100x8(), config())


def test_mixed_node_tie_goes_to_more_memory() -> None:
    a100 = SimProbe("nvidia-a100", 2).inventory()
    h200 = SimProbe("nvidia-h200", 2, seed=3).inventory()
    both = dataclasses.replace(
        a100, gpus=a100.gpus + tuple(dataclasses.replace(g, index=g.index + 2) for g in h200.gpus)
    )
    written = table.annotations_for(both, config())
    assert written["gpu.fluidos.eu/model"] == "nvidia-h200"
    assert written["gpu.fluidos.eu/mix"] == "nvidia-a100=2,nvidia-h200=2"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gpu.fluidos.eu/vendor", "nvida"),
        ("gpu.fluidos.eu/model", "h100"),
        ("gpu.fluidos.eu/count", "0"),
        ("gpu.fluidos.eu/count", "eight"),
        ("gpu.fluidos.eu/memory-per-gpu", "lots"),
        ("gpu.fluidos.eu/tier", "gold"),
        ("gpu.fluidos.eu/compute-capability", "nine"),
        ("gpu.fluidos.eu/fp32-tflops", "-1"),
        ("gpu.fluidos.eu/multi-gpu-efficiency", "1.5"),
        ("nvidia.fluidos.eu/mig-capable", "True"),
        ("location.fluidos.eu/region", "EU West"),
        ("cost.fluidos.eu/hourly-rate", "2,50"),
        ("cost.fluidos.eu/currency", "EURO"),
        ("network.fluidos.eu/tier", "gold"),
    ],
)
def test_validation_names_the_bad_value(key: str, value: str) -> None:
    good = table.annotations_for(h100x8(), config())
    problems = table.validate({**good, key: value})
    assert len(problems) == 1
    assert problems[0].startswith(f"{key}:")


def test_read_gives_typed_values() -> None:
    values = table.read(table.annotations_for(h100x8(), config())).values
    assert values["gpu.fluidos.eu/count"] == 8
    assert values["gpu.fluidos.eu/memory-per-gpu"] == Decimal(80 * 2**30)
    assert values["cost.fluidos.eu/hourly-rate"] == Decimal("2.50")
    assert values["nvidia.fluidos.eu/mig-capable"] is True
    assert values["provider.fluidos.eu/preemptible"] is False


def test_aliases_are_read_under_the_canonical_key() -> None:
    parsed = table.read(
        {
            "gpu.fluidos.eu/memory": "80Gi",
            "gpu.fluidos.eu/compute_capability": "8.0",
            "cost.fluidos.eu/hourly_rate": "1.2",
            "gpu.fluidos.eu/multi_gpu_efficiency": "0.9",
            "nvidia.fluidos.eu/mig_capable": "true",
            "example.com/other": "ignored",
        }
    )
    assert parsed.problems == []
    assert parsed.values == {
        "gpu.fluidos.eu/memory-per-gpu": Decimal(80 * 2**30),
        "gpu.fluidos.eu/compute-capability": "8.0",
        "cost.fluidos.eu/hourly-rate": Decimal("1.2"),
        "gpu.fluidos.eu/multi-gpu-efficiency": Decimal("0.9"),
        "nvidia.fluidos.eu/mig-capable": True,
    }
    # A bare number of the old memory key is Gi.
    assert table.read({"gpu.fluidos.eu/memory": "40"}).values == {
        "gpu.fluidos.eu/memory-per-gpu": Decimal(40 * 2**30)
    }


def test_canonical_key_wins_over_a_disagreeing_alias() -> None:
    parsed = table.read({"gpu.fluidos.eu/memory": "40Gi", "gpu.fluidos.eu/memory-per-gpu": "80Gi"})
    assert parsed.values == {"gpu.fluidos.eu/memory-per-gpu": Decimal(80 * 2**30)}
    assert len(parsed.problems) == 1
    assert "gpu.fluidos.eu/memory" in parsed.problems[0]


def test_malformed_values_are_reported_and_the_rest_still_read() -> None:
    parsed = table.read(
        {
            "gpu.fluidos.eu/count": "8",
            "gpu.fluidos.eu/memory-per-gpu": "eighty gigs",
            "cost.fluidos.eu/hourly_rate": "cheap",
        }
    )
    assert parsed.values == {"gpu.fluidos.eu/count": 8}
    assert sorted(p.split(":")[0] for p in parsed.problems) == [
        "cost.fluidos.eu/hourly_rate",
        "gpu.fluidos.eu/memory-per-gpu",
    ]


def test_config_rejects_bad_values_all_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        config(region="EU West", hourly_rate=Money(Decimal("-1"), "EURO"), network_tier="gold")
    message = str(error.value)
    for part in ("region", "hourly rate", "currency", "network tier"):
        assert part in message
    assert config(node_id="").fluidos_problems() == ["node id is needed for the Flavor owner"]


def test_gfd_labels_are_compared_with_the_inventory() -> None:
    agreeing = {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "81559",
    }
    assert gfd_mismatches(agreeing, h100x8()) == []
    assert gfd_mismatches({}, h100x8()) == []
    wrong = gfd_mismatches(
        {
            **agreeing,
            "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB",
            "nvidia.com/gpu.count": "4",
        },
        h100x8(),
    )
    assert [w.split(" ")[0] for w in wrong] == ["nvidia.com/gpu.product", "nvidia.com/gpu.count"]
    assert gfd_mismatches({"nvidia.com/gpu.memory": "40960"}, h100x8())[0].startswith(
        "nvidia.com/gpu.memory"
    )


def node(name: str = "gpu-node-1") -> dict[str, object]:
    return {
        "metadata": {"name": name, "uid": "1234"},
        "status": {
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110"},
            "nodeInfo": {"architecture": "amd64"},
        },
    }


def test_flavor_of_an_h100x8_node() -> None:
    flavor = flavor_for(node(), h100x8(), config(country="IT", city="Turin"))
    assert flavor["metadata"]["name"] == "flare-gpu-node-1"
    assert flavor["metadata"]["namespace"] == "fluidos"
    assert flavor["metadata"]["ownerReferences"][0]["uid"] == "1234"
    spec = flavor["spec"]
    assert spec["price"] == {"amount": "20.00", "currency": "EUR", "period": "hourly"}
    assert spec["owner"] == {"domain": "acme.example", "ip": "10.0.0.1", "nodeID": "node-acme"}
    assert spec["location"] == {
        "country": "IT",
        "city": "Turin",
        "additionalNotes": "region=eu-west-1 zone=eu-west-1a",
    }
    characteristics = spec["flavorType"]["typeData"]["characteristics"]
    assert {k: characteristics[k] for k in ("architecture", "cpu", "memory", "pods")} == {
        "architecture": "amd64",
        "cpu": "64",
        "memory": "512Gi",
        "pods": "110",
    }
    gpu = characteristics["gpu"]
    assert (gpu["model"], gpu["cores"], gpu["memory"], gpu["count"]) == (
        "nvidia-h100",
        "8",
        "640Gi",
        8,
    )
    assert gpu["tier"] == "premium"
    assert gpu["multi_instance"] is True
    assert gpu["fp32_tflops"] == 67.0


def test_flavor_needs_the_owner_identity_and_names_fit() -> None:
    with pytest.raises(ConfigError):
        flavor_for(node(), h100x8(), config(ip=""))
    long = flavor_name("n" * 300)
    assert len(long) <= 253
    assert long != flavor_name("n" * 299)


def test_committed_document_is_the_generated_one() -> None:
    assert DOC.read_text() == table.render_markdown(), (
        "docs/annotations.md is stale: regenerate it with agent.annotations.render_markdown()"
    )
