"""The jobs waiting for placement, in memory and in serving order (priority, then FIFO).

A placement pass used to re-read every waiting job from the database; now the queue is loaded
once at start and changed after each commit that queues, requeues, places or ends a job. The
database stays the source of truth: a restart rebuilds the queue from it, and a placement is
written only where the job's row is still queued and unplaced.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from suanli_scheduler.domain import JobSpec
from suanli_scheduler.models import JobRow


@dataclass(slots=True)
class WaitingJob:
    id: str
    owner_id: str
    spec: JobSpec
    priority: int
    created_at: datetime
    attempt: int
    status_reason: str

    @classmethod
    def from_row(cls, row: JobRow) -> WaitingJob:
        return cls(
            row.id,
            row.owner_id,
            JobSpec.from_json(row.spec),
            row.priority,
            row.created_at,
            row.attempt,
            row.status_reason,
        )

    @property
    def order(self) -> tuple[int, datetime, str]:
        # The same order as the repository's `waiting()` query.
        return (-self.priority, self.created_at, self.id)


class WaitingQueue:
    def __init__(self) -> None:
        self._jobs: dict[str, WaitingJob] = {}
        self._order: list[tuple[tuple[int, datetime, str], str]] = []

    def add(self, job: WaitingJob) -> None:
        self.remove(job.id)
        self._jobs[job.id] = job
        bisect.insort(self._order, (job.order, job.id))

    def remove(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            index = bisect.bisect_left(self._order, (job.order, job.id))
            del self._order[index]

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[WaitingJob]:
        """A snapshot in serving order, so the queue may change while a pass walks it."""
        return iter([self._jobs[job_id] for _, job_id in self._order])
