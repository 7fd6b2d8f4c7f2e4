"""Translation between placement's plain data and the wire messages, in one place."""

from __future__ import annotations

from controlplane.placement import planner
from controlplane.placement.offers import Offer
from flare.money import Money
from flare.quantity import format_bytes_gi
from flare.v1 import common_pb2, intent_pb2, offer_pb2


def offer_to_proto(offer: Offer) -> offer_pb2.Offer:
    message = offer_pb2.Offer(
        name=offer.name,
        provider=offer.provider,
        cluster=offer.cluster,
        node=offer.node,
        gpus_total=offer.gpus_total,
        gpus_free=offer.gpus_free,
        region=offer.region,
        country=offer.country,
        continent=offer.continent,
        zone=offer.zone,
        preemptible=offer.preemptible,
        latency_ms=offer.latency_ms,
        availability=offer.availability,
        carbon_intensity_g_per_kwh=offer.carbon_intensity_g_per_kwh,
        healthy=offer.healthy,
    )
    message.price_per_gpu_hour.currency_code = offer.currency
    message.price_per_gpu_hour.amount = f"{offer.price_per_gpu_hour:.4f}"
    gpu = message.gpu
    gpu.model = offer.gpu_model
    gpu.vendor = offer.gpu_vendor
    gpu.architecture = offer.gpu_architecture
    gpu.memory = format_bytes_gi(int(offer.gpu_memory_gib * 2**30))
    gpu.compute_capability = offer.compute_capability
    gpu.tier = offer.tier
    gpu.interconnect = offer.interconnect
    gpu.topology = offer.topology
    gpu.fp32_tflops = offer.fp32_tflops
    gpu.fp16_tflops = offer.fp16_tflops
    gpu.tdp_watts = offer.tdp_watts
    gpu.shared = offer.shared
    gpu.sharing_strategy = offer.sharing_strategy
    gpu.multi_instance = offer.multi_instance
    return message


def set_money(message: common_pb2.Money, money: Money, places: int = 4) -> None:
    message.currency_code = money.currency
    message.amount = f"{money.amount:.{places}f}"


def to_placement_proto(candidate: planner.Candidate) -> intent_pb2.Placement:
    offer = candidate.offer
    placement = intent_pb2.Placement(
        offer=offer.name,
        provider=offer.provider,
        cluster=offer.cluster,
        region=offer.region,
        gpu_model=offer.gpu_model,
        score=candidate.score,
    )
    for share in candidate.shares:
        placement.nodes.add(
            node=share.offer.node, gpu_count=share.gpu_count, offer=share.offer.name
        )
    set_money(placement.hourly_cost, candidate.hourly_cost)
    return placement


def to_candidate_proto(candidate: planner.Candidate, message: intent_pb2.Candidate) -> None:
    message.rank = candidate.rank
    message.score = candidate.score
    message.offer.CopyFrom(offer_to_proto(candidate.offer))
    message.placement.CopyFrom(to_placement_proto(candidate))
    for criterion in candidate.criteria:
        message.criteria.add(
            criterion=criterion.criterion,
            score=criterion.score,
            weight=criterion.weight,
            value=criterion.value,
            unit=criterion.unit,
        )


def to_plan_proto(result: planner.PlanResult) -> intent_pb2.Plan:
    plan = intent_pb2.Plan(offers_considered=result.offers_considered, objective=result.objective)  # type: ignore[arg-type]
    for candidate in result.candidates:
        to_candidate_proto(candidate, plan.candidates.add())
    for rejection in result.rejections:
        plan.rejections.add(
            reason=rejection.reason, message=rejection.message, count=rejection.count
        )
    for alternative in result.alternatives:
        entry = plan.alternatives.add(
            relaxed=alternative.relaxed,
            description=alternative.description,
            performance_impact=alternative.performance_impact or 0.0,
        )
        to_candidate_proto(alternative.candidate, entry.candidate)
        if alternative.cost_difference is not None:
            set_money(entry.cost_difference, alternative.cost_difference)
    return plan
