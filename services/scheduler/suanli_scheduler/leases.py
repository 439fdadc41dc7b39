"""Leases: each placement holds its nodes only while their agents keep listing it in heartbeats.

A lease starts with a grace period (the offer must reach the agent) and is renewed per node on
every heartbeat that lists it; when any node of a gang lets its share lapse, the whole attempt is
given up and the job requeued. The book is in memory; the scheduler rebuilds it from its
database at start, with a fresh grace period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Lease:
    lease_id: str
    job_id: str
    attempt: int
    owner_id: str
    node_ids: tuple[str, ...]
    expires: dict[str, float] = field(default_factory=dict)  # node id -> monotonic deadline
    phases: dict[str, str] = field(default_factory=dict)  # node id -> last phase heard of
    # Kept here so the expiry pass finds overdue jobs without reading every leased job's row:
    # the job's max run time plus the agents' grace (None: no limit), and when it began running.
    runtime_limit_s: float | None = None
    running_since: datetime | None = None


class LeaseBook:
    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}

    def grant(self, lease: Lease, until: float) -> None:
        lease.expires = dict.fromkeys(lease.node_ids, until)
        self._leases[lease.lease_id] = lease

    def get(self, lease_id: str) -> Lease | None:
        return self._leases.get(lease_id)

    def renew(self, lease_id: str, node_id: str, until: float) -> bool:
        lease = self._leases.get(lease_id)
        if lease is None or node_id not in lease.expires:
            return False
        lease.expires[node_id] = max(lease.expires[node_id], until)
        return True

    def drop(self, lease_id: str) -> Lease | None:
        return self._leases.pop(lease_id, None)

    def expired(self, now: float) -> list[Lease]:
        return [lease for lease in self._leases.values() if any(t < now for t in lease.expires.values())]

    def all(self) -> list[Lease]:
        return list(self._leases.values())

    def __len__(self) -> int:
        return len(self._leases)
