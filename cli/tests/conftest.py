"""A fake Suanli API for the CLI's command tests: the commands' HTTP client is given an httpx mock
transport that answers from routes the test sets, and polling commands do not sleep."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from suanli_cli.client import ApiClient
from suanli_cli.commands import (
    auth,
    deployments,
    files,
    fine_tunes,
    gpus,
    jobs,
    keys,
    knowledge_bases,
    models,
    usage,
)
from suanli_cli.config import Connection
from suanli_cli.main import app

FAKE_URL = "http://suanli.test"
COMMAND_MODULES = (auth, deployments, files, fine_tunes, gpus, jobs, keys, knowledge_bases, models, usage)
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeApi:
    """Routes `(method, path)` to answers given in order (the last one repeats), and keeps every
    request it was sent; an unrouted request is a 404 error object that names it."""

    @staticmethod
    def error(status: int, message: str, param: str | None = None, code: str | None = None) -> httpx.Response:
        """An OpenAI error object, as the gateway answers a refused request."""
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        return httpx.Response(status, json=body)

    @staticmethod
    def sse(*events: Any) -> httpx.Response:
        """A text/event-stream answer: each event a JSON object, or a raw string such as "[DONE]"."""
        text = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    @staticmethod
    def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
        """`suanli ARGS` in-process, its commands talking to this fake."""
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str, *answers: Answer | dict[str, Any]) -> None:
        self.routes[(method, path)] = [
            httpx.Response(200, json=a) if isinstance(a, dict) else a for a in answers
        ]

    def asked(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return self.error(404, f"no fake route for {request.method} {request.url.path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()
    connection = Connection(api_url=FAKE_URL, credential="sk-test", credential_source="SUANLI_API_KEY")

    def open_client() -> ApiClient:
        return ApiClient(connection, transport=httpx.MockTransport(fake))

    for module in COMMAND_MODULES:
        monkeypatch.setattr(module, "open_client", open_client)
    monkeypatch.setattr(fine_tunes, "POLL_S", 0.0)
    monkeypatch.setattr(deployments, "WAIT_POLL_S", 0.0)
    yield fake
