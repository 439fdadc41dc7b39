"""Where the CLI keeps its server URL and credential, and how the environment overrides them.

The file is `$SUANLI_CONFIG`, else `$XDG_CONFIG_HOME/suanli/config.json` (`~/.config/...`).
`SUANLI_API_URL` and `SUANLI_API_KEY` win over it; a stored sign-in is only ever sent to the
server that issued it, so pointing the CLI at another URL never leaks the token there.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_ENV = "SUANLI_API_URL"
API_KEY_ENV = "SUANLI_API_KEY"
CONFIG_ENV = "SUANLI_CONFIG"


class ConfigError(Exception):
    """The config file exists but cannot be used (unreadable, not JSON, wrong shape)."""


@dataclass
class StoredConfig:
    """What `suanli login` remembers: the server and the session token it issued."""

    api_url: str | None = None
    access_token: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Connection:
    """The server to talk to and the credential to send (None: not signed in)."""

    api_url: str
    credential: str | None
    credential_source: str | None  # "SUANLI_API_KEY", "login", or None
    session_server: str | None = None  # where the stored session is valid, when that is elsewhere


def config_path(env: Mapping[str, str]) -> Path:
    if explicit := env.get(CONFIG_ENV):
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "suanli" / "config.json"


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def checked_url(url: str, origin: str) -> str:
    """The normalized URL, or a ConfigError that says where the bad one came from."""
    normalized = normalize_url(url)
    parts = urlsplit(normalized)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{origin} is {url!r}, not a server URL: give http:// or https:// and a host, "
            f"like {DEFAULT_API_URL}"
        )
    return normalized


def load_config(path: Path) -> StoredConfig:
    """The stored config; an absent file is an empty config."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return StoredConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should hold a JSON object")
    fields = {}
    for name in ("api_url", "access_token", "email"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: '{name}' should be a string")
        fields[name] = value
    return StoredConfig(**fields)


def save_config(path: Path, config: StoredConfig) -> None:
    """Writes the file readable by its owner only (it holds a bearer token), replacing it atomically."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {k: v for k, v in asdict(config).items() if v is not None}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise ConfigError(f"cannot write {path}: {exc.strerror} (set {CONFIG_ENV} to another file)") from None


def resolve_connection(env: Mapping[str, str], stored: StoredConfig) -> Connection:
    """SUANLI_API_URL, else the URL of the last login, else the default; SUANLI_API_KEY, else the
    stored token if it was issued by that same URL."""
    if env.get(API_URL_ENV):
        api_url = checked_url(env[API_URL_ENV], API_URL_ENV)
    elif stored.api_url:
        api_url = checked_url(stored.api_url, "the api_url of your config file")
    else:
        api_url = DEFAULT_API_URL
    if api_key := env.get(API_KEY_ENV, "").strip():
        return Connection(api_url, api_key, API_KEY_ENV)
    if stored.access_token and stored.api_url:
        if normalize_url(stored.api_url) == api_url:
            return Connection(api_url, stored.access_token, "login")
        return Connection(api_url, None, None, session_server=normalize_url(stored.api_url))
    return Connection(api_url, None, None)
