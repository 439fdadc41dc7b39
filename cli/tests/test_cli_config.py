"""Where the CLI keeps its URL and credential, and how the environment overrides them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from suanli_cli.config import (
    DEFAULT_API_URL,
    ConfigError,
    StoredConfig,
    config_path,
    load_config,
    resolve_connection,
    save_config,
)


def test_config_path_is_suanli_config_else_under_xdg_config_home(tmp_path: Path) -> None:
    assert config_path({"SUANLI_CONFIG": str(tmp_path / "c.json")}) == tmp_path / "c.json"
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "suanli" / "config.json"
    assert config_path({}) == Path.home() / ".config" / "suanli" / "config.json"


def test_saved_config_reads_back_and_only_its_owner_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "config.json"
    saved = StoredConfig(api_url="http://gpu-box:8080", access_token="tok", email="a@example.com")
    save_config(path, saved)
    assert load_config(path) == saved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary file left


def test_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.json") == StoredConfig()


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"api_url": 8080}', "'api_url'")],
)
def test_a_broken_file_is_a_one_line_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem) as raised:
        load_config(path)
    assert "\n" not in str(raised.value)


def test_defaults_without_config_or_environment() -> None:
    connection = resolve_connection({}, StoredConfig())
    assert (connection.api_url, connection.credential, connection.credential_source) == (
        DEFAULT_API_URL,
        None,
        None,
    )


def test_the_stored_session_is_used_for_the_server_that_issued_it() -> None:
    stored = StoredConfig(api_url="http://gpu-box:8080/", access_token="tok")
    connection = resolve_connection({}, stored)
    assert (connection.api_url, connection.credential, connection.credential_source) == (
        "http://gpu-box:8080",
        "tok",
        "login",
    )


def test_the_stored_session_is_never_sent_to_another_server() -> None:
    stored = StoredConfig(api_url="http://gpu-box:8080", access_token="tok")
    connection = resolve_connection({"SUANLI_API_URL": "http://elsewhere:8080"}, stored)
    assert (connection.api_url, connection.credential) == ("http://elsewhere:8080", None)


def test_suanli_api_key_wins_over_the_stored_session() -> None:
    stored = StoredConfig(api_url=DEFAULT_API_URL, access_token="tok")
    connection = resolve_connection({"SUANLI_API_KEY": " sk-key "}, stored)
    assert (connection.credential, connection.credential_source) == ("sk-key", "SUANLI_API_KEY")
