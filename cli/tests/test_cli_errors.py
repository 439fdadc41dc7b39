"""How failures read: OpenAI error objects, refused credentials, unreachable servers, event streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from suanli_cli.client import NOT_SIGNED_IN, describe_error
from suanli_cli.main import app
from suanli_cli.sse import ServerSentEvent, iter_sse
from suanli_common.testing import free_port

if TYPE_CHECKING:
    from conftest import FakeApi


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


def one_error_line(result: Any) -> str:
    """The single `error: ...` line a failed command printed (and nothing on stdout, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return str(lines[0].removeprefix("error: "))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("usage", "--csv", "--json"), "give --csv or --json, not both"),
        (("jobs", "logs", "job_1", "--no-follow", "--json"), "--json needs --follow"),
        (("login", "-e", "a@example.com", "--password", "pw", "--code"), "give --password or --code"),
    ],
)
def test_options_that_cannot_go_together_are_refused_before_asking(
    fake_api: FakeApi, args: tuple[str, ...], message: str
) -> None:
    result = fake_api.cli(*args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(message)
    assert fake_api.requests == [] and result.stdout == ""


@pytest.mark.parametrize("url", ["localhost:8080", "http://", "ftp://gpu-box", "not a url"])
def test_a_url_that_is_no_server_url_says_so(cli_env: dict[str, str | None], url: str) -> None:
    result = CliRunner().invoke(app, ["models", "list"], env={**cli_env, "SUANLI_API_URL": url})
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"SUANLI_API_URL is {url!r}, not a server URL")


def test_a_bad_url_in_the_config_file_names_the_file(cli_env: dict[str, str | None]) -> None:
    Path(str(cli_env["SUANLI_CONFIG"])).write_text('{"api_url": "gpu-box:8080", "access_token": "t"}')
    result = CliRunner().invoke(app, ["whoami"], env={**cli_env, "SUANLI_API_URL": None})
    assert result.exit_code == 1
    assert "the api_url of your config file is 'gpu-box:8080'" in one_error_line(result)


def test_an_unknown_model_reads_as_the_servers_message(fake_api: FakeApi) -> None:
    fake_api.route(
        "POST",
        "/v1/fine_tuning/jobs",
        fake_api.error(400, "Unknown base 'no-such'; see the repository's list.", "model"),
    )
    result = fake_api.cli("fine-tunes", "create", "--model", "no-such", "--file", "file-1")
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result) == "Unknown base 'no-such'; see the repository's list. (parameter: model)"


def test_an_unknown_file_id_reads_as_the_servers_message(fake_api: FakeApi) -> None:
    fake_api.route("GET", "/v1/files/file-nope", fake_api.error(404, "No such file: file-nope"))
    result = fake_api.cli("files", "show", "file-nope", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result) == "No such file: file-nope"


def test_chat_with_a_model_that_is_not_deployed(fake_api: FakeApi) -> None:
    fake_api.route(
        "POST",
        "/v1/chat/completions",
        fake_api.error(404, "The model `nope` does not exist or is not deployed for you.", "model"),
    )
    result = fake_api.cli("chat", "hi", "--model", "nope")
    assert result.exit_code == 1
    assert "`nope` does not exist" in one_error_line(result)


def delta(text: str) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


@pytest.mark.parametrize(
    "failure",
    [
        {"error": {"message": "engine died", "type": "internal_error"}},
        {"object": "error", "message": "engine died", "type": "internal_error"},
    ],
)
def test_a_model_failing_mid_answer_is_one_line(fake_api: FakeApi, failure: dict[str, Any]) -> None:
    fake_api.route("POST", "/v1/chat/completions", fake_api.sse(delta("Par"), failure))
    result = fake_api.cli("chat", "Capital of France?")
    assert result.exit_code == 1
    assert one_error_line(result) == "the model failed mid-answer: engine died"
    assert result.stdout.startswith("Par")  # what came before the failure was shown


def test_an_answer_cut_off_is_not_taken_for_a_whole_one(fake_api: FakeApi) -> None:
    fake_api.route("POST", "/v1/chat/completions", fake_api.sse(delta("Par")))  # no [DONE]
    result = fake_api.cli("chat", "Capital of France?", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result).startswith("the answer was cut off")


def test_a_config_file_that_cannot_be_written_is_one_line(fake_api: FakeApi) -> None:
    config = Path("/proc/suanli-no-such-folder/config.json")  # readable as absent, never creatable
    fake_api.route(
        "POST", "/api/v1/auth/login", {"access_token": "t", "token_type": "bearer", "expires_in": 3600}
    )
    result = fake_api.cli("login", "-e", "a@example.com", "-p", "pw", env={"SUANLI_CONFIG": str(config)})
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"cannot write {config}: ")
    assert "SUANLI_CONFIG" in result.stderr


def test_a_session_for_another_server_says_so(cli_env: dict[str, str | None]) -> None:
    Path(str(cli_env["SUANLI_CONFIG"])).write_text('{"api_url": "http://gpu-box:8080", "access_token": "t"}')
    result = CliRunner().invoke(
        app, ["files", "list"], env={**cli_env, "SUANLI_API_URL": "http://laptop:8080"}
    )
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "not signed in to http://laptop:8080 (your session is for http://gpu-box:8080): "
        "run `suanli login` or set SUANLI_API_KEY"
    )
