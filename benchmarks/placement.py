"""Placement: decision time and choice quality.

Decision time: one `planner.plan` call (filters, scoring, top-5 ranking and the
rejection counts) over federations of 1k, 10k and 100k offers, for a mix of
intents; p50/p99 over many decisions. Baseline, in the same run: the same
decision as a plain Python loop over offer objects (what the first version of
the planner did).

Quality, on the packaged federation (real GPU cloud catalogs): for the seeds'
intents and a generated mix, the cost of FLARE's choice under
Cost_Minimization against (a) the exhaustive optimum found by brute force and
(b) the first matching offer, which is what the earlier FLARE took.

Usage: python benchmarks/placement.py [--decisions 300] [--quick]
Prints tables and writes benchmarks/results/placement.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from benchmarks.common import write_results
from controlplane.federation.local import load_offers
from controlplane.placement import planner, requirements, table
from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from flare import geo
from flare.money import DEFAULT_RATES_PER_EUR, Money
from flare.v1 import intent_pb2
from tests.intents import SEED_INFERENCE, SEED_TRAINING, intent_from

COST = intent_pb2.OBJECTIVE_COST_MINIMIZATION


def synthetic_federation(base: list[Offer], size: int, seed: int) -> list[Offer]:
    """`size` offers drawn from the real ones, with prices, capacity and places varied."""
    rng = random.Random(seed)
    countries = sorted(geo.CONTINENT_OF_COUNTRY)
    result = []
    for index in range(size):
        offer = rng.choice(base)
        country = rng.choice(countries)
        total = rng.choice((1, 2, 4, 8))
        result.append(
            replace(
                offer,
                name=f"providers/p{index % 97}/offers/o{index}",
                provider=f"p{index % 97}",
                cluster=f"c{index % 389}",
                node=f"o{index}",
                price_per_gpu_hour=(
                    offer.price_per_gpu_hour * Decimal(rng.randint(70, 130)) / 100
                ).quantize(Decimal("0.0001")),
                gpus_total=total,
                gpus_free=rng.randint(0, total),
                country=country,
                continent=geo.CONTINENT_OF_COUNTRY[country],
                region=f"{country.lower()}-{rng.randint(1, 3)}",
                latency_ms=rng.randint(2, 250),
                preemptible=rng.random() < 0.2,
            )
        )
    return result


def intent_mix(rng: random.Random, models: list[str], count: int) -> list[Requirements]:
    mix = []
    for _ in range(count):
        gpus = rng.choice((1, 1, 2, 4, 8))
        limit = rng.choice((None, None, 2.0, 4.0, 8.0))
        mix.append(
            Requirements(
                gpu_count=gpus,
                gpu_model=rng.choice(["", *models]),
                location=rng.choice(("", "EU", "US", "Europe", "DE")),
                max_hourly_cost=None if limit is None else Money(Decimal(str(limit * gpus)), "EUR"),
                preemptible=rng.choice((None, False)),
                min_availability=rng.choice((0.0, 99.0)),
            )
        )
    return mix


# -- the baseline: the same decision as a plain loop over offer objects ------


def _eur(offer: Offer) -> float:
    rate = DEFAULT_RATES_PER_EUR.get(offer.currency)
    return float(offer.price_per_gpu_hour / rate) if rate else float("inf")


def accepts(req: Requirements, offer: Offer) -> bool:
    if req.gpu_model and offer.gpu_model != req.gpu_model:
        return False
    if req.location and not geo.matches(
        req.location, country=offer.country, continent=offer.continent, region=offer.region
    ):
        return False
    if req.preemptible is not None and offer.preemptible != req.preemptible:
        return False
    if offer.availability < req.min_availability:
        return False
    if req.min_availability and offer.preemptible:
        return False
    if req.max_hourly_cost is not None:
        limit = float(
            req.max_hourly_cost.amount / DEFAULT_RATES_PER_EUR[req.max_hourly_cost.currency]
        )
        if _eur(offer) * req.gpu_count > limit:
            return False
    return offer.gpus_free >= req.gpu_count


def baseline_plan(req: Requirements, offers: list[Offer], top_k: int = 5) -> list[Offer]:
    feasible, rejected = [], 0
    for offer in offers:
        if accepts(req, offer):
            feasible.append(offer)
        else:
            rejected += 1
    costs = [_eur(o) * req.gpu_count for o in feasible]
    if not costs:
        return []
    low, high = min(costs), max(costs)
    span = (high - low) or 1.0
    scored = sorted(
        zip(((high - c) / span for c in costs), costs, feasible, strict=True),
        key=lambda item: (-item[0], item[1], item[2].name),
    )
    return [offer for _, _, offer in scored[:top_k]]


# -- measurements ------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def decision_times(base: list[Offer], sizes: tuple[int, ...], decisions: int) -> dict[str, Any]:
    models = sorted({o.gpu_model for o in base})
    rows: dict[str, Any] = {}
    for size in sizes:
        offers = synthetic_federation(base, size, seed=size)
        offer_table = table.build(offers)
        mix = intent_mix(random.Random(size), models, decisions)
        flare_times = []
        for req in mix:
            started = time.perf_counter()
            planner.plan(req, offer_table, COST, top_k=5)
            flare_times.append(time.perf_counter() - started)
        baseline_runs = max(5, decisions * 1000 // size)
        baseline_times = []
        for req in mix[:baseline_runs]:
            started = time.perf_counter()
            baseline_plan(req, offers)
            baseline_times.append(time.perf_counter() - started)
        rows[str(size)] = {
            "flare": percentiles(flare_times),
            "baseline_python_loop": percentiles(baseline_times),
            "decisions": len(flare_times),
            "baseline_decisions": len(baseline_times),
        }
    return rows


def quality(base: list[Offer], generated: int) -> dict[str, Any]:
    offer_table = table.build(base)
    models = sorted({o.gpu_model for o in base})
    seeds = [requirements.from_intent(intent_from(SEED_TRAINING))]
    inference = requirements.from_intent(intent_from(SEED_INFERENCE))
    seeds.append(replace(inference, max_latency_ms=0))  # the latency bound is checked separately
    mix = seeds + intent_mix(random.Random(7), models, generated)
    placed = matched_optimum = 0
    savings = []
    for req in mix:
        feasible = [o for o in base if accepts(req, o)]
        choice = planner.plan(req, offer_table, COST, top_k=1, alternatives=False, gangs=False).best
        if not feasible:
            assert choice is None
            continue
        assert choice is not None
        placed += 1
        optimum = min(_eur(o) for o in feasible) * req.gpu_count
        first = _eur(feasible[0]) * req.gpu_count
        matched_optimum += abs(choice.hourly_cost_eur - optimum) < 1e-9
        savings.append(1 - choice.hourly_cost_eur / first if first else 0.0)
    return {
        "intents": len(mix),
        "placed": placed,
        "equal_to_exhaustive_optimum": matched_optimum,
        "cost_reduction_vs_first_match": {
            "mean": round(statistics.fmean(savings), 4),
            "median": round(statistics.median(savings), 4),
            "share_of_intents_cheaper": round(sum(s > 1e-9 for s in savings) / len(savings), 4),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="1k and 10k offers only")
    args = parser.parse_args()
    base = load_offers()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    times = decision_times(base, sizes, args.decisions)
    quality_figures = quality(base, generated=1000)

    print(
        f"\nDecision time (filters + scoring + top-5 + rejection counts), {os.cpu_count()} cores\n"
    )
    header = (
        f"{'offers':>8}{'FLARE p50':>12}{'FLARE p99':>12}{'loop p50':>12}{'loop p99':>12}"
        f"{'speed-up':>10}"
    )
    print(header)
    print("-" * len(header))
    for size, row in times.items():
        loop = row["baseline_python_loop"]
        speedup = loop["p50_ms"] / max(row["flare"]["p50_ms"], 1e-9)
        print(
            f"{int(size):>8}{row['flare']['p50_ms']:>10.3f}ms{row['flare']['p99_ms']:>10.3f}ms"
            f"{loop['p50_ms']:>10.2f}ms{loop['p99_ms']:>10.2f}ms{speedup:>9.0f}x"
        )
    q = quality_figures
    print(
        f"\nChoice quality on the packaged federation ({len(base)} offers): "
        f"{q['intents']} intents, {q['placed']} placeable"
    )
    print(f"  equal to the exhaustive optimum: {q['equal_to_exhaustive_optimum']} of {q['placed']}")
    saving = q["cost_reduction_vs_first_match"]
    print(
        f"  cost reduction against first match (the earlier FLARE): mean {saving['mean']:.1%}, "
        f"median {saving['median']:.1%}, "
        f"cheaper for {saving['share_of_intents_cheaper']:.0%} of intents"
    )
    write_results(
        "placement",
        {
            "targets": {"p99_ms_at_10k": 1.0, "p99_ms_at_100k": 10.0},
            "decision_time": times,
            "quality": quality_figures,
            "federation_offers": len(base),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
