"""The control plane's side of the stream without a network: the sequence
rules of the hub, the journal's durability format, and agents as offers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlplane.errors import InvalidArgument
from controlplane.federation.local import LocalFederation
from controlplane.telemetry.hub import NodeState, Superseded, TelemetryHub
from controlplane.telemetry.journal import Journal, Kind, read_segment
from controlplane.telemetry.offers import offers_of
from flare.v1 import intent_pb2
from flare.v1 import telemetry_service_pb2 as pb
from tests.telemetry_support import hello, inventory, samples


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_applies_in_order_and_drops_duplicates() -> None:
    hub = TelemetryHub()
    inv = inventory()
    state, stream = hub.hello(hello(inv))
    assert [hub.accept(state, stream, samples(n, inv)).fresh for n in (1, 2, 2, 1, 3)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert state.sequence == 3 and hub.duplicates == 2
    assert state.latest["GPU-gpu-1-0"].gpu_utilization_percent == 3.0


def test_a_gap_is_reported_with_the_missing_numbers() -> None:
    hub = TelemetryHub()
    inv = inventory()
    state, stream = hub.hello(hello(inv))
    hub.accept(state, stream, samples(1, inv))
    verdict = hub.accept(state, stream, samples(5, inv))
    assert verdict.fresh and verdict.missing == (2, 3, 4)
    assert hub.missing == 3


def test_a_new_agent_instance_starts_the_sequence_afresh() -> None:
    hub = TelemetryHub()
    inv = inventory()
    state, stream = hub.hello(hello(inv, "boot-1"))
    hub.accept(state, stream, samples(7, inv, instance="boot-1"))
    again, stream = hub.hello(hello(inv, "boot-2"))
    assert again.sequence == 0
    assert hub.accept(again, stream, samples(1, inv, instance="boot-2")).fresh


def test_a_newer_stream_of_the_same_node_supersedes_the_older() -> None:
    hub = TelemetryHub()
    inv = inventory()
    state, old = hub.hello(hello(inv))
    state, new = hub.hello(hello(inv))
    with pytest.raises(Superseded):
        hub.accept(state, old, samples(1, inv))
    assert hub.accept(state, new, samples(1, inv)).fresh
    hub.closed(state, old)  # the old stream ending late does not close the new one
    assert hub.accept(state, new, samples(2, inv)).fresh


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            pb.StreamTelemetryRequest(sequence=3, agent_instance="i", inventory=inventory()),
            "sequence",
        ),
        (pb.StreamTelemetryRequest(sequence=0, inventory=inventory()), "agent_instance"),
        (pb.StreamTelemetryRequest(sequence=0, agent_instance="i"), "inventory"),
        (hello(pb.NodeInventory(node="n")), "inventory.provider"),
        (
            hello(
                pb.NodeInventory(
                    provider="p", node="n", gpus=[pb.GpuDevice(uuid="A"), pb.GpuDevice(uuid="A")]
                )
            ),
            "inventory.gpus[1].uuid",
        ),
    ],
)
def test_a_bad_hello_names_the_field(request_: pb.StreamTelemetryRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        TelemetryHub().hello(request_)
    assert field in [v.field for v in caught.value.violations]


def test_inside_a_stream_only_numbered_messages_of_its_instance_are_taken() -> None:
    hub = TelemetryHub()
    inv = inventory()
    state, stream = hub.hello(hello(inv, "i-1"))
    for bad in (samples(0, inv), samples(1, inv, instance="other")):
        with pytest.raises(InvalidArgument):
            hub.accept(state, stream, bad)
    with pytest.raises(InvalidArgument):
        hub.accept(state, stream, pb.StreamTelemetryRequest(sequence=1, agent_instance="i-1"))


def test_listeners_hear_of_inventory_and_health_changes_not_of_every_sample() -> None:
    hub = TelemetryHub()
    heard: list[int] = []
    hub.on_node_changed(lambda node: heard.append(len(node.healthy_gpus())))
    inv = inventory(gpus=4)
    state, stream = hub.hello(hello(inv))
    for n in range(1, 4):
        hub.accept(state, stream, samples(n, inv))
    hub.accept(state, stream, samples(4, inv, unhealthy=frozenset({2})))
    hub.accept(state, stream, samples(5, inv, unhealthy=frozenset({2})))
    hub.accept(state, stream, samples(6, inv))
    assert heard == [4, 3, 4]


def test_a_gpu_that_leaves_the_inventory_leaves_the_state() -> None:
    hub = TelemetryHub()
    inv = inventory(gpus=2)
    state, stream = hub.hello(hello(inv))
    hub.accept(state, stream, samples(1, inv))
    smaller = inventory(gpus=1)
    hub.accept(
        state,
        stream,
        pb.StreamTelemetryRequest(sequence=2, agent_instance="i-1", inventory=smaller),
    )
    assert set(state.latest) == {"GPU-gpu-1-0"}
    hub.accept(state, stream, samples(3, inv))  # samples of the gone GPU are not kept
    assert set(state.latest) == {"GPU-gpu-1-0"}


def test_an_agent_not_heard_goes_stale_and_comes_back_with_its_next_message() -> None:
    clock = FakeClock()
    hub = TelemetryHub(clock)
    stale: list[bool] = []
    hub.on_node_changed(lambda node: stale.append(node.stale))
    inv = inventory()
    state, stream = hub.hello(hello(inv))
    clock.now += 10
    assert hub.sweep(30) == []
    clock.now += 25
    assert hub.sweep(30) == [state] and state.stale
    assert hub.sweep(30) == []  # said once
    hub.accept(state, stream, samples(1, inv))
    assert not state.stale
    assert stale == [False, True, False]


async def test_the_journal_replays_what_was_appended_and_cuts_a_torn_tail(
    tmp_path: Path,
) -> None:
    hub = TelemetryHub()
    journal = Journal(tmp_path)
    assert list(journal.open(hub.checkpoint)) == []
    inv = inventory()
    state, stream = hub.hello(hello(inv))
    journal.append(state.key, hello(inv).SerializeToString())
    for n in range(1, 6):
        hub.accept(state, stream, samples(n, inv))
        await journal.append(state.key, samples(n, inv).SerializeToString())
    await journal.close()
    segment = journal.segments()[-1]
    with segment.open("ab") as handle:
        handle.write(b"\x40\x00\x00\x00garbage")  # a record cut short by a crash

    again = TelemetryHub()
    reopened = Journal(tmp_path)
    assert again.replay(reopened.open(again.checkpoint)) == 6
    node = again.nodes[state.key]
    assert (node.instance, node.sequence, node.durable) == ("i-1", 5, 5)
    assert node.latest["GPU-gpu-1-0"].gpu_utilization_percent == 5.0
    assert read_segment(segment)[1] == segment.stat().st_size  # the torn tail is gone
    await reopened.close()


async def test_a_new_segment_opens_with_a_checkpoint_so_old_ones_can_go(tmp_path: Path) -> None:
    hub = TelemetryHub()
    journal = Journal(tmp_path, segment_bytes=2_000, retain_segments=2)
    list(journal.open(hub.checkpoint))
    inv = inventory(gpus=8)
    state, stream = hub.hello(hello(inv))
    await journal.append(state.key, hello(inv).SerializeToString())
    for n in range(1, 40):
        hub.accept(state, stream, samples(n, inv))
        await journal.append(state.key, samples(n, inv).SerializeToString())
    await journal.close()
    segments = journal.segments()
    assert len(segments) == 2  # older ones deleted
    first_records, _ = read_segment(segments[0])
    assert first_records[0].kind == Kind.CHECKPOINT

    again = TelemetryHub()
    reopened = Journal(tmp_path, segment_bytes=2_000, retain_segments=2)
    again.replay(reopened.open(again.checkpoint))
    node = again.nodes[state.key]
    assert node.sequence == 39 and node.inventory == inv
    await reopened.close()


async def test_appends_made_together_share_one_sync(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    list(journal.open(lambda: ()))
    await asyncio.gather(*(journal.append("k", b"x" * 10) for _ in range(200)))
    assert journal.appended == 200 and journal.syncs < 20
    await journal.close()


def node_state(**kwargs: object) -> NodeState:
    hub = TelemetryHub()
    inv = inventory(**kwargs)  # type: ignore[arg-type]
    state, _ = hub.hello(hello(inv))
    return state


def test_a_node_becomes_an_offer_priced_and_placed_by_its_terms() -> None:
    [offer] = offers_of(node_state(gpus=4, price="2.25"))
    assert offer.name == "providers/lab/offers/gpu-1"
    assert (offer.gpu_model, offer.gpus_total, offer.gpu_memory_gib) == ("nvidia-h100", 4, 80.0)
    assert str(offer.price_per_gpu_hour) == "2.25" and offer.currency == "EUR"
    assert (offer.country, offer.continent, offer.availability) == ("FR", "Europe", 99.5)
    assert offer.interconnect == "nvlink"


def test_unhealthy_gpus_leave_the_offer_and_a_stale_node_has_none() -> None:
    state = node_state(gpus=4)
    hub = TelemetryHub()
    state, stream = hub.hello(hello(state.inventory))
    hub.accept(state, stream, samples(1, state.inventory, unhealthy=frozenset({0, 1})))
    [offer] = offers_of(state)
    assert offer.gpus_total == 2 and offer.healthy
    hub.accept(state, stream, samples(2, state.inventory, unhealthy=frozenset({0, 1, 2, 3})))
    assert not offers_of(state)[0].healthy
    state.stale = True
    assert offers_of(state) == []


def test_a_node_with_a_bad_price_or_an_unknown_model_offers_nothing() -> None:
    assert offers_of(node_state(price="-1")) == []
    assert offers_of(node_state(price="cheap")) == []
    assert offers_of(node_state(model="nvidia-imaginary")) == []


async def test_holds_outlive_an_offer_that_leaves_and_count_when_it_returns() -> None:
    federation = LocalFederation([])
    [offer] = offers_of(node_state(gpus=4))
    federation.replace_offers("lab/lab/gpu-1", [offer])
    intent = intent_pb2.Intent(name="tenants/t/intents/a")
    intent.placement.offer = offer.name
    intent.placement.nodes.add(offer=offer.name, gpu_count=3)
    await federation.reserve(intent)
    assert (await federation.offers()).gpus_free.tolist() == [1]
    federation.replace_offers("lab/lab/gpu-1", [])  # the agent went stale
    assert len(await federation.offers()) == 0
    federation.replace_offers("lab/lab/gpu-1", [offer])
    assert (await federation.offers()).gpus_free.tolist() == [1]
    await federation.release(intent)
    assert (await federation.offers()).gpus_free.tolist() == [4]


def test_capacity_listeners_hear_only_when_capacity_may_have_grown() -> None:
    federation = LocalFederation([])
    heard: list[str] = []
    federation.on_capacity_freed(lambda: heard.append("freed"))
    [offer] = offers_of(node_state(gpus=4))
    federation.replace_offers("n", [offer])
    federation.replace_offers("n", [offer])  # unchanged
    from dataclasses import replace

    federation.replace_offers("n", [replace(offer, gpus_total=2, gpus_free=2)])
    federation.replace_offers("n", [offer])
    assert heard == ["freed", "freed"]
