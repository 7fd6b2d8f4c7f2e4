from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from controlplane.federation.local import load_offers
from controlplane.placement import planner, requirements
from controlplane.placement.filters import first_failure
from flare.money import DEFAULT_RATES_PER_EUR
from flare.v1 import intent_pb2
from tests.intents import SEED_TRAINING, gpu_job, intent_from

OFFERS = load_offers()


def best(intent: intent_pb2.Intent) -> planner.Candidate:
    result = planner.plan(requirements.from_intent(intent), OFFERS, intent.objective)
    assert result.best is not None
    return result.best


def test_cost_objective_picks_the_cheapest_feasible_offer_not_the_first() -> None:
    intent = intent_from(SEED_TRAINING)
    req = requirements.from_intent(intent)
    feasible = [o for o in OFFERS if first_failure(req, o, DEFAULT_RATES_PER_EUR) is None]
    first_match = feasible[0]
    chosen = best(intent)
    cheapest = min(
        feasible,
        key=lambda o: o.price_per_gpu_hour / DEFAULT_RATES_PER_EUR[o.currency],
    )
    assert chosen.offer == cheapest
    assert chosen.offer != first_match  # the earlier FLARE took the first match


def test_each_objective_optimises_its_own_criterion() -> None:
    by_latency = best(gpu_job(model="nvidia-h100", objective="Latency_Minimization"))
    by_performance = best(gpu_job(model="any", objective="Performance_Maximization"))
    h100_latencies = [o.latency_ms for o in OFFERS if o.gpu_model == "nvidia-h100"]
    assert by_latency.offer.latency_ms == min(h100_latencies)
    assert by_performance.offer.fp16_tflops == max(o.fp16_tflops for o in OFFERS)


def test_hard_constraints_and_rejection_counts() -> None:
    intent = gpu_job(model="nvidia-h100", count=2, location="EU", max_hourly_cost="5.5 EUR")
    result = planner.plan(requirements.from_intent(intent), OFFERS, intent.objective, top_k=50)
    for candidate in result.candidates:
        assert candidate.offer.country in {"FI", "DE", "FR", "IE"}
        assert candidate.offer.gpu_model == "nvidia-h100"
        assert candidate.hourly_cost.amount <= Decimal("5.5")
    reasons = {r.reason: r.count for r in result.rejections}
    assert sum(reasons.values()) + len(result.candidates) == len(OFFERS)
    assert reasons["gpu_model"] == sum(1 for o in OFFERS if o.gpu_model != "nvidia-h100")


def test_nothing_fits_gives_reasons_not_candidates() -> None:
    intent = gpu_job(model="nvidia-b200", count=16, location="EU")
    result = planner.plan(requirements.from_intent(intent), OFFERS, intent.objective)
    assert result.best is None
    assert result.rejections[0].reason == "gpu_model"


def test_same_input_same_answer_and_ties_break_by_name() -> None:
    twin = replace(OFFERS[0], name=OFFERS[0].name + "-twin", node="twin")
    offers = [twin, *OFFERS]
    intent = gpu_job(model=OFFERS[0].gpu_model, count=1)
    req = requirements.from_intent(intent)
    first = planner.plan(req, offers, intent.objective, top_k=50)
    again = planner.plan(req, list(reversed(offers)), intent.objective, top_k=50)
    assert [c.offer.name for c in first.candidates] == [c.offer.name for c in again.candidates]


def test_capacity_is_a_hard_constraint() -> None:
    full = [replace(o, gpus_free=0) for o in OFFERS]
    intent = gpu_job(model="any", count=1)
    result = planner.plan(requirements.from_intent(intent), full, intent.objective)
    assert result.best is None and result.rejections[0].reason == "capacity"
