"""GPU quotas without a network: a total over every type, a limit per type, a user's own quota
over the default for everyone, and a request of no type sent where its owner still has room."""

from __future__ import annotations

from suanli_scheduler.ledger import Claim, GpuSlotLedger, NodeInventory, SlotPool
from suanli_scheduler.models import QuotaRow
from suanli_scheduler.quotas import QuotaTable


def table(*rows: tuple[str, str, int]) -> QuotaTable:
    return QuotaTable(QuotaRow(owner_id=o, gpu_type=t, max_gpus=n) for o, t, n in rows)


def cluster() -> GpuSlotLedger:
    ledger = GpuSlotLedger()
    ledger.observe(NodeInventory("a", "127.0.0.1", (SlotPool("A100", 4), SlotPool("cpu", 4))), now=0)
    return ledger


def test_a_users_own_quota_wins_over_the_default_and_types_match_in_any_case() -> None:
    quotas = table(("*", "*", 8), ("ada", "*", 2), ("*", "a100", 1), ("ada", "A100", 3))
    assert (quotas.total_limit("ada"), quotas.total_limit("bob")) == (2, 8)
    assert (quotas.type_limit("ada", "a100"), quotas.type_limit("bob", "A100")) == (3, 1)
    assert quotas.type_limit("bob", "cpu") is None


def test_a_request_of_no_type_goes_where_its_owner_has_room() -> None:
    ledger = cluster()
    quotas = table(("ada", "cpu", 1))
    capacities, reason = quotas.room(ledger, "ada", "", 2)
    assert reason is None and {c.gpu_type for c in capacities} == {"A100"}
    capacities, reason = quotas.room(ledger, "ada", "cpu", 2)
    assert capacities == [] and reason == "waiting for quota: 0 of 1 cpu slot(s) in use"
    assert {c.gpu_type for c in quotas.room(ledger, "bob", "", 2)[0]} == {"A100", "cpu"}


def test_the_total_counts_slots_of_every_type() -> None:
    ledger = cluster()
    ledger.claim("a", Claim("l1", "ada", "A100", 2))
    quotas = table(("ada", "*", 3))
    assert quotas.room(ledger, "ada", "cpu", 1)[1] is None
    assert quotas.room(ledger, "ada", "cpu", 2) == ([], "waiting for quota: 2 of 3 GPU slot(s) in use")


def test_what_can_never_fit_is_told_at_submit() -> None:
    quotas = table(("ada", "cpu", 1), ("ada", "A100", 1))
    assert quotas.never_fits("ada", "", 1, ["A100", "cpu"]) is None
    assert quotas.never_fits("ada", "", 2, ["A100", "cpu"]) == (
        "it needs 2 GPU slot(s) of one type; your quota is A100: 1, cpu: 1"
    )
    assert quotas.never_fits("ada", "", 2, ["A100", "cpu", "H100"]) is None  # H100 has no limit
    assert "all types together is 1" in str(table(("ada", "*", 1)).never_fits("ada", "cpu", 2, ["cpu"]))
