"""Placement and the ledger, without a network: type and count, gang all-or-nothing, best fit."""

from __future__ import annotations

import pytest

from suanli_common.errors import InvalidRequest
from suanli_scheduler.domain import JobSpec, JobType, validate_spec
from suanli_scheduler.ledger import Capacity, Claim, GpuSlotLedger, NodeInventory, SlotPool
from suanli_scheduler.placement import Placement, PlacementRequest, Unplaceable, check_feasible, place


def caps(*items: tuple[str, str, int, int]) -> list[Capacity]:
    return [Capacity(node, kind, total, free, "") for node, kind, total, free in items]


def test_places_by_type_and_count_best_fit() -> None:
    cluster = caps(("a", "A100", 8, 8), ("b", "A100", 8, 2), ("c", "H100", 8, 8))
    decision = place(PlacementRequest(1, 2, "A100"), cluster)
    assert decision == Placement("A100", ("b",))  # the fullest node that fits
    assert place(PlacementRequest(1, 4, "a100"), cluster) == Placement("A100", ("a",))
    assert isinstance(place(PlacementRequest(1, 9, "A100"), cluster), Unplaceable)


def test_gang_is_all_or_nothing() -> None:
    cluster = caps(("a", "cpu", 2, 2), ("b", "cpu", 2, 1), ("c", "cpu", 2, 2))
    assert place(PlacementRequest(2, 2, "cpu"), cluster) == Placement("cpu", ("a", "c"))
    decision = place(PlacementRequest(3, 2, "cpu"), cluster)
    assert isinstance(decision, Unplaceable) and "2 such node(s)" in decision.reason


def test_ledger_never_promises_a_slot_twice() -> None:
    ledger = GpuSlotLedger()
    ledger.observe(NodeInventory("a", "127.0.0.1", (SlotPool("cpu", 2, 0, 0),)), now=0)
    ledger.claim("a", Claim("lease1", "u", "cpu", 1))
    assert [c.free for c in ledger.capacities()] == [1]
    # The agent still runs a superseded attempt on both slots: nothing is free until it stops.
    ledger.observe(NodeInventory("a", "127.0.0.1", (SlotPool("cpu", 2, 0, 2),)), now=1)
    assert [c.free for c in ledger.capacities()] == [0]
    assert ledger.mark_lost(now=10, ttl=5) == ["a"] and ledger.capacities() == []


def test_infeasible_requests_are_refused_with_their_param() -> None:
    nodes = [NodeInventory("a", "", (SlotPool("A100", 4),)), NodeInventory("b", "", (SlotPool("A100", 2),))]
    with pytest.raises(InvalidRequest) as exc:
        check_feasible(PlacementRequest(1, 8, "A100"), nodes)
    assert exc.value.param == "gpus_per_node"
    with pytest.raises(InvalidRequest) as exc:
        check_feasible(PlacementRequest(1, 1, "TPU"), nodes)
    assert exc.value.param == "gpu_type"
    with pytest.raises(InvalidRequest) as exc:
        check_feasible(PlacementRequest(2, 4, "A100"), nodes)
    assert exc.value.param == "nodes"
    with pytest.raises(InvalidRequest) as exc:
        check_feasible(PlacementRequest(1, 1, "A100", needs_container=True), nodes)
    assert exc.value.param == "image"
    check_feasible(PlacementRequest(2, 2, "A100"), nodes)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"gpus_per_node": 0}, "gpus_per_node"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"nodes": 0}, "nodes"),
        ({"command": ""}, "command"),
        ({"ckpt_path": "../other-job/ckpt"}, "ckpt_path"),
        ({"model_save_path": "out/../../x"}, "model_save_path"),
        ({"max_runtime_minutes": 0}, "max_runtime_minutes"),
        ({"env": {"RANK": "3"}}, "env"),
    ],
)
def test_bad_specs_are_refused(changes: dict[str, object], param: str) -> None:
    spec = JobSpec(**{"name": "j", "job_type": JobType.pytorch, "command": "true", **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as exc:
        validate_spec(spec)
    assert exc.value.param == param


def test_paths_are_normalised_into_the_volume() -> None:
    spec = validate_spec(JobSpec(name="j", job_type=JobType.pytorch, command="x", ckpt_path="/ckpt/a"))
    assert spec.ckpt_path == "ckpt/a"
