"""The routing table: which deployment a caller's `model` goes to."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from suanli_common.errors import FailedPrecondition, NotFound, Unavailable
from suanli_inference_gateway.clients.deployments import Deployment, DeploymentSpec, DeploymentStatus
from suanli_inference_gateway.openai.inference.routing import RoutingTable

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def deployment(
    dep_id: str,
    owner: str,
    status: DeploymentStatus = DeploymentStatus.ready,
    *,
    model: str = "smollm2",
    public: bool = False,
    at: int = 0,
) -> Deployment:
    return Deployment(
        id=dep_id,
        owner_id=owner,
        spec=DeploymentSpec(model_id=model, model_path="/m", served_model=model, public=public),
        status=status,
        endpoint=f"http://serve/{dep_id}" if status == DeploymentStatus.ready else "",
        updated_at=T0 + timedelta(seconds=at),
    )


def test_the_callers_own_deployment_comes_before_a_public_one() -> None:
    table = RoutingTable()
    table.replace([deployment("dep_public", "system", public=True), deployment("dep_mine", "alice")])
    assert table.resolve("alice", "smollm2").id == "dep_mine"
    assert table.resolve("bob", "smollm2").id == "dep_public"


def test_another_users_private_deployment_is_not_found() -> None:
    table = RoutingTable()
    table.replace([deployment("dep_mine", "alice")])
    with pytest.raises(NotFound) as raised:
        table.resolve("bob", "smollm2")
    assert raised.value.param == "model"
    assert table.usable_by("bob") == []


def test_a_deployment_that_is_not_ready_is_a_conflict_with_its_status() -> None:
    table = RoutingTable()
    table.apply(deployment("dep_mine", "alice", DeploymentStatus.deploying))
    with pytest.raises(FailedPrecondition) as raised:
        table.resolve("alice", "smollm2")
    assert "deploying" in raised.value.message and raised.value.http_status == 409
    assert table.usable_by("alice") == []


def test_older_states_are_ignored_and_stopped_deployments_leave() -> None:
    table = RoutingTable()
    table.apply(deployment("dep_mine", "alice", DeploymentStatus.ready, at=10))
    table.apply(deployment("dep_mine", "alice", DeploymentStatus.deploying, at=5))  # overtaken
    assert table.resolve("alice", "smollm2").status == DeploymentStatus.ready
    # A full read that started before the newest event does not undo it.
    table.replace([deployment("dep_mine", "alice", DeploymentStatus.deploying, at=1)])
    assert table.resolve("alice", "smollm2").status == DeploymentStatus.ready
    table.apply(deployment("dep_mine", "alice", DeploymentStatus.stopped, at=20))
    with pytest.raises(NotFound):
        table.resolve("alice", "smollm2")


def test_models_usable_by_a_caller_are_one_per_name() -> None:
    table = RoutingTable()
    public = deployment("dep_public", "system", public=True)
    table.replace(
        [public, deployment("dep_mine", "alice"), replace(public, id="dep_other", owner_id="carol")]
    )
    assert [d.id for d in table.usable_by("alice")] == ["dep_mine"]
    assert [d.id for d in table.usable_by("bob")] == ["dep_public"]


async def test_a_request_waiting_on_a_deployment_that_stops_being_ready_ends_with_503() -> None:
    table = RoutingTable()
    table.replace([deployment("dep_lost", "alice"), deployment("dep_other", "alice", model="other")])
    replica_answered = asyncio.Event()  # never set: the request waits as it would in Serve's queue

    async def request(deployment_id: str) -> None:
        async with table.while_ready(deployment_id):
            await replica_answered.wait()

    lost, other = asyncio.create_task(request("dep_lost")), asyncio.create_task(request("dep_other"))
    await asyncio.sleep(0)
    lost_deployment = replace(
        deployment("dep_lost", "alice", DeploymentStatus.deploying, at=1), status_reason="replacing"
    )
    table.apply(lost_deployment)
    with pytest.raises(Unavailable) as raised:
        await asyncio.wait_for(lost, 5)
    assert "dep_lost" in raised.value.message and "replacing" in raised.value.message
    assert raised.value.retry_after
    assert not other.done()  # another deployment's requests go on
    replica_answered.set()
    await asyncio.wait_for(other, 5)

    async with table.while_ready("dep_other"):  # an answer that came in time is not touched
        table.apply(deployment("dep_other", "alice", model="other", at=2))


async def test_a_deployment_being_deleted_drains_its_requests_in_flight() -> None:
    table = RoutingTable()
    table.replace([deployment("dep_going", "alice")])
    async with table.while_ready("dep_going"):
        table.apply(deployment("dep_going", "alice", DeploymentStatus.stopping, at=1))
        await asyncio.sleep(0.01)  # a lost deployment's requests would end here
