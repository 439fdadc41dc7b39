"""The scheduler's Prometheus metrics, read from its own state when scraped: GPU slots per node from
the slot ledger, the work waiting for slots, jobs and deployments by status, and how long the
state lock was waited for and held (its saturation: see `state.MeasuredLock`).

Slots and the job queue are in memory and read as they are; the counts by status live in the
database, so `refresh` (run by the /metrics endpoint before each scrape) counts them with one
grouped query per table and `collect` serves what it found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from suanli_common.db import Database
from suanli_scheduler.domain import SUBMITTABLE, DeploymentStatus, JobStatus
from suanli_scheduler.repository import DeploymentRepository, JobRepository
from suanli_scheduler.service import JobService

DEPLOYMENT_KIND = "deployment"
# Every kind and state is always exported (0 when empty), so a dashboard's series do not come
# and go and an alert on "queued > N" sees 0 rather than nothing.
JOB_KINDS = tuple(sorted(kind.value for kind in SUBMITTABLE))
QUEUE_KINDS = (*JOB_KINDS, DEPLOYMENT_KIND)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "suanli_gpu_slots",
            "GPU slots of each live node by type: used (held by placements or busy on the node) or free",
            labels=["node", "gpu_type", "state"],
        ),
        GaugeMetricFamily(
            "suanli_jobs",
            "Jobs (by job type) and deployments (kind 'deployment') in each state",
            labels=["kind", "state"],
        ),
        GaugeMetricFamily(
            "suanli_queue_depth",
            "Work waiting for GPU slots: queued jobs not yet placed by job type, pending deployments",
            labels=["kind"],
        ),
    )


def _lock_families() -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
    return (
        CounterMetricFamily(
            "suanli_scheduler_state_lock_held_seconds",
            "Time the state lock (placements, agent reports, expiry) was held; its rate near 1 means "
            "the scheduler is saturated",
        ),
        CounterMetricFamily(
            "suanli_scheduler_state_lock_wait_seconds", "Time spent waiting for the state lock"
        ),
        CounterMetricFamily("suanli_scheduler_state_lock_acquisitions", "Times the state lock was taken"),
    )


class SchedulerCollector:
    """A prometheus_client collector over the scheduler's ledger, queue and tables."""

    def __init__(self, service: JobService, db: Database) -> None:
        self._service = service
        self._db = db
        self._by_status: dict[tuple[str, str], int] = {}  # (kind, state) -> count, last refresh

    async def refresh(self) -> None:
        async with self._db.session() as session:
            jobs = await JobRepository(session).count_by_type_and_status()
            deployments = await DeploymentRepository(session).count_by_status()
        counts = {(kind, state): 0 for kind in JOB_KINDS for state in JobStatus}
        counts.update({(DEPLOYMENT_KIND, state): 0 for state in DeploymentStatus})
        for key, n in jobs.items():
            counts[key] = counts.get(key, 0) + n
        for state, n in deployments.items():
            counts[(DEPLOYMENT_KIND, state)] = n
        self._by_status = counts

    def describe(self) -> Iterator[Metric]:
        yield from _families()
        yield from _lock_families()

    def collect(self) -> Iterator[Metric]:
        slots, jobs, queue = _families()
        for node, gpu_type, total, used, _memory_mb, alive in self._service.gpus():
            if alive:  # what /api/v1/gpus shows: a lost node's slots are nobody's to place on
                slots.add_metric([node, gpu_type, "used"], used)
                slots.add_metric([node, gpu_type, "free"], max(total - used, 0))
        for (kind, state), n in sorted(self._by_status.items()):
            jobs.add_metric([kind, state], n)
        waiting = Counter(job.spec.job_type.value for job in self._service.waiting)
        waiting[DEPLOYMENT_KIND] = self._by_status.get((DEPLOYMENT_KIND, DeploymentStatus.pending.value), 0)
        for kind in sorted({*QUEUE_KINDS, *waiting}):
            queue.add_metric([kind], waiting[kind])
        yield from (slots, jobs, queue)
        lock = self._service.state_lock
        held, waited, taken = _lock_families()
        held.add_metric([], lock.held_s)
        waited.add_metric([], lock.waited_s)
        taken.add_metric([], lock.acquisitions)
        yield from (held, waited, taken)
