"""The CLI's HTTP client of the Suanli API: one httpx client that sends the credential and turns
every failure (OpenAI error objects, refused connections, timeouts) into one `ApiError` line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from suanli_cli.config import (
    API_KEY_ENV,
    Connection,
    StoredConfig,
    config_path,
    load_config,
    resolve_connection,
)

NOT_SIGNED_IN = "not signed in: run `suanli login` or set SUANLI_API_KEY"
DEFAULT_TIMEOUT = httpx.Timeout(30.0)


class ApiError(Exception):
    """A request that failed, with the one line to show the user."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def not_signed_in(connection: Connection) -> str:
    if connection.session_server is None:
        return NOT_SIGNED_IN
    # A session is only ever sent to the server that issued it.
    return (
        f"not signed in to {connection.api_url} (your session is for {connection.session_server}): "
        "run `suanli login` or set SUANLI_API_KEY"
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(status: int, body: bytes, *, signed_in: bool, uses_api_key: bool = False) -> ApiError:
    """The ApiError of an HTTP error response: the OpenAI error object's message where there is one."""
    message: str | None = None
    code: str | None = None
    param: str | None = None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        code = error.get("code") if isinstance(error.get("code"), str) else None
        param = error.get("param") if isinstance(error.get("param"), str) else None
    elif isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        message = payload["detail"]
    if status == 401 and signed_in:
        # The server refused the credential we sent: expired session, revoked key.
        where = f"the key in {API_KEY_ENV}" if uses_api_key else "your session"
        reason = one_line(message) if message else "credential refused"
        return ApiError(
            f"{where} was refused ({reason}): run `suanli login` or set {API_KEY_ENV}",
            status=status,
            code=code,
        )
    if status == 401 and code in (None, "missing_credentials") and message is None:
        return ApiError(NOT_SIGNED_IN, status=status, code=code)
    if message is None:
        text = one_line(body.decode("utf-8", "replace"))[:200]
        message = f"HTTP {status}" + (f": {text}" if text else "")
    else:
        message = one_line(message)
        if param and param not in message:
            message = f"{message} (parameter: {param})"
    return ApiError(message, status=status, code=code)


class ApiClient:
    """Calls on the Suanli API; requests made with `authenticated=False` send no credential
    (sign-up and sign-in) and show a 401 as the server's own message."""

    def __init__(self, connection: Connection, *, transport: httpx.BaseTransport | None = None) -> None:
        self.connection = connection
        self._http = httpx.Client(base_url=connection.api_url, timeout=DEFAULT_TIMEOUT, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def api_url(self) -> str:
        return self.connection.api_url

    def _headers(self, authenticated: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if authenticated:
            if self.connection.credential is None:
                raise ApiError(not_signed_in(self.connection), status=401)
            headers["Authorization"] = f"Bearer {self.connection.credential}"
        return headers

    def _raise_for(self, response: httpx.Response, authenticated: bool) -> None:
        if response.status_code < 400:
            return
        body = response.read()
        raise describe_error(
            response.status_code,
            body,
            signed_in=authenticated and self.connection.credential is not None,
            uses_api_key=self.connection.credential_source == API_KEY_ENV,
        )

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError:
            raise ApiError(
                f"cannot reach the Suanli API at {self.api_url} — is `suanli up` running?"
            ) from None
        except httpx.TimeoutException:
            raise ApiError(f"the Suanli API at {self.api_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"talking to the Suanli API at {self.api_url} failed: {one_line(str(exc))}"
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The decoded JSON body of a successful response (None when there is none)."""
        sent = self._headers(authenticated, headers)
        with self._transport_errors():
            response = self._http.request(method, path, headers=sent, **kwargs)
            self._raise_for(response, authenticated)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"the Suanli API at {self.api_url} answered {path} with something not JSON"
            ) from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    @contextmanager
    def stream(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives; a failed one raises ApiError first.
        Transport errors while reading the body are ApiErrors too."""
        sent = self._headers(True, headers)
        with self._transport_errors(), self._http.stream(method, path, headers=sent, **kwargs) as response:
            self._raise_for(response, True)
            yield response


def stored_config() -> StoredConfig:
    return load_config(config_path(os.environ))


def open_client() -> ApiClient:
    """A client for the server and credential the environment and config file name."""
    return ApiClient(resolve_connection(os.environ, stored_config()))
