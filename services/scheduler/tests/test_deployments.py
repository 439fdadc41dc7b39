"""Deployments against the real scheduler (SQLite, NATS, gRPC): slots held on the ledger, pending
until they fit, visibility per caller, the serving controller's reports, a restart, the events.

Nodes are driven by hand (heartbeats straight to the service), and the test plays the serving
controller through ReportDeployment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats import errors as nats_errors

from suanli_common.errors import InvalidRequest, NotFound
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import events_pb2
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.scheduler_pb2_grpc import SchedulerServiceStub
from suanli_common.testing import NatsServer, free_port
from suanli_scheduler.domain import DeploymentSpec, validate_deployment_spec
from suanli_scheduler.ledger import NodeInventory, SlotPool
from suanli_scheduler.main import SchedulerApp, start_scheduler
from suanli_scheduler.service import Heartbeat
from suanli_scheduler.settings import SchedulerSettings

from .conftest import FAST
from .test_jobs import submit

Stub = SchedulerServiceStub
Pools = dict[str, tuple[tuple[str, int], ...]]


class Nodes:
    """Nodes that beat every 0.1 s with the pools the test gives them."""

    def __init__(self, app: SchedulerApp, pools: Pools) -> None:
        self.app = app
        self.pools = pools

    async def beat(self) -> None:
        for node, pools in self.pools.items():
            inventory = NodeInventory(node, "127.0.0.1", tuple(SlotPool(t, n) for t, n in pools))
            await self.app.service.on_heartbeat(Heartbeat(inventory))

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def beating(app: SchedulerApp, pools: Pools) -> AsyncIterator[Nodes]:
    nodes = Nodes(app, pools)
    await nodes.beat()
    task = asyncio.create_task(nodes.run())
    try:
        yield nodes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def spec(**changes: object) -> pb.DeploymentSpec:
    fields: dict[str, object] = {
        "model_id": "smollm2-135m-instruct",
        "model_path": "file:///models/smollm2",
        "served_model": "smollm2-135m-instruct",
    }
    fields.update(changes)
    return pb.DeploymentSpec(**fields)  # type: ignore[arg-type]


async def create(stub: Stub, owner: str = "user_1", request_id: str = "", **changes: object) -> pb.Deployment:
    request = pb.CreateDeploymentRequest(owner_id=owner, client_request_id=request_id, spec=spec(**changes))
    deployment: pb.Deployment = await stub.CreateDeployment(request)
    return deployment


async def get(stub: Stub, deployment_id: str, caller: str = "") -> pb.Deployment:
    found: pb.Deployment = await stub.GetDeployment(
        pb.GetDeploymentRequest(caller_id=caller, deployment_id=deployment_id)
    )
    return found


async def delete(stub: Stub, deployment_id: str, caller: str = "user_1") -> pb.Deployment:
    deleted: pb.Deployment = await stub.DeleteDeployment(
        pb.DeleteDeploymentRequest(caller_id=caller, deployment_id=deployment_id)
    )
    return deleted


async def report(stub: Stub, deployment_id: str, status: int, **fields: object) -> pb.Deployment:
    request = pb.ReportDeploymentRequest(deployment_id=deployment_id, status=status, **fields)  # type: ignore[arg-type]
    reported: pb.Deployment = await stub.ReportDeployment(request)
    return reported


async def listed(stub: Stub, caller: str = "", include_public: bool = False) -> list[str]:
    response = await stub.ListDeployments(
        pb.ListDeploymentsRequest(caller_id=caller, include_public=include_public)
    )
    return [d.id for d in response.deployments]


async def used_slots(stub: Stub) -> dict[tuple[str, str], int]:
    return {(g.node_id, g.gpu_type): g.used for g in (await stub.ListGpus(pb.ListGpusRequest())).gpus}


async def wait_deployment(
    stub: Stub, deployment_id: str, ok: Callable[[pb.Deployment], bool], timeout: float = 15
) -> pb.Deployment:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await get(stub, deployment_id)
        if ok(found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met: {found}")
        await asyncio.sleep(0.1)


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model_id": " "}, "model_id"),
        ({"model_path": ""}, "model_path"),
        ({"served_model": ""}, "served_model"),
        ({"gpu_count": -1}, "gpu_count"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"min_replicas": 17}, "min_replicas"),
        ({"max_replicas": 17}, "max_replicas"),
        ({"max_replicas": -1}, "max_replicas"),
        ({"max_model_len": -5}, "max_model_len"),
    ],
)
def test_validation_refuses_bad_specs(changes: dict[str, object], param: str) -> None:
    values: dict[str, object] = {"model_id": "m", "model_path": "/m", "served_model": "m"}
    values.update(changes)
    with pytest.raises(InvalidRequest) as exc:
        validate_deployment_spec(DeploymentSpec(**values))  # type: ignore[arg-type]
    assert exc.value.param == param


def test_validation_fills_in_defaults() -> None:
    unset = DeploymentSpec(" m ", "/m", "m", gpu_count=0, min_replicas=0, max_replicas=0, gpu_type=" A100 ")
    filled = validate_deployment_spec(unset)
    assert (filled.model_id, filled.gpu_type) == ("m", "A100")
    assert (filled.gpu_count, filled.min_replicas, filled.max_replicas) == (1, 1, 1)
    assert validate_deployment_spec(DeploymentSpec("m", "/m", "m", min_replicas=3)).max_replicas == 3
    raised = validate_deployment_spec(DeploymentSpec("m", "/m", "m", min_replicas=3, max_replicas=2))
    assert (raised.min_replicas, raised.max_replicas) == (3, 3)
    assert validate_deployment_spec(DeploymentSpec("m", "/m", "m", max_replicas=16)).max_replicas == 16


async def test_create_refuses_bad_input_over_grpc(scheduler: SchedulerApp, stub: Stub) -> None:
    await scheduler.service.set_quota("capped", "*", 2)
    async with beating(scheduler, {"n0": (("A100", 2),)}):
        cases: list[tuple[dict[str, object], str]] = [
            ({"model_id": ""}, "model_id"),
            ({"gpu_type": "H100"}, "gpu_type"),  # no node ever had one
            ({"gpu_count": 3}, "gpu_count"),  # more than any node has
            ({"max_replicas": 20}, "max_replicas"),
            ({"owner": ""}, "owner_id"),
            ({"owner": "capped", "max_replicas": 3}, "max_replicas"),  # 3 slots, quota 2
        ]
        for changes, param in cases:
            owner = str(changes.pop("owner", "user_1"))
            with pytest.raises(InvalidRequest) as exc:
                await create(stub, owner, **changes)
            assert exc.value.param == param, changes
        assert await listed(stub) == []  # nothing was stored
        # An empty spec is refused too, not stored with defaults.
        with pytest.raises(InvalidRequest):
            await stub.CreateDeployment(pb.CreateDeploymentRequest(owner_id="user_1"))


# ---- slots, pending and placement -----------------------------------------------------------------


async def test_a_deployment_holds_slots_and_the_next_waits_until_they_are_freed(
    scheduler: SchedulerApp, stub: Stub
) -> None:
    async with beating(scheduler, {"n0": (("A100", 2),)}):
        first = await create(stub, gpu_count=1, max_replicas=2)
        assert first.status == pb.DEPLOYMENT_STATUS_DEPLOYING and first.id.startswith("dep_")
        assert (first.gpu_type, list(first.node_ids)) == ("A100", ["n0", "n0"])  # replicas share n0
        assert first.spec.min_replicas == 1 and first.spec.max_replicas == 2
        assert await used_slots(stub) == {("n0", "A100"): 2}

        second = await create(stub, gpu_count=1)
        assert second.status == pb.DEPLOYMENT_STATUS_PENDING and not second.node_ids
        assert "waiting for capacity" in second.status_reason
        await asyncio.sleep(1.0)  # passes run; nothing frees
        assert (await get(stub, second.id)).status == pb.DEPLOYMENT_STATUS_PENDING

        # Deleting a live deployment only asks the controller to drain it: the slots stay held.
        stopping = await delete(stub, first.id)
        assert stopping.status == pb.DEPLOYMENT_STATUS_STOPPING
        await asyncio.sleep(0.6)
        assert await used_slots(stub) == {("n0", "A100"): 2}
        assert (await get(stub, second.id)).status == pb.DEPLOYMENT_STATUS_PENDING
        assert (await delete(stub, first.id)).status == pb.DEPLOYMENT_STATUS_STOPPING  # unchanged

        stopped = await report(stub, first.id, pb.DEPLOYMENT_STATUS_STOPPED)
        assert stopped.status == pb.DEPLOYMENT_STATUS_STOPPED
        placed = await wait_deployment(stub, second.id, lambda d: d.status == pb.DEPLOYMENT_STATUS_DEPLOYING)
        assert list(placed.node_ids) == ["n0"]
        assert await used_slots(stub) == {("n0", "A100"): 1}


async def test_replicas_are_all_or_nothing_of_one_gpu_type(scheduler: SchedulerApp, stub: Stub) -> None:
    # 3 replicas of 2 slots: A100 has room for 2 of them (n0, n1), L4 for 3 (n2 holds 4, n3 2).
    pools: Pools = {"n0": (("A100", 2),), "n1": (("A100", 3),), "n2": (("L4", 4),), "n3": (("L4", 2),)}
    async with beating(scheduler, pools):
        wide = await create(stub, gpu_count=2, max_replicas=3)
        assert wide.status == pb.DEPLOYMENT_STATUS_DEPLOYING and wide.gpu_type == "L4"
        assert sorted(wide.node_ids) == ["n2", "n2", "n3"]
        # A100 alone cannot hold 3 replicas of 2: it waits, holding nothing meanwhile.
        waiting = await create(stub, gpu_type="A100", gpu_count=2, max_replicas=3)
        assert waiting.status == pb.DEPLOYMENT_STATUS_PENDING and "2 fit now" in waiting.status_reason
        used = await used_slots(stub)
        assert (used[("n0", "A100")], used[("n1", "A100")]) == (0, 0)
        assert (used[("n2", "L4")], used[("n3", "L4")]) == (4, 2)


async def test_deleting_a_pending_or_failed_deployment_stops_it_at_once(
    scheduler: SchedulerApp, stub: Stub
) -> None:
    pending = await create(stub)  # no node has beaten yet: it waits for one
    assert pending.status == pb.DEPLOYMENT_STATUS_PENDING and "live node" in pending.status_reason
    stopped = await delete(stub, pending.id)
    assert stopped.status == pb.DEPLOYMENT_STATUS_STOPPED
    with pytest.raises(NotFound):
        await get(stub, pending.id, caller="user_1")  # gone for its owner
    with pytest.raises(NotFound):
        await delete(stub, pending.id)
    assert (await get(stub, pending.id)).status == pb.DEPLOYMENT_STATUS_STOPPED  # a service still sees it
    assert await listed(stub) == [] and await listed(stub, "user_1") == []

    async with beating(scheduler, {"n0": (("A100", 1),)}):
        # A node came: a stopped deployment is never placed, so the slot stays free.
        await asyncio.sleep(0.6)
        assert await used_slots(stub) == {("n0", "A100"): 0}
        live = await create(stub)
        failed = await report(stub, live.id, pb.DEPLOYMENT_STATUS_FAILED, reason="CUDA out of memory")
        assert failed.status == pb.DEPLOYMENT_STATUS_FAILED and failed.status_reason == "CUDA out of memory"
        assert await listed(stub, "user_1") == [live.id]  # failed ones are still listed
        assert (await delete(stub, live.id)).status == pb.DEPLOYMENT_STATUS_STOPPED


async def test_create_is_idempotent_on_the_client_request_id(scheduler: SchedulerApp, stub: Stub) -> None:
    async with beating(scheduler, {"n0": (("A100", 4),)}):
        first = await create(stub, request_id="r1")
        again = await create(stub, request_id="r1")
        assert again.id == first.id and again.status == pb.DEPLOYMENT_STATUS_DEPLOYING
        other_owner = await create(stub, owner="user_2", request_id="r1")
        no_request_id = await create(stub)
        assert len({first.id, other_owner.id, no_request_id.id}) == 3
        assert await used_slots(stub) == {("n0", "A100"): 3}  # the repeat claimed nothing
        # A stopped deployment keeps its request id: the same create is not repeated.
        await delete(stub, first.id)
        await report(stub, first.id, pb.DEPLOYMENT_STATUS_STOPPED)
        repeated = await create(stub, request_id="r1")
        assert (repeated.id, repeated.status) == (first.id, pb.DEPLOYMENT_STATUS_STOPPED)


async def test_users_see_their_own_and_public_deployments(scheduler: SchedulerApp, stub: Stub) -> None:
    async with beating(scheduler, {"n0": (("A100", 4),)}):
        private = await create(stub, owner="user_1")
        public = await create(stub, owner="user_1", public=True)
        theirs = await create(stub, owner="user_2")

        with pytest.raises(NotFound):
            await get(stub, private.id, caller="user_2")
        with pytest.raises(NotFound):
            await delete(stub, private.id, caller="user_2")
        with pytest.raises(NotFound):
            await delete(stub, public.id, caller="user_2")  # public to use, not to delete
        assert (await get(stub, private.id)).status == pb.DEPLOYMENT_STATUS_DEPLOYING  # not deleted
        assert (await get(stub, public.id, caller="user_2")).spec.public

        assert await listed(stub, "user_2") == [theirs.id]
        assert await listed(stub, "user_2", include_public=True) == [theirs.id, public.id]  # newest first
        assert await listed(stub, "user_1") == [public.id, private.id]
        assert await listed(stub) == [theirs.id, public.id, private.id]  # a service sees every one

        # The owner stops the public one: once stopped, nobody lists it.
        await delete(stub, public.id, caller="user_1")
        await report(stub, public.id, pb.DEPLOYMENT_STATUS_STOPPED)
        assert await listed(stub, "user_2", include_public=True) == [theirs.id]
        with pytest.raises(NotFound):
            await get(stub, public.id, caller="user_2")


# ---- the serving controller's reports -----------------------------------------------------------


async def test_reports_move_a_deployment_and_free_its_slots(scheduler: SchedulerApp, stub: Stub) -> None:
    async with beating(scheduler, {"n0": (("A100", 2),)}):
        dep = await create(stub, gpu_count=2)
        assert await used_slots(stub) == {("n0", "A100"): 2}
        progress = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_DEPLOYING, endpoint="http://ray:8000/d")
        assert progress.status == pb.DEPLOYMENT_STATUS_DEPLOYING and progress.endpoint == "http://ray:8000/d"
        ready = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, ready_replicas=1)
        assert ready.status == pb.DEPLOYMENT_STATUS_READY
        assert (ready.endpoint, ready.ready_replicas) == ("http://ray:8000/d", 1)
        again = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, ready_replicas=1)
        assert again.status == pb.DEPLOYMENT_STATUS_READY  # said twice: nothing changes
        # Its last replica lost is a DEPLOYING report: it is not ready until Serve has started another.
        lost = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_DEPLOYING, reason="replacing")
        assert (lost.status, lost.status_reason, lost.ready_replicas) == (
            pb.DEPLOYMENT_STATUS_DEPLOYING,
            "replacing",
            0,
        )
        assert lost.endpoint == "http://ray:8000/d"
        back = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, ready_replicas=1)
        assert (back.status, back.ready_replicas) == (pb.DEPLOYMENT_STATUS_READY, 1)

        assert (await delete(stub, dep.id)).status == pb.DEPLOYMENT_STATUS_STOPPING
        late = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, ready_replicas=1)
        assert late.status == pb.DEPLOYMENT_STATUS_STOPPING  # stopping wins
        assert await used_slots(stub) == {("n0", "A100"): 2}
        stopped = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_STOPPED)
        assert stopped.status == pb.DEPLOYMENT_STATUS_STOPPED
        assert await used_slots(stub) == {("n0", "A100"): 0}
        after = await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY)
        assert after.status == pb.DEPLOYMENT_STATUS_STOPPED  # a stopped one no longer changes

        broken = await create(stub, gpu_count=2)
        assert broken.status == pb.DEPLOYMENT_STATUS_DEPLOYING
        failed = await report(stub, broken.id, pb.DEPLOYMENT_STATUS_FAILED, reason="engine died")
        assert (failed.status, failed.status_reason) == (pb.DEPLOYMENT_STATUS_FAILED, "engine died")
        assert await used_slots(stub) == {("n0", "A100"): 0}
        assert (
            await report(stub, broken.id, pb.DEPLOYMENT_STATUS_READY)
        ).status == pb.DEPLOYMENT_STATUS_FAILED

        with pytest.raises(NotFound):
            await report(stub, "dep_unknown", pb.DEPLOYMENT_STATUS_READY)
        with pytest.raises(InvalidRequest) as exc:
            await report(stub, broken.id, pb.DEPLOYMENT_STATUS_PENDING)
        assert exc.value.param == "status"


async def test_deployment_claims_count_against_the_owners_quota(scheduler: SchedulerApp, stub: Stub) -> None:
    await scheduler.service.set_quota("capped", "*", 2)
    async with beating(scheduler, {"n0": (("A100", 4),)}):
        dep = await create(stub, owner="capped", gpu_count=2)
        assert dep.status == pb.DEPLOYMENT_STATUS_DEPLOYING
        over = await create(stub, owner="capped")
        assert over.status == pb.DEPLOYMENT_STATUS_PENDING and "quota" in over.status_reason
        job = await submit(stub, "true", owner="capped")
        waiting = await wait_for_job(stub, job.id, lambda j: "quota" in j.status_reason)
        assert waiting.status == pb.JOB_STATUS_QUEUED and not waiting.node_ids

        await delete(stub, dep.id, caller="capped")
        await report(stub, dep.id, pb.DEPLOYMENT_STATUS_STOPPED)
        # The quota is free again: the deployment waiting longer goes first, then the job.
        await wait_deployment(stub, over.id, lambda d: d.status == pb.DEPLOYMENT_STATUS_DEPLOYING)
        await wait_for_job(stub, job.id, lambda j: bool(j.node_ids))


async def wait_for_job(stub: Stub, job_id: str, ok: Callable[[pb.Job], bool], timeout: float = 15) -> pb.Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job: pb.Job = await stub.GetJob(pb.GetJobRequest(job_id=job_id))
        if ok(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met: {job}")
        await asyncio.sleep(0.1)


# ---- restart ------------------------------------------------------------------------------------


@pytest.fixture
async def restartable(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[SchedulerApp]]]:
    """Starts a scheduler on the same database each call, stopping the one before."""
    running: list[SchedulerApp] = []

    async def start() -> SchedulerApp:
        if running:
            await running.pop().stop()
        settings = SchedulerSettings(
            home=tmp_path, nats_url=nats_server.url, scheduler_grpc_port=free_port(), **FAST
        )
        running.append(await start_scheduler(settings))
        return running[0]

    yield start
    if running:
        await running.pop().stop()


@contextlib.asynccontextmanager
async def stub_of(app: SchedulerApp) -> AsyncIterator[Stub]:
    channel = make_channel(f"127.0.0.1:{app.port}", timeout=10)
    try:
        yield SchedulerServiceStub(channel)
    finally:
        await channel.close()


async def test_a_restart_restores_the_slots_deployments_hold(
    restartable: Callable[[], Awaitable[SchedulerApp]],
) -> None:
    app = await restartable()
    async with stub_of(app) as stub, beating(app, {"n0": (("A100", 3),)}):
        ready = await create(stub, gpu_count=1, max_replicas=2)
        await report(stub, ready.id, pb.DEPLOYMENT_STATUS_READY, ready_replicas=2)
        stopping = await create(stub, gpu_count=1)
        await delete(stub, stopping.id)
        waiting = await create(stub, gpu_count=1)
        assert waiting.status == pb.DEPLOYMENT_STATUS_PENDING
        assert await used_slots(stub) == {("n0", "A100"): 3}

    app = await restartable()
    # Before the node beats again, the ledger already holds its slots (ready + stopping).
    assert [(node, used) for node, _, _, used, _, _ in app.service.gpus()] == [("n0", 3)]
    async with stub_of(app) as stub, beating(app, {"n0": (("A100", 3),)}):
        assert await used_slots(stub) == {("n0", "A100"): 3}
        await app.service.schedule()
        assert (await get(stub, waiting.id)).status == pb.DEPLOYMENT_STATUS_PENDING  # still no room
        # The restored claim is the one the controller's report frees; the waiting one is placed.
        await report(stub, stopping.id, pb.DEPLOYMENT_STATUS_STOPPED)
        await wait_deployment(stub, waiting.id, lambda d: d.status == pb.DEPLOYMENT_STATUS_DEPLOYING)
        assert await used_slots(stub) == {("n0", "A100"): 3}
        assert (await get(stub, ready.id)).status == pb.DEPLOYMENT_STATUS_READY


# ---- events -------------------------------------------------------------------------------------


async def test_every_change_publishes_a_deployment_fact(scheduler: SchedulerApp, stub: Stub) -> None:
    async with beating(scheduler, {"n0": (("A100", 1),)}):
        dep = await create(stub, public=True)
        await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, endpoint="http://ray:8000/a", ready_replicas=1)
        await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, endpoint="http://ray:8000/b", ready_replicas=1)
        await report(stub, dep.id, pb.DEPLOYMENT_STATUS_READY, endpoint="http://ray:8000/b", ready_replicas=1)
        await delete(stub, dep.id)
        await report(stub, dep.id, pb.DEPLOYMENT_STATUS_STOPPED)
        events = await read_deployment_events(scheduler, "stopped")
    assert [(subject, e.deployment.id) for subject, e in events] == [
        ("deployment.pending", dep.id),
        ("deployment.deploying", dep.id),
        ("deployment.ready", dep.id),
        ("deployment.ready", dep.id),  # the endpoint changed; the repeated report changed nothing
        ("deployment.stopping", dep.id),
        ("deployment.stopped", dep.id),
    ]
    payloads = [e.deployment for _, e in events]
    assert [d.status for d in payloads] == [
        pb.DEPLOYMENT_STATUS_PENDING,
        pb.DEPLOYMENT_STATUS_DEPLOYING,
        pb.DEPLOYMENT_STATUS_READY,
        pb.DEPLOYMENT_STATUS_READY,
        pb.DEPLOYMENT_STATUS_STOPPING,
        pb.DEPLOYMENT_STATUS_STOPPED,
    ]
    assert list(payloads[1].node_ids) == ["n0"] and payloads[1].gpu_type == "A100"
    assert [d.endpoint for d in payloads[2:4]] == ["http://ray:8000/a", "http://ray:8000/b"]
    assert all(d.spec.served_model == "smollm2-135m-instruct" and d.spec.public for d in payloads)


async def read_deployment_events(
    app: SchedulerApp, last: str
) -> list[tuple[str, events_pb2.DeploymentChanged]]:
    """The deployment facts published so far, in order, once one of type `last` is among them
    (the outbox relays after the commit)."""
    js = app.broker.config.connection_state.stream
    found: list[tuple[str, events_pb2.DeploymentChanged]] = []
    for _ in range(50):
        sub = await js.subscribe("events.deployment.>", ordered_consumer=True)
        found = []
        with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
            while True:
                msg = await sub.next_msg(timeout=0.3)
                payload = events_pb2.DeploymentChanged()
                envelope = events_pb2.EventEnvelope.FromString(msg.data)
                assert envelope.data.Unpack(payload) and envelope.subject == payload.deployment.id
                found.append((msg.subject.removeprefix("events."), payload))
        await sub.unsubscribe()
        if any(subject == f"deployment.{last}" for subject, _ in found):
            break
        await asyncio.sleep(0.1)
    return found
