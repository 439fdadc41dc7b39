"""Instances: a user's JupyterLab, LLaMA-Factory or TensorBoard server, run as a job of type
`instance` that the placement pass places like any job (reserving its CPU, memory and GPU slots)
and the node's trainer agent runs. A stop ends that job and keeps the instance's storage; a start
submits a new one; a delete ends it and removes the storage.

An instance row holds the spec and what its owner wants (running, stopped, deleted) and names its
current run; its status is derived from that run when read, so the job's state machine (leases,
requeues after a lost node, the agent's reports) is the one source of truth about the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import context as otel_context
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.errors import Conflict, FailedPrecondition, InvalidRequest, NotFound
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_scheduler.domain import TERMINAL, InstanceMount, JobStatus
from suanli_scheduler.instance_specs import (
    Desired,
    Instance,
    InstanceSpec,
    InstanceStatus,
    base_url,
    derive_status,
    run_spec,
    storage_path,
    validate_instance_spec,
    workspace_path,
)
from suanli_scheduler.intake import Intake, Submission
from suanli_scheduler.models import InstanceRow, JobRow
from suanli_scheduler.repository import InstanceRepository, JobRepository, job_from_row
from suanli_scheduler.state import AfterCommit, SchedulerState, now_utc
from suanli_scheduler.transitions import finish
from suanli_scheduler.waiting import WaitingJob

log = get_logger(__name__)


class InstanceService:
    def __init__(self, state: SchedulerState, volumes_dir: Path) -> None:
        self._state = state
        self._intake = Intake(state)
        self._volumes = str(volumes_dir)

    # ---- the API -----------------------------------------------------------------------------

    async def create(self, owner_id: str, spec: InstanceSpec) -> Instance:
        """Stores the instance and submits its first run; refuses what could never run."""
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        spec = validate_instance_spec(spec)
        state = self._state
        instance_id = new_id("inst")
        try:
            async with state.db.session() as session:
                repo = InstanceRepository(session)
                if await repo.by_name(owner_id, spec.name) is not None:
                    raise _name_taken(spec.name)
                spec = dataclasses.replace(spec, mounts=await self._resolve(session, owner_id, spec.mounts))
                now = now_utc()
                row = InstanceRow(
                    id=instance_id,
                    owner_id=owner_id,
                    name=spec.name,
                    active_name=spec.name,
                    spec=spec.to_json(),
                    token=secrets.token_urlsafe(32),
                    desired=Desired.running.value,
                    job_id="",
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                run = await self._submit(session, row)
        except IntegrityError:  # the same name, stored by a concurrent create
            raise _name_taken(spec.name) from None
        self._queued(run)
        return self._view(row, run)

    async def get(self, caller_id: str, instance_id: str) -> Instance:
        """A service (caller "") finds any instance that is not deleted; a user only their own."""
        async with self._state.db.session() as session:
            row = await self._visible(session, caller_id, instance_id)
            run = (await InstanceRepository(session).runs([row.job_id])).get(row.job_id)
            return self._view(row, run, await self._server_up(session, run))

    async def list_instances(self, caller_id: str) -> list[Instance]:
        async with self._state.db.session() as session:
            repo = InstanceRepository(session)
            rows = await repo.list(caller_id or None)
            runs = await repo.runs([row.job_id for row in rows])
            views = []
            for row in rows:
                run = runs.get(row.job_id)
                views.append(self._view(row, run, await self._server_up(session, run)))
            return views

    async def stop(self, caller_id: str, instance_id: str) -> Instance:
        """Ends the current run (its storage stays); stopping a stopped instance changes nothing."""
        state = self._state
        out = AfterCommit()
        async with state.lock:
            async with state.db.session() as session:
                row = await self._visible(session, caller_id, instance_id, for_update=True)
                run = await self._current_run(session, row)
                if row.desired == Desired.running.value:
                    row.desired, row.updated_at = Desired.stopped.value, now_utc()
                    if run is not None and JobStatus(run.status) not in TERMINAL:
                        await finish(state, session, run, JobStatus.cancelled, "stopped by its owner", out)
                instance = self._view(row, run, await self._server_up(session, run))
            state.committed(out)
        await state.send(out)
        state.wake.set()
        return instance

    async def start(self, caller_id: str, instance_id: str) -> Instance:
        """Submits a new run over the same storage; starting a running instance changes nothing."""
        state = self._state
        async with state.lock, state.db.session() as session:
            row = await self._visible(session, caller_id, instance_id, for_update=True)
            run = await self._current_run(session, row)
            live = run is not None and JobStatus(run.status) not in TERMINAL
            if live and row.desired == Desired.running.value:
                return self._view(row, run)
            if live or await self._server_up(session, run):
                raise FailedPrecondition(
                    f"instance {instance_id} is still stopping: start it once it has stopped",
                    param="instance_id",
                    code="instance_stopping",
                )
            row.desired, row.updated_at = Desired.running.value, now_utc()
            run = await self._submit(session, row)
        self._queued(run)
        return self._view(row, run)

    async def delete(self, caller_id: str, instance_id: str) -> Instance:
        """Ends the current run and removes the storage: the run's agent does it once the server is
        gone (the stop says so); with no run going, the scheduler does it here."""
        state = self._state
        out = AfterCommit()
        async with state.lock:
            async with state.db.session() as session:
                row = await self._visible(session, caller_id, instance_id, for_update=True)
                run = await self._current_run(session, row)
                row.desired, row.active_name, row.updated_at = Desired.deleted.value, None, now_utc()
                if run is not None and JobStatus(run.status) not in TERMINAL:
                    await finish(state, session, run, JobStatus.cancelled, "deleted by its owner", out)
                out.stops = [
                    (
                        node_id,
                        dataclasses.replace(stop, delete_storage=True) if stop.job_id == row.job_id else stop,
                    )
                    for node_id, stop in out.stops
                ]
                instance = self._view(row, run)
            state.committed(out)
        agent_removes = any(stop.delete_storage for _, stop in out.stops)
        await state.send(out)
        if not agent_removes:
            await asyncio.to_thread(remove_storage, Path(instance.storage_path))
        state.wake.set()
        return instance

    # ---- within a unit of work ---------------------------------------------------------------

    async def _visible(
        self, session: AsyncSession, caller_id: str, instance_id: str, *, for_update: bool = False
    ) -> InstanceRow:
        """The instance, if the caller may see it; NotFound otherwise (another user's instance is
        not told apart from one that does not exist)."""
        row = await InstanceRepository(session).get(instance_id, for_update=for_update)
        if row is None or row.desired == Desired.deleted.value or (caller_id and row.owner_id != caller_id):
            raise NotFound(f"no instance {instance_id}", param="instance_id")
        return row

    async def _current_run(self, session: AsyncSession, row: InstanceRow) -> JobRow | None:
        return await JobRepository(session).get(row.job_id, for_update=True) if row.job_id else None

    async def _server_up(self, session: AsyncSession, run: JobRow | None) -> bool:
        """Whether the server of a run that has ended may still be going: a stop ends the job at
        once, and its agent says a moment later that the process is gone (a node that was lost
        takes its process with it)."""
        if run is None or not run.lease_id or JobStatus(run.status) not in TERMINAL:
            return False
        placements = await JobRepository(session).placements(run.id, run.attempt)
        ledger = self._state.ledger
        return any(not JobStatus(p.phase).terminal and ledger.is_alive(p.node_id) for p in placements)

    async def _resolve(
        self, session: AsyncSession, owner_id: str, mounts: Sequence[InstanceMount]
    ) -> tuple[InstanceMount, ...]:
        """Fills in where a job's or an instance's event files lie, once it is known to be the
        owner's; models, datasets and adapters came resolved (and checked) from the gateway."""
        resolved = []
        for mount in mounts:
            if mount.kind == "job":
                job = await JobRepository(session).get(mount.id)
                if job is None or job.owner_id != owner_id:
                    raise InvalidRequest(
                        f"the job {mount.id!r} does not exist or is not yours", param="mounts.jobs"
                    )
                mount = dataclasses.replace(mount, source=f"{self._volumes}/{job.id}")
            elif mount.kind == "instance":
                other = await InstanceRepository(session).get(mount.id)
                if other is None or other.owner_id != owner_id or other.desired == Desired.deleted.value:
                    raise InvalidRequest(
                        f"the instance {mount.id!r} does not exist or is not yours", param="mounts.instances"
                    )
                mount = dataclasses.replace(mount, source=workspace_path(self._volumes, other.id))
            resolved.append(mount)
        return tuple(resolved)

    async def _submit(self, session: AsyncSession, row: InstanceRow) -> JobRow:
        """Adds the instance's next run to the session, checked against the cluster and quotas."""
        spec = run_spec(row.id, InstanceSpec.from_json(row.spec), row.token)
        submission = Submission(row.owner_id, "", spec, otel_context.get_current())
        try:
            quotas = await self._state.quotas(session)
            run = self._intake.new_job(session, submission, self._state.ledger.inventories(), quotas)
        except InvalidRequest as exc:
            # The job's words for what the instance calls gpus.
            raise InvalidRequest(
                exc.message.replace("gpus_per_node", "gpus"),
                param="gpus" if exc.param == "gpus_per_node" else exc.param,
                code=exc.code,
            ) from None
        row.job_id = run.id
        return run

    def _queued(self, run: JobRow) -> None:
        """After the commit: the run joins the waiting queue and a placement pass is due."""
        self._state.waiting.add(WaitingJob.from_row(run))
        self._state.wake.set()

    def _view(self, row: InstanceRow, run: JobRow | None, server_up: bool = False) -> Instance:
        job = job_from_row(run) if run is not None else None
        status, reason = derive_status(Desired(row.desired), job, server_up)
        live = job is not None and not job.status.terminal
        return Instance(
            id=row.id,
            owner_id=row.owner_id,
            spec=InstanceSpec.from_json(row.spec),
            status=status,
            status_reason=reason,
            job_id=row.job_id,
            node_id=job.node_ids[0] if job is not None and job.node_ids else "",
            endpoint=job.endpoint if job is not None and status is InstanceStatus.running else "",
            token=row.token,
            base_url=base_url(row.id),
            storage_path=storage_path(self._volumes, row.id),
            created_at=row.created_at,
            started_at=job.started_at if live and job is not None else None,
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(f"you already have an instance named {name!r}", param="name", code="instance_exists")


def remove_storage(path: Path) -> None:
    """Removes an instance's storage, read-only copies included (their folders are made writable
    first: removing an entry needs write permission on its folder)."""
    if not path.exists():
        return
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            folder = os.path.join(root, name)
            if not os.path.islink(folder):
                os.chmod(folder, 0o755)
    os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)
    log.info("instance storage removed", path=str(path))
