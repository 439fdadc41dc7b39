"""The usage ledger fed by real facts on NATS (usage.recorded, job.*, deployment.*), read back
through the gRPC API: usage reports, quota status, balances."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from suanli_auth.domain import DeploymentFact, GpuHold, IntervalKind, JobFact, TokenUsage
from suanli_auth.main import RunningAuth
from suanli_common.proto.suanli.v1 import auth_pb2, events_pb2, scheduler_pb2

if TYPE_CHECKING:
    from conftest import FactPublisher, FakeClock, People
    from suanli_common.proto.suanli.v1.auth_pb2_grpc import AuthServiceAsyncStub as Stub

T = TypeVar("T")
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
A100 = "A100-80G"


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 15) -> T:
    """Reads until `done` holds: the ledger is fed asynchronously, from NATS."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await read()
        if done(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


def usage_request(
    actor: str, user: str, start: datetime, end: datetime, group_by: str
) -> auth_pb2.GetUsageRequest:
    request = auth_pb2.GetUsageRequest(actor_user_id=actor, user_id=user, group_by=group_by)
    request.start.FromDatetime(start)
    request.end.FromDatetime(end)
    return request


def lines(response: auth_pb2.GetUsageResponse) -> list[tuple[str, float, int, int, int, int]]:
    return [
        (ln.group, ln.gpu_seconds, ln.requests, ln.input_tokens, ln.output_tokens, ln.cost_micros)
        for ln in response.lines
    ]


async def set_prices(stub: Stub, admin: str, *prices: tuple[str, str, int]) -> None:
    await stub.SetPrices(
        auth_pb2.SetPricesRequest(
            actor_user_id=admin,
            prices=[auth_pb2.Price(kind=k, name=n, price_micros=p) for k, n, p in prices],
        )
    )


def used(user: str, model: str, key: str, prompt: int, completion: int) -> events_pb2.UsageRecorded:
    return events_pb2.UsageRecorded(
        request_id=f"req-{prompt}-{completion}",
        user_id=user,
        api_key_id=key,
        deployment_id="dep_x",
        model=model,
        endpoint="chat.completions",
        prompt_tokens=prompt,
        completion_tokens=completion,
        status_code=200,
    )


def job(user: str, attempt: int, gpus: int = 2, gpu_type: str = A100) -> events_pb2.JobStateChanged:
    return events_pb2.JobStateChanged(
        job_id="job_1",
        owner_id=user,
        job_type="pytorch",
        attempt=attempt,
        gpu_type=gpu_type if gpus else "",
        gpus=gpus,
    )


async def test_tokens_are_counted_once_and_grouped(
    stub: Stub, auth: RunningAuth, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    clock.now = T0 + 2 * DAY
    # 1 per million prompt tokens of any model; completions cost only on "tiny" (2 per million).
    await set_prices(stub, admin, ("input_tokens", "*", 1_000_000), ("output_tokens", "tiny", 2_000_000))

    first = await facts.publish("usage.recorded", "r1", used(ada, "tiny", "key_a", 100_000, 50_000), T0)
    await facts.publish(
        "usage.recorded", "r2", used(ada, "big", "key_b", 10_000, 5_000), T0 + timedelta(hours=1)
    )
    await facts.publish("usage.recorded", "r3", used(ada, "tiny", "key_a", 1_000_000, 0), T0 + DAY)
    await facts.publish("usage.recorded", "r4", used(people.other.id, "tiny", "key_c", 7, 7), T0)

    def read(
        group_by: str, start: datetime = T0, end: datetime = T0 + 2 * DAY
    ) -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(ada, ada, start, end, group_by))

    by_day = await eventually(lambda: read("day"), lambda r: r.total.requests == 3)
    assert lines(by_day) == [
        ("2026-03-10", 0.0, 2, 110_000, 55_000, 200_000 + 10_000),
        ("2026-03-11", 0.0, 1, 1_000_000, 0, 1_000_000),
    ]
    assert (by_day.total.requests, by_day.total.cost_micros, by_day.currency) == (3, 1_210_000, "USD")
    assert lines(await read("model")) == [
        ("big", 0.0, 1, 10_000, 5_000, 10_000),  # no output price for "big" and no "*" one: free
        ("tiny", 0.0, 2, 1_100_000, 50_000, 1_200_000),
    ]
    assert lines(await read("key")) == [
        ("key_a", 0.0, 2, 1_100_000, 50_000, 1_200_000),
        ("key_b", 0.0, 1, 10_000, 5_000, 10_000),
    ]
    assert lines(await read("gpu_type")) == [("", 0.0, 3, 1_110_000, 55_000, 1_210_000)]
    # The window includes its start and excludes its end.
    assert lines(await read("day", T0, T0 + DAY)) == [("2026-03-10", 0.0, 2, 110_000, 55_000, 210_000)]

    # The same fact delivered again (another message id, so JetStream delivers it) counts once;
    # a later fact shows the consumer got past it.
    await facts.redeliver(first)
    await facts.publish("usage.recorded", "r5", used(ada, "tiny", "key_a", 1, 0), T0 + timedelta(hours=2))
    await eventually(lambda: read("day"), lambda r: r.total.requests == 4)
    await asyncio.sleep(0.3)  # a batch is handled concurrently: let the duplicate's handler end too
    assert lines(await read("day"))[0][:4] == ("2026-03-10", 0.0, 3, 110_001)

    # The ledger itself: one event id, one row, whatever the number of deliveries.
    ledger = auth.metering.ledger
    same = TokenUsage("evt_same", T0, ada, "key_a", "tiny", "dep_x", "chat.completions", 10, 0)
    assert await ledger.record_tokens(same) is True
    assert await ledger.record_tokens(same) is False
    assert (await read("day")).total.requests == 5


async def test_a_batch_of_token_usages_is_one_write_that_counts_each_fact_once(
    stub: Stub, auth: RunningAuth, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    clock.now = T0 + DAY
    await set_prices(stub, admin, ("input_tokens", "*", 1_000_000), ("output_tokens", "tiny", 2_000_000))
    ledger = auth.metering.ledger

    def usage(event_id: str, model: str, prompt: int, completion: int, user: str = ada) -> TokenUsage:
        return TokenUsage(event_id, T0, user, "key_a", model, "dep_x", "chat.completions", prompt, completion)

    assert await ledger.record_tokens(usage("evt_old", "tiny", 1, 0)) is True
    outcomes = await ledger.record_token_batch(
        [
            usage("evt_a", "tiny", 100_000, 50_000),
            usage("evt_a", "tiny", 100_000, 50_000),  # the same fact twice in one batch
            usage("evt_old", "tiny", 1, 0),  # stored by an earlier delivery
            usage("evt_b", "big", 10_000, 5_000),
            usage("evt_nobody", "tiny", 5, 5, user=""),  # refused
            usage("evt_long", "x" * 300, 5, 5),  # refused: longer than its column
            usage("evt_c", "tiny", -3, 7),  # negative counts are stored as 0
        ]
    )
    assert outcomes == [True, False, False, True, False, False, True]
    assert await ledger.record_token_batch([]) == []
    assert await ledger.record_token_batch([usage("evt_a", "tiny", 1, 1)]) == [False]

    # Priced per model as one by one: "big" has no output price and no "*" one.
    by_model = await stub.GetUsage(usage_request(ada, ada, T0, T0 + DAY, "model"))
    assert lines(by_model) == [
        ("big", 0.0, 1, 10_000, 5_000, 10_000),
        ("tiny", 0.0, 3, 100_001, 50_007, 100_001 + 100_014),
    ]

    # A burst through NATS is taken in batches and each fact counted once.
    for n in range(200):
        await facts.publish(
            "usage.recorded", f"burst{n}", used(ada, "big", "key_b", 1, 1), T0 + timedelta(hours=1)
        )

    def read() -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(ada, ada, T0, T0 + DAY, "day"))

    assert (await eventually(read, lambda r: r.total.requests == 204)).total.input_tokens == 110_201


async def test_a_requeued_job_is_charged_for_both_attempts(
    stub: Stub, auth: RunningAuth, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    clock.now = T0 + timedelta(hours=1)
    await set_prices(stub, admin, ("gpu_hour", A100, 3_600_000))  # 1000 micros a GPU-second

    await facts.publish("job.queued", "job_1", job(ada, 1, gpus=0), T0 - timedelta(seconds=30))
    started = await facts.publish("job.running", "job_1", job(ada, 1), T0)
    await facts.publish("job.requeued", "job_1", job(ada, 2), T0 + timedelta(seconds=100))
    await facts.publish("job.running", "job_1", job(ada, 2), T0 + timedelta(seconds=200))
    ended = await facts.publish("job.succeeded", "job_1", job(ada, 2), T0 + timedelta(seconds=500))

    def read(group_by: str) -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(ada, ada, T0 - DAY, T0 + DAY, group_by))

    # Attempt 1 held 2 GPUs for 100 s, attempt 2 for 300 s.
    by_type = await eventually(lambda: read("gpu_type"), lambda r: r.total.gpu_seconds == 800)
    assert lines(by_type) == [(A100, 800.0, 0, 0, 0, 800_000)]
    assert lines(await read("key")) == [("", 800.0, 0, 0, 0, 800_000)]  # GPU time has no API key
    assert lines(await read("model")) == [("", 800.0, 0, 0, 0, 800_000)]  # nor a model, for jobs
    balance = await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada))
    assert (balance.charges_micros, balance.balance_micros) == (800_000, -800_000)

    # Start and end delivered again change nothing (a later fact shows they were consumed).
    await facts.redeliver(started)
    await facts.redeliver(ended)
    await facts.publish("usage.recorded", "r1", used(ada, "tiny", "key_a", 1, 0), T0)
    await eventually(lambda: read("gpu_type"), lambda r: r.total.requests == 1)
    await asyncio.sleep(0.3)  # a batch is handled concurrently: let the duplicates' handlers end too
    assert (await read("gpu_type")).total.gpu_seconds == 800

    # The ledger itself: an end before its start, and an end of an attempt that held nothing.
    ledger = auth.metering.ledger
    hold = GpuHold(IntervalKind.job, "job_2", 1, ada, A100, 4, job_type="mpi")
    await ledger.job_changed(JobFact("succeeded", T0 + timedelta(seconds=10), hold))
    await ledger.job_changed(JobFact("running", T0, hold))
    await ledger.job_changed(JobFact("running", T0, hold))
    await ledger.job_changed(JobFact("succeeded", T0 + timedelta(seconds=10), hold))
    never_ran = GpuHold(IntervalKind.job, "job_3", 1, ada, "", 0)
    await ledger.job_changed(JobFact("cancelled", T0, never_ran))
    await ledger.job_changed(JobFact("running", T0, GpuHold(IntervalKind.job, "job_3", 1, ada, A100, 1)))
    # job_3 is running since T0 (the clock says an hour ago): its cancellation was of nothing.
    assert lines(await read("gpu_type")) == [
        ("", 0.0, 1, 1, 0, 0),  # the request (tokens have no GPU type)
        (A100, 800.0 + 40 + 3600, 0, 0, 0, 800_000 + 40_000 + 3_600_000),
    ]


async def test_a_deployment_is_charged_from_deploying_to_stopping(
    stub: Stub, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    await set_prices(stub, admin, ("gpu_hour", "*", 360_000))  # 100 micros a GPU-second
    for resource, limit in (("gpu:L4", 8), ("gpu:*", 16), (f"gpu:{A100}", 2)):
        await stub.SetQuota(
            auth_pb2.SetQuotaRequest(
                actor_user_id=admin, quota=auth_pb2.Quota(user_id=ada, resource=resource, limit=limit)
            )
        )
    deployment = scheduler_pb2.Deployment(
        id="dep_1",
        owner_id=ada,
        spec=scheduler_pb2.DeploymentSpec(served_model="tiny-chat", gpu_count=2, max_replicas=2),
        gpu_type="L4",
    )

    async def publish(status: int, at: datetime, nodes: tuple[str, ...] = ("n1", "n2")) -> None:
        deployment.status = status  # type: ignore[assignment]
        del deployment.node_ids[:]
        deployment.node_ids.extend(nodes)
        await facts.publish(
            f"deployment.{scheduler_pb2.DeploymentStatus.Name(status).removeprefix('DEPLOYMENT_STATUS_').lower()}",
            deployment.id,
            events_pb2.DeploymentChanged(deployment=deployment),
            at,
        )

    def read() -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(ada, ada, T0 - DAY, T0 + DAY, "model"))

    async def quota_used() -> dict[str, int]:
        status = await stub.GetQuotaStatus(auth_pb2.GetQuotaStatusRequest(user_id=ada))
        return {q.resource: q.used for q in status.quotas}

    await publish(scheduler_pb2.DEPLOYMENT_STATUS_PENDING, T0 - timedelta(seconds=10), nodes=())
    await publish(scheduler_pb2.DEPLOYMENT_STATUS_DEPLOYING, T0)
    await publish(scheduler_pb2.DEPLOYMENT_STATUS_READY, T0 + timedelta(seconds=30))
    clock.now = T0 + timedelta(seconds=45)
    # Running: 2 replicas of 2 GPUs, counted up to now.
    running = await eventually(read, lambda r: r.total.gpu_seconds > 0)
    assert lines(running) == [("tiny-chat", 180.0, 0, 0, 0, 18_000)]
    assert await quota_used() == {f"gpu:{A100}": 0, "gpu:*": 4, "gpu:L4": 4}

    await publish(scheduler_pb2.DEPLOYMENT_STATUS_STOPPING, T0 + timedelta(seconds=60))
    await publish(scheduler_pb2.DEPLOYMENT_STATUS_STOPPED, T0 + timedelta(seconds=90), nodes=())
    clock.now = T0 + timedelta(hours=1)
    stopped = await eventually(read, lambda r: r.total.gpu_seconds == 240)
    assert lines(stopped) == [("tiny-chat", 240.0, 0, 0, 0, 24_000)]
    assert await quota_used() == {f"gpu:{A100}": 0, "gpu:*": 0, "gpu:L4": 0}


async def test_gpu_time_is_split_at_utc_midnight(
    stub: Stub, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    clock.now = datetime(2026, 3, 12, tzinfo=UTC)
    await set_prices(stub, admin, ("gpu_hour", "*", 1_000_000))
    await facts.publish("job.running", "job_1", job(ada, 1, gpus=1), datetime(2026, 3, 10, 23, tzinfo=UTC))
    await facts.publish("job.failed", "job_1", job(ada, 1, gpus=1), datetime(2026, 3, 11, 1, tzinfo=UTC))

    def read(start: datetime) -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(ada, ada, start, datetime(2026, 3, 12, tzinfo=UTC), "day"))

    whole = await eventually(lambda: read(datetime(2026, 3, 10, tzinfo=UTC)), lambda r: len(r.lines) == 2)
    assert lines(whole) == [
        ("2026-03-10", 3600.0, 0, 0, 0, 1_000_000),
        ("2026-03-11", 3600.0, 0, 0, 0, 1_000_000),
    ]
    # A window that starts inside the interval sees only its part of it.
    assert lines(await read(datetime(2026, 3, 11, 0, 30, tzinfo=UTC))) == [
        ("2026-03-11", 1800.0, 0, 0, 0, 500_000)
    ]


async def test_balance_is_credits_less_charges_running_work_included(
    stub: Stub, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    await set_prices(stub, admin, ("gpu_hour", A100, 3_600_000), ("input_tokens", "*", 1_000_000))
    empty = await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada))
    assert (empty.user_id, empty.credits_micros, empty.charges_micros, empty.currency) == (ada, 0, 0, "USD")

    credited = await stub.AddCredit(
        auth_pb2.AddCreditRequest(actor_user_id=admin, user_id=ada, amount_micros=5_000_000, note="welcome")
    )
    assert (credited.credits_micros, credited.charges_micros, credited.balance_micros) == (
        5_000_000,
        0,
        5_000_000,
    )

    await facts.publish("usage.recorded", "r1", used(ada, "tiny", "key_a", 250_000, 0), T0)
    await facts.publish("job.running", "job_1", job(ada, 1, gpus=1), T0)
    clock.now = T0 + timedelta(seconds=60)  # the job is still running: a minute so far

    def read() -> Awaitable[auth_pb2.Balance]:
        return stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada))

    balance = await eventually(read, lambda b: b.charges_micros == 250_000 + 60_000)
    assert (balance.credits_micros, balance.balance_micros) == (5_000_000, 5_000_000 - 310_000)
    clock.now = T0 + timedelta(seconds=120)
    assert (await read()).charges_micros == 250_000 + 120_000
    await stub.AddCredit(auth_pb2.AddCreditRequest(actor_user_id=admin, user_id=ada, amount_micros=1))
    assert (await read()).credits_micros == 5_000_001
    # Another user's usage is not on this balance.
    assert (await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=people.other.id))).charges_micros == 0


async def test_quota_status_counts_tokens_today_and_gpus_held(
    stub: Stub, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, admin = people.user.id, people.admin.id
    clock.now = T0
    for resource, limit in (
        ("tokens_per_day", 1000),
        ("storage_bytes", 10**9),
        (f"gpu:{A100}", 4),
        ("gpu:*", 8),
    ):
        await stub.SetQuota(
            auth_pb2.SetQuotaRequest(
                actor_user_id=admin, quota=auth_pb2.Quota(user_id=ada, resource=resource, limit=limit)
            )
        )
    await facts.publish("usage.recorded", "r0", used(ada, "tiny", "key_a", 400, 100), T0 - DAY)
    await facts.publish("usage.recorded", "r1", used(ada, "tiny", "key_a", 120, 30), T0 - timedelta(hours=11))
    await facts.publish("usage.recorded", "r2", used(people.other.id, "tiny", "key_b", 9, 9), T0)
    await facts.publish("job.running", "job_1", job(ada, 1, gpus=3), T0)

    def read() -> Awaitable[auth_pb2.GetQuotaStatusResponse]:
        return stub.GetQuotaStatus(auth_pb2.GetQuotaStatusRequest(user_id=ada))

    status = await eventually(read, lambda s: [q.used for q in s.quotas] == [3, 3, 0, 150])
    assert [(q.resource, q.limit, q.used) for q in status.quotas] == [
        ("gpu:*", 8, 3),
        (f"gpu:{A100}", 4, 3),
        ("storage_bytes", 10**9, 0),  # the catalog holds the files; the gateway adds their size
        ("tokens_per_day", 1000, 150),  # today's (UTC) only
    ]
    resets = {
        q.resource: q.resets_at.ToDatetime(UTC) if q.HasField("resets_at") else None for q in status.quotas
    }
    assert resets["tokens_per_day"] == datetime(2026, 3, 11, tzinfo=UTC)
    assert resets[f"gpu:{A100}"] is None
    # A user without quotas has no status lines.
    assert (await stub.GetQuotaStatus(auth_pb2.GetQuotaStatusRequest(user_id=people.other.id))).quotas == []


async def test_an_admin_sees_every_users_usage_by_user(
    stub: Stub, people: People, facts: FactPublisher, clock: FakeClock
) -> None:
    ada, bob, admin = people.user.id, people.other.id, people.admin.id
    clock.now = T0 + DAY
    await facts.publish("usage.recorded", "r1", used(ada, "tiny", "key_a", 10, 1), T0)
    await facts.publish("usage.recorded", "r2", used(bob, "tiny", "key_b", 20, 2), T0)
    await facts.publish("job.running", "job_1", job(bob, 1, gpus=1), T0)

    def read(user: str, group_by: str) -> Awaitable[auth_pb2.GetUsageResponse]:
        return stub.GetUsage(usage_request(admin, user, T0 - DAY, T0 + DAY, group_by))

    everyone = await eventually(
        lambda: read("", "user"), lambda r: r.total.requests == 2 and r.total.gpu_seconds > 0
    )
    assert sorted([ada, bob]) == [line.group for line in everyone.lines]
    by_user = {line.group: (line.requests, line.input_tokens, line.gpu_seconds) for line in everyone.lines}
    assert by_user == {ada: (1, 10, 0.0), bob: (1, 20, float(DAY.total_seconds()))}
    # One other user's, asked by an admin.
    assert (await read(bob, "day")).total.input_tokens == 20


async def test_facts_in_any_order_and_at_once_give_the_same_intervals(
    auth: RunningAuth, people: People, clock: FakeClock
) -> None:
    ledger, reports = auth.metering.ledger, auth.metering.reports
    clock.now = T0 + DAY

    def job_facts(owner: str) -> list[JobFact]:
        def hold(attempt: int) -> GpuHold:
            return GpuHold(IntervalKind.job, f"job_{owner}", attempt, owner, A100, 2)

        return [
            JobFact("running", T0, hold(1)),
            JobFact("requeued", T0 + timedelta(seconds=100), hold(2)),
            JobFact("running", T0 + timedelta(seconds=200), hold(2)),
            JobFact("succeeded", T0 + timedelta(seconds=500), hold(2)),
        ]

    def deployment_facts(owner: str) -> list[DeploymentFact]:
        hold = GpuHold(IntervalKind.deployment, f"dep_{owner}", 0, owner, "L4", 4, model="tiny-chat")
        return [
            DeploymentFact("deploying", T0, hold),
            DeploymentFact("ready", T0 + timedelta(seconds=30), hold),
            DeploymentFact("stopping", T0 + timedelta(seconds=60), hold),
            DeploymentFact("stopped", T0 + timedelta(seconds=90), hold),
        ]

    owners: list[str] = []
    for i, order in enumerate(itertools.permutations(range(4))):
        job_owner, deployment_owner = f"owner_j{i:02}", f"owner_d{i:02}"
        owners += [job_owner, deployment_owner]
        jobs, deployments = job_facts(job_owner), deployment_facts(deployment_owner)
        for k in order:
            await ledger.job_changed(jobs[k])
            await ledger.deployment_changed(deployments[k])
    # And every fact of each at the same time, each delivered twice.
    for owner in ("owner_jx", "owner_dx"):
        owners.append(owner)
    await asyncio.gather(
        *(ledger.job_changed(f) for f in job_facts("owner_jx") * 2),
        *(ledger.deployment_changed(f) for f in deployment_facts("owner_dx") * 2),
    )

    report = await reports.usage(people.admin.id, "", T0 - DAY, T0 + DAY, "user")
    by_owner = {line.group: line.gpu_seconds for line in report.lines}
    # Job: 2 GPUs for 100 s then for 300 s; deployment: 4 GPUs for 60 s.
    assert by_owner == {o: 800.0 if o.startswith("owner_j") else 240.0 for o in owners}
    assert (await reports.quota_status("owner_jx")) == []  # nothing held, and no quotas anyway
