"""The job.* and deployment.* facts the scheduler publishes, staged in the outbox with the change
they report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.outbox import Outbox
from suanli_common.proto.suanli.v1.events_pb2 import DeploymentChanged, JobStateChanged
from suanli_scheduler.domain import JobSpec
from suanli_scheduler.models import DeploymentRow, JobRow, PlacementRow
from suanli_scheduler.protocol import deployment_to_pb
from suanli_scheduler.repository import deployment_from_row

# job.queued, job.running, job.succeeded, job.failed, job.cancelled, job.timed_out, job.requeued
JOB_FACTS = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out", "requeued")


def output_path(volumes_root: str, row: JobRow) -> str:
    save = row.spec.get("model_save_path") or ""
    return str(PurePosixPath(volumes_root) / row.id / save) if save else ""


class JobEvents:
    def __init__(self, outbox: Outbox, volumes_root: str = "") -> None:
        self._outbox = outbox
        self._volumes_root = volumes_root

    def stage(
        self, session: AsyncSession, row: JobRow, fact: str, placements: Sequence[PlacementRow] = ()
    ) -> None:
        """`placements`: the attempt's, where the caller has them; their slots ride on the fact
        (metering counts GPU-seconds from job.running to the attempt's end)."""
        assert fact in JOB_FACTS, fact
        spec = JobSpec.from_json(row.spec)
        payload = JobStateChanged(
            job_id=row.id,
            owner_id=row.owner_id,
            name=row.spec.get("name", ""),
            job_type=row.spec.get("job_type", ""),
            status=row.status,
            status_reason=row.status_reason,
            attempt=row.attempt,
            node_ids=list(row.node_ids or []),
            output_path=output_path(self._volumes_root, row) if self._volumes_root else "",
            # A fine-tune's output is registered under a name fixed at submit (the catalog
            # registers it, the gateway has already shown it): both ride on every job fact.
            output_model_id=spec.output_model_id(row.id),
            base_model_id=spec.fine_tune.base_model if spec.fine_tune else "",
            gpu_type=placements[0].gpu_type if placements else "",
            gpus=sum(p.slots for p in placements),
        )
        self._outbox.add(session, f"job.{fact}", row.id, payload)


class DeploymentEvents:
    """deployment.<status> (pending, deploying, ready, failed, stopping, stopped) with the whole
    deployment as it is after the change; the gateway keeps its routing table from them."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def stage(self, session: AsyncSession, row: DeploymentRow) -> None:
        payload = DeploymentChanged(deployment=deployment_to_pb(deployment_from_row(row)))
        self._outbox.add(session, f"deployment.{row.status}", row.id, payload)
