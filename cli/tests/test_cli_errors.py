"""How failures read: OpenAI error objects, refused credentials, unreachable servers, event streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli_cli.client import NOT_SIGNED_IN, describe_error
from suanli_cli.main import app
from suanli_cli.sse import ServerSentEvent, iter_sse
from suanli_common.testing import free_port


def error_object(message: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    ).encode()


def test_an_error_object_shows_its_message_and_parameter() -> None:
    error = describe_error(400, error_object("Field required", "missing", "name"), signed_in=True)
    assert (error.message, error.status, error.code) == ("Field required (parameter: name)", 400, "missing")


def test_a_multi_line_message_becomes_one_line() -> None:
    assert describe_error(404, error_object("No such\n  file"), signed_in=True).message == "No such file"


def test_a_refused_session_says_how_to_sign_in_again() -> None:
    error = describe_error(401, error_object("Session expired", "invalid_token"), signed_in=True)
    assert (
        error.message
        == "your session was refused (Session expired): run `suanli login` or set SUANLI_API_KEY"
    )
    by_key = describe_error(401, error_object("Key revoked"), signed_in=True, uses_api_key=True)
    assert by_key.message.startswith("the key in SUANLI_API_KEY was refused (Key revoked)")


def test_a_refused_sign_in_shows_the_servers_reason() -> None:
    error = describe_error(401, error_object("Invalid e-mail or password."), signed_in=False)
    assert error.message == "Invalid e-mail or password."


def test_a_body_that_is_no_error_object_shows_the_status_and_text() -> None:
    assert describe_error(502, b"<html>Bad Gateway</html>", signed_in=True).message == (
        "HTTP 502: <html>Bad Gateway</html>"
    )
    assert describe_error(503, b"", signed_in=True).message == "HTTP 503"


def test_server_sent_events_are_parsed_and_keepalives_skipped() -> None:
    lines = [
        "id: 1",
        'data: {"line": "hi"}',
        "",
        ": keepalive",
        "",
        "event: end",
        'data: {"status": "ok"}',
        "",
    ]
    assert list(iter_sse(lines)) == [
        ServerSentEvent("message", '{"line": "hi"}', "1"),
        ServerSentEvent("end", '{"status": "ok"}', "1"),
    ]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str | None]:
    return {"SUANLI_CONFIG": str(tmp_path / "config.json"), "SUANLI_API_KEY": None}


def test_without_a_credential_the_command_says_how_to_sign_in(cli_env: dict[str, str | None]) -> None:
    result = CliRunner().invoke(app, ["keys", "list"], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {NOT_SIGNED_IN}"
    assert result.stdout == ""


def test_an_unreachable_server_is_one_clear_line(cli_env: dict[str, str | None]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(
        app, ["models", "list"], env={**cli_env, "SUANLI_API_URL": url, "SUANLI_API_KEY": "k"}
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot reach the Suanli API at {url} — is `suanli up` running?"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_broken_config_file_is_one_clear_line(cli_env: dict[str, str | None]) -> None:
    Path(str(cli_env["SUANLI_CONFIG"])).write_text("{oops")
    result = CliRunner().invoke(app, ["whoami"], env=cli_env)
    assert result.exit_code == 1
    assert "is not valid JSON" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_logout_when_signed_out_is_harmless(cli_env: dict[str, str | None]) -> None:
    result = CliRunner().invoke(app, ["logout"], env=cli_env)
    assert result.exit_code == 0 and "not signed in" in result.stdout


def test_every_command_has_help() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("login", "signup", "logout", "whoami", "keys", "models", "files", "jobs", "gpus"):
        assert command in top.stdout
    for group, commands in {
        "keys": ("create", "list", "revoke"),
        "models": ("list", "show", "register", "download"),
        "files": ("upload", "list", "show", "delete"),
        "jobs": ("submit", "list", "show", "logs", "cancel"),
    }.items():
        listed = runner.invoke(app, [group, "--help"])
        assert listed.exit_code == 0 and all(c in listed.stdout for c in commands), listed.stdout
        for command in commands:
            shown = runner.invoke(app, [group, command, "--help"])
            assert shown.exit_code == 0, shown.output
            assert "--json" in shown.stdout or command == "download", shown.stdout
