"""Properties of placement on generated federations and intents, checked
against a plain-Python reference of the hard constraints."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.placement import planner, table
from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from flare import geo, gpus
from flare.money import DEFAULT_RATES_PER_EUR, Money

MODELS = ("nvidia-h100", "nvidia-a100", "nvidia-l4", "amd-mi300x")
COUNTRIES = ("DE", "FR", "FI", "CH", "GB", "US", "JP")
COST = 1  # OBJECTIVE_COST_MINIMIZATION


@st.composite
def offers(draw: st.DrawFn) -> list[Offer]:
    result = []
    for index in range(draw(st.integers(1, 40))):
        spec = gpus.BY_MODEL[draw(st.sampled_from(MODELS))]
        country = draw(st.sampled_from(COUNTRIES))
        total = draw(st.sampled_from((1, 2, 4, 8)))
        result.append(
            Offer(
                name=f"providers/p{index % 5}/offers/o{index}",
                provider=f"p{index % 5}",
                cluster=f"c{index % 5}",
                node=f"o{index}",
                gpu_model=spec.model,
                gpu_vendor=spec.vendor,
                gpu_architecture=spec.architecture,
                gpu_memory_gib=float(spec.memory_gib[0]),
                compute_capability=spec.compute_capability,
                tier=spec.tier,
                interconnect=spec.interconnect,
                topology="",
                fp32_tflops=spec.fp32_tflops,
                fp16_tflops=spec.fp16_tflops,
                tdp_watts=spec.tdp_watts,
                gpus_total=total,
                gpus_free=draw(st.integers(0, total)),
                region=f"r-{country.lower()}",
                country=country,
                continent=geo.CONTINENT_OF_COUNTRY[country],
                zone="",
                price_per_gpu_hour=Decimal(draw(st.integers(10, 500))) / 100,
                currency=draw(st.sampled_from(("EUR", "USD", "CHF"))),
                preemptible=draw(st.booleans()),
                latency_ms=draw(st.integers(1, 300)),
                availability=draw(st.sampled_from((99.0, 99.9, 99.99))),
                carbon_intensity_g_per_kwh=100.0,
            )
        )
    return result


@st.composite
def needs(draw: st.DrawFn) -> Requirements:
    limit = draw(st.none() | st.integers(50, 4000))
    return Requirements(
        gpu_count=draw(st.integers(1, 8)),
        gpu_model=draw(st.sampled_from(("", *MODELS))),
        location=draw(st.sampled_from(("", "EU", "US", "DE", "Europe", "Asia"))),
        max_hourly_cost=None
        if limit is None
        else Money(Decimal(limit) / 100, draw(st.sampled_from(("EUR", "USD")))),
        preemptible=draw(st.sampled_from((None, True, False))),
        min_availability=draw(st.sampled_from((0.0, 99.9))),
        max_latency_ms=draw(st.sampled_from((0, 100))),
    )


def eur(amount: Decimal, currency: str) -> Decimal:
    return amount / DEFAULT_RATES_PER_EUR[currency]


def reference_accepts(req: Requirements, offer: Offer, gpus_taken: int) -> bool:
    """The hard constraints written out plainly, one offer at a time."""
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
    if req.min_availability and offer.preemptible:  # spot guarantees no availability
        return False
    if req.max_latency_ms and offer.latency_ms > req.max_latency_ms:
        return False
    if req.max_hourly_cost is not None:
        cost = eur(offer.price_per_gpu_hour * req.gpu_count, offer.currency)
        if cost > eur(req.max_hourly_cost.amount, req.max_hourly_cost.currency):
            return False
    return offer.gpus_free >= gpus_taken


@settings(max_examples=300, deadline=None)
@given(offers(), needs())
def test_every_choice_satisfies_every_hard_constraint(
    federation: list[Offer], req: Requirements
) -> None:
    result = planner.plan(req, table.build(federation), COST, top_k=50)
    for candidate in result.candidates:
        assert candidate.gpu_count == req.gpu_count
        for share in candidate.shares:
            assert reference_accepts(req, share.offer, share.gpu_count)
        assert len({s.offer.cluster for s in candidate.shares}) == 1


@settings(max_examples=300, deadline=None)
@given(offers(), needs())
def test_the_cost_choice_is_the_brute_force_optimum(
    federation: list[Offer], req: Requirements
) -> None:
    singles = [o for o in federation if reference_accepts(req, o, req.gpu_count)]
    result = planner.plan(req, table.build(federation), COST)
    if not singles:
        assert result.best is None or len(result.best.shares) > 1
        return
    optimum = min(eur(o.price_per_gpu_hour, o.currency) * req.gpu_count for o in singles)
    assert result.best is not None
    assert abs(result.best.hourly_cost_eur - float(optimum)) < 1e-9


@settings(max_examples=300, deadline=None)
@given(offers(), needs(), st.sampled_from(("budget", "location", "latency")))
def test_tightening_a_constraint_never_gives_a_cheaper_result(
    federation: list[Offer], req: Requirements, how: str
) -> None:
    match how:
        case "budget":
            tighter = replace(req, max_hourly_cost=Money(Decimal("1.5") * req.gpu_count, "EUR"))
            if req.max_hourly_cost is not None:
                tighter = replace(
                    req,
                    max_hourly_cost=Money(
                        req.max_hourly_cost.amount / 2, req.max_hourly_cost.currency
                    ),
                )
        case "location":
            tighter = replace(
                req, location="DE" if req.location in ("", "EU", "Europe") else req.location
            )
        case _:
            tighter = replace(req, max_latency_ms=min(req.max_latency_ms or 300, 50))
    offers_table = table.build(federation)
    loose = planner.plan(req, offers_table, COST).best
    tight = planner.plan(tighter, offers_table, COST).best
    if tight is not None:
        assert loose is not None
        assert tight.hourly_cost_eur >= loose.hourly_cost_eur - 1e-9


@settings(max_examples=200, deadline=None)
@given(offers(), needs(), st.integers(0, 2**32), st.sampled_from((1, 2, 3, 4, 5)))
def test_same_input_same_answer_in_any_order(
    federation: list[Offer], req: Requirements, seed: int, objective: int
) -> None:
    shuffled = federation[:]
    random.Random(seed).shuffle(shuffled)
    first = planner.plan(req, table.build(federation), objective, top_k=10)
    again = planner.plan(req, table.build(shuffled), objective, top_k=10)
    assert [[s.offer.name for s in c.shares] for c in first.candidates] == [
        [s.offer.name for s in c.shares] for c in again.candidates
    ]
    assert first.rejections == again.rejections
