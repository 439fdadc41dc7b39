"""GPU quotas: how many slots a user may hold at once, in all ("gpu:*" in auth, gpu_type "*" here)
and of one type ("gpu:A100-80G"). A user's own quota wins over the default for every user
(owner "*"). A request that names no type may go to any type whose quota leaves it room."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from suanli_scheduler.ledger import Capacity, GpuSlotLedger, same_type, type_key
from suanli_scheduler.models import QuotaRow

ANY = "*"


class QuotaTable:
    """Every quota row, read once per placement pass or submit batch instead of once per job."""

    def __init__(self, rows: Iterable[QuotaRow]) -> None:
        self._limits = {
            (r.owner_id, ANY if r.gpu_type == ANY else type_key(r.gpu_type)): r.max_gpus for r in rows
        }

    def _limit(self, owner_id: str, key: str) -> int | None:
        for owner in (owner_id, ANY):
            if (owner, key) in self._limits:
                return self._limits[(owner, key)]
        return None

    def total_limit(self, owner_id: str) -> int | None:
        return self._limit(owner_id, ANY)

    def type_limit(self, owner_id: str, gpu_type: str) -> int | None:
        return self._limit(owner_id, type_key(gpu_type))

    def never_fits(self, owner_id: str, gpu_type: str, need: int, cluster_types: Sequence[str]) -> str | None:
        """Why `need` slots could never be held under the owner's quotas (refused at submit)."""
        total = self.total_limit(owner_id)
        if total is not None and need > total:
            return f"it needs {need} GPU slot(s); your quota for all types together is {total}"
        types = [gpu_type] if gpu_type else list(cluster_types)
        limits = [self.type_limit(owner_id, t) for t in types]
        if types and all(limit is not None and need > limit for limit in limits):
            quotas = ", ".join(f"{t}: {limit}" for t, limit in zip(types, limits, strict=True))
            return f"it needs {need} GPU slot(s) of one type; your quota is {quotas}"
        return None

    def room(
        self, ledger: GpuSlotLedger, owner_id: str, gpu_type: str, need: int
    ) -> tuple[list[Capacity], str | None]:
        """The live capacities the owner may take `need` slots from now (of `gpu_type`, or of any
        type when it is ""), and why the request waits for quota when there are none."""
        capacities = [c for c in ledger.capacities() if not gpu_type or same_type(c.gpu_type, gpu_type)]
        total = self.total_limit(owner_id)
        if total is not None and (used := ledger.used_by(owner_id)) + need > total:
            return [], f"waiting for quota: {used} of {total} GPU slot(s) in use"
        if not self._limits:
            return capacities, None
        reason = None
        allowed = []
        for capacity in capacities:
            limit = self.type_limit(owner_id, capacity.gpu_type)
            used = ledger.used_by(owner_id, capacity.gpu_type)
            if limit is not None and used + need > limit:
                reason = f"waiting for quota: {used} of {limit} {capacity.gpu_type} slot(s) in use"
            else:
                allowed.append(capacity)
        return allowed, (reason if not allowed else None)
