"""Polls the gateway's /readyz until it is green, and says what is not when it never gets there."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

_GOOD = {True, "ok", "up", "ready", "pass", "healthy", "serving"}


@dataclass(frozen=True)
class ReadyzAnswer:
    status_code: int | None  # None: nothing answered
    body: str

    @property
    def ready(self) -> bool:
        return self.status_code == 200

    def failing_checks(self) -> str:
        """The checks /readyz reports as failing, or the best description of the answer there is."""
        if self.status_code is None:
            return f"the gateway did not answer ({self.body})"
        try:
            document = json.loads(self.body)
        except ValueError:
            return f"HTTP {self.status_code}: {self.body[:500]}"
        checks = document.get("checks", document) if isinstance(document, dict) else None
        if isinstance(checks, dict):
            failing = {name: state for name, state in checks.items() if not _is_good(state)}
            if failing:
                return ", ".join(f"{name}: {_describe(state)}" for name, state in failing.items())
        return f"HTTP {self.status_code}: {self.body[:500]}"


async def probe_readyz(client: httpx.AsyncClient, url: str) -> ReadyzAnswer:
    try:
        response = await client.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        return ReadyzAnswer(status_code=None, body=f"{type(exc).__name__}: {exc}".rstrip(": "))
    return ReadyzAnswer(status_code=response.status_code, body=response.text)


async def wait_until_ready(
    client: httpx.AsyncClient, url: str, timeout_s: float, interval_s: float = 0.5
) -> ReadyzAnswer:
    """The first green answer, or the last answer seen when `timeout_s` ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await probe_readyz(client, url)
        if answer.ready or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(interval_s)


def _is_good(state: object) -> bool:
    if isinstance(state, dict):
        state = state.get("status", state.get("ok", state.get("ready")))
    if isinstance(state, str):
        return state.lower() in _GOOD
    return state in _GOOD


def _describe(state: object) -> str:
    if isinstance(state, dict):
        return ", ".join(f"{key}={value}" for key, value in state.items())
    return str(state)
