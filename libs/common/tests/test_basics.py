"""Ids, errors, settings and log redaction."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from suanli_common.errors import Conflict, RateLimited, error_class_named
from suanli_common.ids import new_id
from suanli_common.logging import configure_logging, get_logger
from suanli_common.settings import ServiceSettings


def test_ids_are_prefixed_unique_and_time_ordered() -> None:
    ids = [new_id("user") for _ in range(200)]
    assert all(i.startswith("user_") and len(i) == 31 for i in ids)
    assert len(set(ids)) == 200
    assert ids == sorted(ids) or all(a[:15] <= b[:15] for a, b in itertools.pairwise(ids))
    assert new_id("file", sep="-").startswith("file-")


def test_errors_render_as_openai_error_objects() -> None:
    body = Conflict("email already registered", code="email_taken", param="email").to_openai()
    assert body == {
        "error": {
            "message": "email already registered",
            "type": "conflict_error",
            "param": "email",
            "code": "email_taken",
        }
    }
    assert RateLimited("slow down", retry_after=3).http_status == 429
    assert error_class_named("Conflict") is Conflict


def test_settings_come_from_suanli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class DemoSettings(ServiceSettings):
        service_name = "demo"

    monkeypatch.setenv("SUANLI_HOME", str(tmp_path))
    monkeypatch.setenv("SUANLI_NATS_URL", "nats://10.0.0.1:4222")
    settings = DemoSettings()
    assert settings.nats_url == "nats://10.0.0.1:4222"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'demo' / 'db.sqlite3'}"
    monkeypatch.setenv("SUANLI_DATABASE_URL", "postgresql+asyncpg://db/suanli")
    assert DemoSettings().resolved_database_url == "postgresql+asyncpg://db/suanli"


def test_logs_never_carry_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "INFO", "json")
    get_logger("t").info(
        "login attempt with Bearer sk-abcdef123456", password="hunter2", api_key="sk-zzz", email="a@b.c"
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["password"] == "[redacted]" and line["api_key"] == "[redacted]"
    assert "sk-abcdef123456" not in line["event"] and line["email"] == "a@b.c"
    assert line["service"] == "test"
