"""flarectl offers: the federation's offers through the placement filters."""

from __future__ import annotations

from decimal import Decimal

from flare.geo import EU_MEMBER_STATES
from tests.cli.support import Cli, explain, table_rows


def test_all_offers_by_default(cli: Cli) -> None:
    result = cli.json("offers")
    assert result["total_offers"] == len(result["offers"]) > 0
    assert "rejections" not in result


def test_location_eu_keeps_only_eu_member_states(cli: Cli) -> None:
    everything = cli.json("offers")["offers"]
    eu = cli.json("offers", "--location", "EU")
    countries = {offer["country"] for offer in eu["offers"]}
    assert countries
    assert countries <= EU_MEMBER_STATES
    # Switzerland is in Europe, not in the EU; its offers are rejected for location.
    assert "CH" in {offer["country"] for offer in everything}
    rejected = {r["reason"]: r["count"] for r in eu["rejections"]}
    expected = sum(1 for o in everything if o["country"] not in EU_MEMBER_STATES)
    assert rejected == {"location": expected}


def test_gpu_filter_and_its_aliases(cli: Cli) -> None:
    h100 = cli.json("offers", "--gpu", "nvidia-h100")["offers"]
    assert h100
    assert {offer["gpu"]["model"] for offer in h100} == {"nvidia-h100"}
    alias = cli.json("offers", "--gpu", "H100")["offers"]
    assert [o["name"] for o in alias] == [o["name"] for o in h100]


def test_offers_are_cheapest_first_by_default(cli: Cli) -> None:
    eur = [
        Decimal(o["price_per_gpu_hour"]["amount"])
        for o in cli.json("offers", "--location", "EU")["offers"]
        if o["price_per_gpu_hour"]["currency_code"] == "EUR"
    ]
    assert eur == sorted(eur)


def test_price_provider_and_count_filters(cli: Cli) -> None:
    cheap = cli.json("offers", "--max-price", "1 EUR", "--location", "EU")["offers"]
    assert cheap
    for offer in cheap:
        assert offer["price_per_gpu_hour"]["currency_code"] == "EUR"
        assert Decimal(offer["price_per_gpu_hour"]["amount"]) <= 1

    # For 2 GPUs the limit covers both.
    pairs = cli.json("offers", "--max-price", "1 EUR", "--count", "2", "--location", "EU")
    for offer in pairs["offers"]:
        assert 2 * Decimal(offer["price_per_gpu_hour"]["amount"]) <= 1

    two = cli.json("offers", "--provider", "nordic-gpu", "--provider", "rhein-compute")
    assert {offer["provider"] for offer in two["offers"]} == {"nordic-gpu", "rhein-compute"}

    big = cli.json("offers", "--count", "8", "--available")["offers"]
    assert big
    assert all(offer["gpus_free"] >= 8 for offer in big)


def test_limit_and_table(cli: Cli) -> None:
    assert len(cli.json("offers", "--limit", "3")["offers"]) == 3
    output = cli.ok("offers", "--gpu", "nvidia-h100", "--location", "EU").stdout
    header, *rows = table_rows(output, "offers")
    assert header[:4] == ["PROVIDER", "NODE", "REGION", "GPU"]
    assert rows
    assert all(row[3] == "nvidia-h100" for row in rows)
    assert all(row[2].endswith(("(FI)", "(DE)")) for row in rows)
    total = cli.json("offers")["total_offers"]
    assert f"{len(rows)} of {total} offers match" in output
    rejected = table_rows(output, "rejected")
    assert rejected[0] == ["REASON", "MESSAGE", "OFFERS"]
    assert {row[0] for row in rejected[1:]} == {"gpu_model", "location"}


def test_bad_filter_values_are_exit_code_2(cli: Cli) -> None:
    price = cli.run("offers", "--max-price", "cheap")
    assert price.exit_code == 2
    assert "'cheap' is not an amount with a currency" in price.stderr
    objective = cli.run("offers", "--objective", "fastest")
    assert objective.exit_code == 2
    assert "'fastest' is not one of: cost, performance, latency, energy, balanced" in (
        objective.stderr
    )
    model = cli.run("offers", "--gpu", "nvidia-h1000")
    assert model.exit_code == 2, explain(model)
    assert model.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "  gpu.model: unknown GPU model 'nvidia-h1000'" in model.stderr


def test_objective_orders_the_offers(cli: Cli) -> None:
    fastest = cli.json("offers", "--objective", "performance")["offers"]
    tflops = [offer["gpu"].get("fp16_tflops", 0.0) for offer in fastest]
    assert tflops[0] == max(tflops)
    closest = cli.json("offers", "--objective", "Latency_Minimization")["offers"]
    latencies = [offer["latency_ms"] for offer in closest]
    assert latencies == sorted(latencies)


def test_offers_follows_page_tokens(cli: Cli) -> None:
    everything = cli.json("offers")["offers"]
    paged = cli.json("offers", "--page-size", "5")["offers"]
    assert [o["name"] for o in paged] == [o["name"] for o in everything]
