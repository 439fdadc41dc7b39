"""Placement of work that reserves CPU and memory besides GPU slots (instances), and of work of no
GPU slots at all: pure functions over ledger capacities, and the ledger's accounting."""

from __future__ import annotations

import pytest

from suanli_common.errors import InvalidRequest
from suanli_scheduler.ledger import Claim, GpuSlotLedger, NodeInventory, SlotPool
from suanli_scheduler.placement import Placement, PlacementRequest, Unplaceable, check_feasible, place

NO_LLAMAFACTORY = (("llamafactory", "the llamafactory package is not installed on node small"),)


def nodes() -> list[NodeInventory]:
    return [
        NodeInventory(
            "small",
            "10.0.0.1",
            (SlotPool("cpu", 2),),
            cpu_millis=2000,
            memory_mb=4096,
            unavailable_kinds=NO_LLAMAFACTORY,
        ),
        NodeInventory("big", "10.0.0.2", (SlotPool("A100", 1),), cpu_millis=16000, memory_mb=65536),
    ]


def ledger() -> GpuSlotLedger:
    book = GpuSlotLedger()
    for node in nodes():
        book.observe(node, now=0.0)
    return book


def test_cpu_and_memory_claims_count_against_the_node_and_come_back_on_release() -> None:
    book = ledger()
    book.claim("small", Claim("l1", "u", "", 0, cpu_millis=1500, memory_mb=1024))
    small = next(c for c in book.capacities() if c.node_id == "small")
    assert (small.free_cpu_millis, small.free_memory_mb, small.free) == (500, 3072, 2)
    assert book.used_by("u") == 0  # no GPU slot is held, so no GPU quota is used
    book.release("l1")
    small = next(c for c in book.capacities() if c.node_id == "small")
    assert (small.free_cpu_millis, small.free_memory_mb) == (2000, 4096)


def test_a_request_of_no_gpus_takes_a_node_by_cpu_and_memory_alone() -> None:
    book = ledger()
    fits_small = place(PlacementRequest(1, 0, cpu_millis=1000, memory_mb=2048), book.capacities())
    assert fits_small == Placement("", ("small",))  # the fuller node first (best fit)
    only_big = place(PlacementRequest(1, 0, cpu_millis=4000, memory_mb=2048), book.capacities())
    assert only_big == Placement("", ("big",))
    book.claim("big", Claim("l1", "u", "", 0, cpu_millis=15000))
    waits = place(PlacementRequest(1, 0, cpu_millis=4000), book.capacities())
    assert isinstance(waits, Unplaceable) and "4 free CPU core(s)" in waits.reason


def test_gpu_slots_and_cpu_must_both_fit_on_one_node() -> None:
    book = ledger()
    book.claim("small", Claim("l1", "u", "", 0, cpu_millis=2000))
    decision = place(PlacementRequest(1, 1, "cpu", cpu_millis=500), book.capacities())
    assert isinstance(decision, Unplaceable) and "0.5 free CPU core(s)" in decision.reason
    assert place(PlacementRequest(1, 1, "cpu"), book.capacities()) == Placement("cpu", ("small",))


def test_an_instance_goes_only_to_a_node_that_can_run_its_kind() -> None:
    book = ledger()
    request = PlacementRequest(1, 0, cpu_millis=1000, instance_kind="llamafactory")
    assert place(request, book.capacities()) == Placement("", ("big",))
    small_only = [c for c in book.capacities() if c.node_id == "small"]
    assert isinstance(place(request, small_only), Unplaceable)


def test_what_no_node_could_ever_hold_is_refused_with_the_reason() -> None:
    with pytest.raises(
        InvalidRequest, match=r"cpu=64 is more than any node has \(largest: 16 cores\)"
    ) as cpu:
        check_feasible(PlacementRequest(1, 0, cpu_millis=64000), nodes())
    assert cpu.value.param == "cpu"
    with pytest.raises(InvalidRequest, match="memory_gb=100") as memory:
        check_feasible(PlacementRequest(1, 0, memory_mb=100 * 1024), nodes())
    assert memory.value.param == "memory_gb"
    small = [n for n in nodes() if n.node_id == "small"]
    with pytest.raises(InvalidRequest, match="llamafactory package is not installed on node small") as kind:
        check_feasible(PlacementRequest(1, 0, instance_kind="llamafactory"), small)
    assert kind.value.param == "kind"
    with pytest.raises(InvalidRequest, match="no node has joined"):
        check_feasible(PlacementRequest(1, 0, cpu_millis=1000), [])
    check_feasible(PlacementRequest(1, 0, cpu_millis=16000, instance_kind="llamafactory"), nodes())


def test_a_node_that_declares_no_cpu_or_memory_is_not_limited_by_them() -> None:
    bare = [NodeInventory("old", "10.0.0.3", (SlotPool("cpu", 1),))]
    check_feasible(PlacementRequest(1, 0, cpu_millis=64000, memory_mb=10**6), bare)
    book = GpuSlotLedger()
    book.observe(bare[0], now=0.0)
    assert place(PlacementRequest(1, 0, cpu_millis=64000), book.capacities()) == Placement("", ("old",))
