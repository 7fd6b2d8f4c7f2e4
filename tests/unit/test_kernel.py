from __future__ import annotations

from decimal import Decimal

import pytest

from flare import geo, gpus
from flare.durations import DurationError, parse_seconds
from flare.money import Money, MoneyError, convert, parse_shorthand
from flare.quantity import QuantityError, format_bytes_gi, parse_quantity


def test_quantities() -> None:
    assert parse_quantity("16Gi") == 16 * 2**30
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("1.5G") == Decimal("1.5e9")
    assert parse_quantity("2e3") == 2000
    assert format_bytes_gi(80 * 2**30) == "80Gi"
    for bad in ("", "16GB", "Gi", "1.2.3"):
        with pytest.raises(QuantityError):
            parse_quantity(bad)


def test_money() -> None:
    assert parse_shorthand("5 EUR") == ("5", "EUR")
    assert parse_shorthand("usd 2.5") == ("2.5", "USD")
    with pytest.raises(MoneyError):
        parse_shorthand("five")
    rates = {"EUR": Decimal(1), "USD": Decimal(2)}
    assert convert(Money(Decimal(4), "USD"), "EUR", rates) == Money(Decimal(2), "EUR")
    with pytest.raises(MoneyError):
        convert(Money(Decimal(1), "JPY"), "EUR", rates)


def test_durations() -> None:
    assert parse_seconds("1h30m") == 5400
    assert parse_seconds("500ms") == Decimal("0.5")
    with pytest.raises(DurationError):
        parse_seconds("2 minutes")


def test_eu_means_member_states_not_europe() -> None:
    def where(location: str, country: str) -> bool:
        continent = geo.CONTINENT_OF_COUNTRY[country]
        return geo.matches(location, country=country, continent=continent, region="r-1")

    assert where("EU", "DE") and where("EU", "FI")
    assert not where("EU", "CH") and not where("EU", "GB") and not where("EU", "NO")
    assert where("Europe", "CH") and where("EEA", "NO")
    assert where("US", "US") and not where("US", "CA")
    assert where("Asia", "JP") and where("DE", "DE") and not where("DE", "FR")
    assert geo.matches("eu-west", country="IE", continent="Europe", region="eu-west-1")
    assert geo.location_error("Mars") is not None and geo.location_error("eu-west-1") is None


def test_gpu_names_resolve_and_unknown_ones_get_suggestions() -> None:
    assert gpus.lookup("H100-80GB") is gpus.BY_MODEL["nvidia-h100"]
    assert gpus.lookup("nvidia-a1000") is None
    assert gpus.from_product_name("NVIDIA H100 80GB HBM3") is gpus.BY_MODEL["nvidia-h100"]
    assert gpus.from_product_name("NVIDIA A100-SXM4-80GB") is gpus.BY_MODEL["nvidia-a100"]
    assert gpus.from_product_name("AMD Instinct MI300X") is gpus.BY_MODEL["amd-mi300x"]
    assert "nvidia-a100" in gpus.suggest("nvidia-a1000")
    assert all(spec.source for spec in gpus.SPECS)


def test_the_eu_has_27_member_states() -> None:
    assert len(geo.EU_MEMBER_STATES) == 27
    assert {"HU", "HR", "CY", "MT"} <= geo.EU_MEMBER_STATES


def test_nominal_memory_absorbs_what_the_driver_keeps() -> None:
    h100, a100 = gpus.BY_MODEL["nvidia-h100"], gpus.BY_MODEL["nvidia-a100"]
    assert gpus.nominal_memory_gib(h100, 81_559 * 2**20) == 80
    assert gpus.nominal_memory_gib(h100, 95_830 * 2**20) == 94  # H100 NVL
    assert gpus.nominal_memory_gib(a100, 40_536 * 2**20) == 40
    assert gpus.nominal_memory_gib(None, 24_564 * 2**20) == 23  # unknown model: whole GiB down
    assert gpus.nominal_memory_gib(h100, 60 * 2**30) == 60  # no variant near: as read
