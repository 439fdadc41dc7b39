"""Launcher settings, port claims and how /readyz answers are explained."""

from __future__ import annotations

import socket

import pytest

from suanli_cli.launcher.ports import PortClaim, PortInUseError, ensure_ports_free, port_is_free
from suanli_cli.launcher.readiness import ReadyzAnswer
from suanli_cli.launcher.services import service_env
from suanli_cli.launcher.settings import LauncherSettings
from suanli_cli.launcher.up import port_claims
from suanli_common.testing import free_port


def test_embedded_nats_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANLI_NATS_URL", raising=False)
    monkeypatch.setenv("SUANLI_NATS_PORT", "24222")
    settings = LauncherSettings()
    assert not settings.uses_external_nats
    assert settings.effective_nats_url == "nats://127.0.0.1:24222"
    assert [claim.env_var for claim in port_claims(settings)] == [
        "SUANLI_NATS_PORT",
        "SUANLI_HTTP_PORT",
        "SUANLI_AUTH_GRPC_PORT",
        "SUANLI_CATALOG_GRPC_PORT",
        "SUANLI_SCHEDULER_GRPC_PORT",
        "SUANLI_RAG_GRPC_PORT",
        "SUANLI_AUTH_METRICS_PORT",
        "SUANLI_CATALOG_METRICS_PORT",
        "SUANLI_SCHEDULER_METRICS_PORT",
        "SUANLI_RAG_METRICS_PORT",
        "SUANLI_AGENT_METRICS_PORT",
        "SUANLI_SERVE_PORT",
    ]


def test_an_explicit_nats_url_means_external_nats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_NATS_URL", "nats://nats.internal:4222")
    settings = LauncherSettings()
    assert settings.uses_external_nats
    assert settings.effective_nats_url == "nats://nats.internal:4222"
    assert "SUANLI_NATS_PORT" not in [claim.env_var for claim in port_claims(settings)]


def test_a_metrics_endpoint_turned_off_claims_no_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_AGENT_METRICS_PORT", "0")
    claimed = [claim.env_var for claim in port_claims(LauncherSettings())]
    assert "SUANLI_AGENT_METRICS_PORT" not in claimed and "SUANLI_RAG_METRICS_PORT" in claimed


def test_children_learn_where_everything_is(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("SUANLI_NATS_URL", raising=False)
    settings = LauncherSettings(
        home="var", http_port=9090, auth_grpc_port=6000, nats_port=7000, scheduler_metrics_port=6100
    )
    env = service_env(settings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert env["SUANLI_HTTP_PORT"] == "9090"
    assert env["SUANLI_AUTH_GRPC_PORT"] == "6000"
    assert env["SUANLI_AUTH_ADDRESS"] == "127.0.0.1:6000"
    assert env["SUANLI_SCHEDULER_METRICS_PORT"] == "6100"
    assert env["SUANLI_AGENT_METRICS_PORT"] == "9465"
    assert env["SUANLI_NATS_URL"] == "nats://127.0.0.1:7000"
    assert env["SUANLI_HOME"].startswith("/") and env["SUANLI_HOME"].endswith("/var")


def test_a_taken_port_names_the_variable_to_change() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match=f"port {port} .gateway HTTP.*SUANLI_HTTP_PORT"):
            ensure_ports_free([PortClaim(port, "gateway HTTP", "SUANLI_HTTP_PORT")])
    assert port_is_free(free_port())


@pytest.mark.parametrize(
    ("answer", "explained"),
    [
        (
            ReadyzAnswer(503, '{"status": "not ready", "checks": {"nats": "ok", "auth": "unreachable"}}'),
            "auth: unreachable",
        ),
        (ReadyzAnswer(503, '{"nats": true, "auth": false}'), "auth: False"),
        (ReadyzAnswer(503, "plain text"), "HTTP 503: plain text"),
        (ReadyzAnswer(None, "ConnectError"), "the gateway did not answer (ConnectError)"),
    ],
)
def test_readyz_failures_are_explained(answer: ReadyzAnswer, explained: str) -> None:
    assert answer.failing_checks() == explained
