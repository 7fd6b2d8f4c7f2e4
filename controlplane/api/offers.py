"""OfferService: the federation's offers through the placement filters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc

from controlplane.api import paging
from controlplane.api.interceptor import principal
from controlplane.clock import Clock, utc_now
from controlplane.convert import offer_to_proto
from controlplane.errors import InvalidArgument
from controlplane.federation.port import Federation
from controlplane.intents.validation import validate_intent
from controlplane.placement import planner, requirements
from flare.v1 import intent_pb2, offer_service_pb2, offer_service_pb2_grpc
from flare.violation import FieldViolation


def _as_intent(request: offer_service_pb2.ListOffersRequest) -> intent_pb2.Intent:
    """An intent carrying only the request's filters, so offers are filtered
    exactly as placement filters them."""
    intent = intent_pb2.Intent(
        objective=request.objective or intent_pb2.OBJECTIVE_COST_MINIMIZATION
    )
    intent.workload.type = intent_pb2.WORKLOAD_TYPE_JOB
    intent.workload.name = "offers"
    intent.workload.image = "offers"
    intent.workload.resources.gpu.CopyFrom(request.gpu)
    if not request.available_only and not request.gpu.count:
        intent.workload.resources.gpu.count = 0
    intent.constraints.CopyFrom(request.constraints)
    return intent


class OfferServicer(offer_service_pb2_grpc.OfferServiceServicer):
    def __init__(self, federation: Federation, *, clock: Clock = utc_now) -> None:
        self._federation = federation
        self._clock = clock

    async def ListOffers(  # noqa: N802 - gRPC method name
        self,
        request: offer_service_pb2.ListOffersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> offer_service_pb2.ListOffersResponse:
        principal()
        intent = _as_intent(request)
        violations = [
            FieldViolation(
                v.field.replace("intent.workload.resources.", "").replace("intent.", ""),
                v.description,
            )
            for v in validate_intent(intent, now=self._clock())
        ]
        if violations:
            raise InvalidArgument(violations)
        req = requirements.from_intent(intent, now=self._clock())
        if request.available_only:
            req = replace(req, gpu_count=max(req.gpu_count, 1))
        offers = await self._federation.offers()
        result = planner.plan(
            req, offers, intent.objective, top_k=len(offers), alternatives=False, gangs=False
        )
        filters = offer_service_pb2.ListOffersRequest()
        filters.CopyFrom(request)
        filters.ClearField("page_token")
        filters.ClearField("page_size")
        query = filters.SerializeToString(deterministic=True).hex()
        start = paging.decode(request.page_token, query) or 0
        if not isinstance(start, int):
            raise InvalidArgument([FieldViolation("page_token", "not a token from this API")])
        size = paging.page_size(request.page_size)
        page = result.candidates[start : start + size]
        response = offer_service_pb2.ListOffersResponse(
            offers=[offer_to_proto(c.offer) for c in page], total_offers=len(offers)
        )
        if start + size < len(result.candidates):
            response.next_page_token = paging.encode(start + size, query)
        for rejection in result.rejections:
            response.rejections.add(
                reason=rejection.reason, message=rejection.message, count=rejection.count
            )
        return response
