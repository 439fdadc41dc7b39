"""Fixtures: the real auth service (SQLite under tmp_path, a real nats-server) serving gRPC on a
free port, a real gRPC client to it, and a publisher of the facts other services would publish."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faststream.nats import NatsBroker
from google.protobuf.message import Message

from suanli_auth.main import RunningAuth, running_auth
from suanli_auth.settings import AuthSettings
from suanli_common.bus import EVENTS, EventPublisher, encode_event, event_subject, make_broker
from suanli_common.grpc import make_channel
from suanli_common.ids import new_id
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc
from suanli_common.proto.suanli.v1.events_pb2 import EventEnvelope
from suanli_common.testing import NatsServer, free_port

ADMIN_EMAIL = "boss@example.com"


class FakeClock:
    """The service's clock, moved forward by tests that need time to pass (code expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer) -> AuthSettings:
    return AuthSettings(
        home=tmp_path / "home",
        nats_url=nats_server.url,
        auth_grpc_port=free_port(),
        admin_emails=[ADMIN_EMAIL],
        email_code_ttl_s=600,
        email_code_max_attempts=3,
        log_format="console",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def auth(settings: AuthSettings, clock: FakeClock) -> AsyncIterator[RunningAuth]:
    async with running_auth(settings, clock) as running:
        yield running


@pytest.fixture
async def stub(auth: RunningAuth) -> AsyncIterator[auth_pb2_grpc.AuthServiceAsyncStub]:
    channel = make_channel(auth.address)
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()


@dataclass(frozen=True)
class People:
    user: auth_pb2.User
    other: auth_pb2.User
    admin: auth_pb2.User


@pytest.fixture
async def people(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> People:
    async def sign_up(email: str) -> auth_pb2.User:
        return await stub.SignUp(auth_pb2.SignUpRequest(email=email, password="correct horse"))

    return People(
        user=await sign_up("ada@example.com"),
        other=await sign_up("bob@example.com"),
        admin=await sign_up(ADMIN_EMAIL),
    )


class FactPublisher:
    """Publishes facts as the gateway and the scheduler do, with the time they happened at."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker
        self._publisher = EventPublisher(broker, source="test")

    async def publish(self, event_type: str, subject: str, data: Message, at: datetime) -> EventEnvelope:
        envelope = encode_event(event_type, subject, data, source="test")
        envelope.time.FromDatetime(at)
        await self._publisher.publish_envelope(envelope)
        return envelope

    async def redeliver(self, envelope: EventEnvelope) -> None:
        """The same event again under another Nats-Msg-Id, so JetStream stores and delivers it
        twice (what a republish after the de-duplication window amounts to)."""
        await self._broker.publish(
            envelope.SerializeToString(),
            subject=event_subject(envelope.type),
            headers={"Nats-Msg-Id": new_id("redelivery")},
            stream=EVENTS.name,
        )


@pytest.fixture
async def facts(auth: RunningAuth, nats_server: NatsServer) -> AsyncIterator[FactPublisher]:
    # Made after the service, which declares the streams.
    broker = make_broker(nats_server.url, service="auth-test-facts")
    await broker.connect()
    yield FactPublisher(broker)
    await broker.stop()


Mail = email.message.EmailMessage


@pytest.fixture
def latest_mail(settings: AuthSettings) -> Callable[[], Mail]:
    """Reads the newest .eml the service wrote to its local outbox folder."""
    return lambda: _latest_mail(settings)


@pytest.fixture
def mailed_code(settings: AuthSettings) -> Callable[[], str]:
    """The sign-in code in the newest mail, as a user would copy it."""
    return lambda: _code_from_mail(settings)


def _latest_mail(settings: AuthSettings) -> Mail:
    files = sorted(settings.mail_outbox_dir.glob("*.eml"))
    assert files, f"no mail in {settings.mail_outbox_dir}"
    message = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _code_from_mail(settings: AuthSettings) -> str:
    body = _latest_mail(settings).get_content()
    match = re.search(r"\b(\d{6})\b", body)
    assert match, body
    return match.group(1)
