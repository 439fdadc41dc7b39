"""What the metering API refuses and who may ask it what; prices, from the settings seed to an
admin's changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from suanli_auth.main import running_auth
from suanli_auth.settings import AuthSettings
from suanli_common.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc

if TYPE_CHECKING:
    from conftest import People
    from suanli_common.proto.suanli.v1.auth_pb2_grpc import AuthServiceAsyncStub as Stub

T0 = datetime(2026, 3, 10, tzinfo=UTC)


def usage_request(
    actor: str, user: str, start: datetime | None, end: datetime | None, group_by: str = "day"
) -> auth_pb2.GetUsageRequest:
    request = auth_pb2.GetUsageRequest(actor_user_id=actor, user_id=user, group_by=group_by)
    if start is not None:
        request.start.FromDatetime(start)
    if end is not None:
        request.end.FromDatetime(end)
    return request


@pytest.mark.parametrize(
    ("start", "end", "group_by", "param", "code"),
    [
        (None, T0, "day", "from", "missing_from"),
        (T0, None, "day", "to", "missing_to"),
        (T0, T0, "day", "to", "invalid_period"),
        (T0, T0 - timedelta(seconds=1), "day", "to", "invalid_period"),
        (T0, T0 + timedelta(days=366, seconds=1), "day", "to", "period_too_long"),
        (T0, T0 + timedelta(days=1), "week", "group_by", "invalid_group_by"),
    ],
)
async def test_usage_checks_its_period_and_grouping(
    stub: Stub,
    people: People,
    start: datetime | None,
    end: datetime | None,
    group_by: str,
    param: str,
    code: str,
) -> None:
    ada = people.user.id
    with pytest.raises(InvalidRequest) as exc:
        await stub.GetUsage(usage_request(ada, ada, start, end, group_by))
    assert (exc.value.param, exc.value.code) == (param, code)


async def test_only_admins_see_others_usage(stub: Stub, people: People) -> None:
    ada, bob, admin = people.user.id, people.other.id, people.admin.id
    end = T0 + timedelta(days=366)  # the longest period there is
    for actor, user, group_by in ((ada, bob, "day"), (ada, "", "day"), (ada, ada, "user"), ("", "", "day")):
        with pytest.raises(PermissionDenied) as exc:
            await stub.GetUsage(usage_request(actor, user, T0, end, group_by))
        assert exc.value.code == "admin_required"

    own = await stub.GetUsage(usage_request(ada, ada, T0, end))
    assert (list(own.lines), own.total.requests, own.currency) == ([], 0, "USD")
    assert not (await stub.GetUsage(usage_request(ada, ada, T0, end, ""))).lines  # "" groups by day
    for user, group_by in ((bob, "day"), ("", "user"), (admin, "key")):
        await stub.GetUsage(usage_request(admin, user, T0, end, group_by))
    with pytest.raises(NotFound):
        await stub.GetUsage(usage_request(admin, "user_nobody", T0, end))


async def test_credits_are_an_admins_to_give(stub: Stub, people: People) -> None:
    ada, admin = people.user.id, people.admin.id

    def credit(actor: str, user: str, amount: int, note: str = "") -> auth_pb2.AddCreditRequest:
        return auth_pb2.AddCreditRequest(actor_user_id=actor, user_id=user, amount_micros=amount, note=note)

    with pytest.raises(PermissionDenied) as denied:
        await stub.AddCredit(credit(ada, ada, 1_000_000))
    assert denied.value.code == "admin_required"
    for amount in (0, -5):
        with pytest.raises(InvalidRequest) as exc:
            await stub.AddCredit(credit(admin, ada, amount))
        assert (exc.value.param, exc.value.code) == ("amount", "invalid_amount")
    with pytest.raises(InvalidRequest) as exc:
        await stub.AddCredit(credit(admin, ada, 1, note="x" * 501))
    assert exc.value.param == "note"
    with pytest.raises(NotFound) as missing:
        await stub.AddCredit(credit(admin, "user_nobody", 1_000_000))
    assert missing.value.param == "user_id"
    with pytest.raises(NotFound):
        await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id="user_nobody"))

    balance = await stub.AddCredit(credit(admin, ada, 2_500_000, note="  trial  "))
    assert (balance.user_id, balance.credits_micros, balance.balance_micros) == (ada, 2_500_000, 2_500_000)
    # Nothing refused above was recorded.
    assert (await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada))).credits_micros == 2_500_000


async def test_a_credit_retried_with_its_key_is_given_once(stub: Stub, people: People) -> None:
    ada, admin = people.user.id, people.admin.id

    def credit(amount: int, request_id: str) -> auth_pb2.AddCreditRequest:
        return auth_pb2.AddCreditRequest(
            actor_user_id=admin, user_id=ada, amount_micros=amount, request_id=request_id
        )

    first, retried = await asyncio.gather(stub.AddCredit(credit(5, "r1")), stub.AddCredit(credit(5, "r1")))
    assert first.credits_micros == retried.credits_micros == 5
    assert (await stub.AddCredit(credit(5, "r1"))).credits_micros == 5
    assert (await stub.AddCredit(credit(5, "r2"))).credits_micros == 10  # another key, another credit
    with pytest.raises(Conflict) as reused:
        await stub.AddCredit(credit(7, "r1"))
    assert (reused.value.param, reused.value.code) == ("Idempotency-Key", "idempotency_key_reused")
    assert (await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada))).credits_micros == 10


@pytest.mark.parametrize(
    ("kind", "name", "price", "param"),
    [
        ("tokens", "*", 1, "kind"),
        ("", "*", 1, "kind"),
        ("gpu_hour", "", 1, "name"),
        ("gpu_hour", "   ", 1, "name"),
        ("gpu_hour", "x" * 101, 1, "name"),
        ("input_tokens", "tiny", -1, "price"),
        ("gpu_hour", "L4", 10**12 + 1, "price"),  # sums of costs could overflow int64 micros
    ],
)
async def test_bad_prices_are_refused(
    stub: Stub, people: People, kind: str, name: str, price: int, param: str
) -> None:
    good = auth_pb2.Price(kind="gpu_hour", name="L4", price_micros=5)
    bad = auth_pb2.Price(kind=kind, name=name, price_micros=price)
    with pytest.raises(InvalidRequest) as exc:
        await stub.SetPrices(auth_pb2.SetPricesRequest(actor_user_id=people.admin.id, prices=[good, bad]))
    assert exc.value.param == param
    # All or nothing: the good price of the refused request was not kept.
    assert list((await stub.GetPrices(auth_pb2.GetPricesRequest())).prices) == []


async def test_only_admins_set_prices_and_each_replaces_its_own(stub: Stub, people: People) -> None:
    def prices(*items: tuple[str, str, int]) -> list[auth_pb2.Price]:
        return [auth_pb2.Price(kind=k, name=n, price_micros=p) for k, n, p in items]

    with pytest.raises(PermissionDenied) as exc:
        await stub.SetPrices(
            auth_pb2.SetPricesRequest(actor_user_id=people.user.id, prices=prices(("gpu_hour", "*", 1)))
        )
    assert exc.value.code == "admin_required"

    admin = people.admin.id
    await stub.SetPrices(
        auth_pb2.SetPricesRequest(
            actor_user_id=admin, prices=prices(("gpu_hour", "*", 1_000_000), ("gpu_hour", "L4", 700_000))
        )
    )
    answer = await stub.SetPrices(
        auth_pb2.SetPricesRequest(
            actor_user_id=admin, prices=prices(("gpu_hour", "L4", 800_000), ("output_tokens", "tiny", 0))
        )
    )
    expected = [("gpu_hour", "*", 1_000_000), ("gpu_hour", "L4", 800_000), ("output_tokens", "tiny", 0)]
    assert [(p.kind, p.name, p.price_micros) for p in answer.prices] == expected
    listed = await stub.GetPrices(auth_pb2.GetPricesRequest())
    assert ([(p.kind, p.name, p.price_micros) for p in listed.prices], listed.currency) == (expected, "USD")


async def test_prices_are_seeded_once_from_the_settings(settings: AuthSettings) -> None:
    settings = settings.model_copy(
        update={
            "currency": "EUR",
            "prices": AuthSettings.model_validate(
                {"prices": {"gpu_hour": {"*": 1.5, "A100-80G": 2.25}, "input_tokens": {"*": 0.1}}}
            ).prices,
        }
    )

    async def prices_after(change: list[auth_pb2.Price]) -> tuple[list[tuple[str, str, int]], str]:
        async with running_auth(settings) as auth:
            channel = make_channel(auth.address)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            try:
                if change:
                    admin = await stub.SignUp(
                        auth_pb2.SignUpRequest(email="boss@example.com", password="correct horse")
                    )
                    await stub.SetPrices(auth_pb2.SetPricesRequest(actor_user_id=admin.id, prices=change))
                listed = await stub.GetPrices(auth_pb2.GetPricesRequest())
            finally:
                await channel.close()
        return [(p.kind, p.name, p.price_micros) for p in listed.prices], listed.currency

    seeded, currency = await prices_after([auth_pb2.Price(kind="gpu_hour", name="*", price_micros=3_000_000)])
    assert currency == "EUR"
    assert seeded == [
        ("gpu_hour", "*", 3_000_000),
        ("gpu_hour", "A100-80G", 2_250_000),
        ("input_tokens", "*", 100_000),
    ]
    # A restart keeps the admin's change: the settings only seed an empty table.
    assert (await prices_after([]))[0] == seeded


def test_prices_and_currency_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_CURRENCY", "CNY")
    monkeypatch.setenv("SUANLI_PRICES", '{"gpu_hour": {"L4": 0.8}, "output_tokens": {"*": 2}}')
    settings = AuthSettings()
    assert settings.currency == "CNY"
    assert [(p.kind.value, p.name, p.price_micros) for p in settings.seed_prices()] == [
        ("gpu_hour", "L4", 800_000),
        ("output_tokens", "*", 2_000_000),
    ]
    for bad in ('{"gpu_minute": {"*": 1}}', '{"gpu_hour": {"*": -1}}', '{"gpu_hour": {"": 1}}'):
        monkeypatch.setenv("SUANLI_PRICES", bad)
        with pytest.raises(ValueError):
            AuthSettings()
