"""The columnar layout of a federation's offers, for the placement hot path.

A decision over 100,000 offers cannot afford a Python loop per offer, so the
offers are turned once into numpy columns (categories as integer codes, prices
in the reference currency) and every filter and criterion is one vectorised
operation over them. The table is immutable; capacity, which changes with
every reservation, lives in its own array (`gpus_free`) that the federation
updates in place and snapshots per decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from controlplane.placement.offers import Offer
from flare.money import DEFAULT_RATES_PER_EUR

REFERENCE_CURRENCY = "EUR"
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def _codes(values: Sequence[str]) -> tuple[Ints, dict[str, int]]:
    vocabulary: dict[str, int] = {}
    codes = np.fromiter(
        (vocabulary.setdefault(v, len(vocabulary)) for v in values), np.int64, len(values)
    )
    return codes, vocabulary


def _cc(text: str) -> float:
    major, _, minor = text.partition(".")
    return float(major) + float(minor or 0) / 10 if major else 0.0


@dataclass(frozen=True, eq=False)
class OfferTable:
    offers: tuple[Offer, ...]
    rates: Mapping[str, Decimal]
    columns: dict[str, npt.NDArray[Any]] = field(repr=False)
    vocabularies: dict[str, dict[str, int]] = field(repr=False)
    gpus_free: Ints = field(repr=False)

    def __len__(self) -> int:
        return len(self.offers)

    def column(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    def code(self, column: str, value: str) -> int:
        """The code of `value` in a categorical column; -1 when absent."""
        return self.vocabularies[column].get(value, -1)

    def with_free(self, gpus_free: Ints) -> OfferTable:
        return replace(self, gpus_free=gpus_free)

    def offer(self, index: int) -> Offer:
        """The offer at `index`, with its current free capacity."""
        offer = self.offers[index]
        free = int(self.gpus_free[index])
        return offer if offer.gpus_free == free else replace(offer, gpus_free=free)


CATEGORIES = (
    "gpu_model",
    "gpu_vendor",
    "gpu_architecture",
    "tier",
    "interconnect",
    "topology",
    "country",
    "continent",
    "region",
    "zone",
    "provider",
    "cluster",
    "sharing_strategy",
)


def build(
    offers: Sequence[Offer], rates: Mapping[str, Decimal] = DEFAULT_RATES_PER_EUR
) -> OfferTable:
    """The table of `offers`. Prices are converted to the reference currency
    with `rates`; an offer in a currency without a rate is priced at +inf (it
    then fails every price limit and ranks last on cost)."""
    items = tuple(offers)
    columns: dict[str, npt.NDArray[Any]] = {}
    vocabularies: dict[str, dict[str, int]] = {}
    for name in CATEGORIES:
        values = [getattr(o, name) for o in items]
        if name == "provider":
            values = [v.lower() for v in values]
        columns[name], vocabularies[name] = _codes(values)

    def floats(values: Sequence[float]) -> Floats:
        return np.asarray(values, dtype=np.float64)

    def price(o: Offer) -> float:
        rate = rates.get(o.currency)
        return float(o.price_per_gpu_hour / rate) if rate else float("inf")

    columns.update(
        gpu_memory_gib=floats([o.gpu_memory_gib for o in items]),
        compute_capability=floats([_cc(o.compute_capability) for o in items]),
        fp32_tflops=floats([o.fp32_tflops for o in items]),
        fp16_tflops=floats([o.fp16_tflops for o in items]),
        tdp_watts=floats([o.tdp_watts for o in items]),
        gpus_total=np.asarray([o.gpus_total for o in items], dtype=np.int64),
        price_eur=floats([price(o) for o in items]),
        latency_ms=floats([o.latency_ms for o in items]),
        availability=floats([o.availability for o in items]),
        carbon=floats([o.carbon_intensity_g_per_kwh for o in items]),
        preemptible=np.asarray([o.preemptible for o in items], dtype=np.bool_),
        healthy=np.asarray([o.healthy for o in items], dtype=np.bool_),
        shared=np.asarray([o.shared for o in items], dtype=np.bool_),
        multi_instance=np.asarray([o.multi_instance for o in items], dtype=np.bool_),
    )
    columns["place"], vocabularies["place"] = _codes(
        [f"{o.country}|{o.continent}|{o.region}" for o in items]
    )
    order = sorted(range(len(items)), key=lambda i: items[i].name)
    name_rank = np.empty(len(items), dtype=np.int64)
    name_rank[order] = np.arange(len(items))
    columns["name_rank"] = name_rank
    free = np.asarray([o.gpus_free for o in items], dtype=np.int64)
    return OfferTable(items, dict(rates), columns, vocabularies, free)
