"""Calls to a deployment's OpenAI app on Ray Serve, and what comes back: an answer with its token
usage, or an OpenAI error object with the right status. The replica's own errors (a prompt over
the context length, say) pass through as it phrased them; a replica that is gone is a 503."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate

from suanli_common.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SuanliError,
    Unauthenticated,
    Unavailable,
)
from suanli_inference_gateway.openai.inference.replica_client import (
    ReplicaPool,
    ReplicaResponse,
    ReplicaUnreachable,
)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def of(cls, usage: Any) -> TokenUsage:
        if not isinstance(usage, dict):
            return cls()
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


_BY_STATUS: dict[int, type[SuanliError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,  # a replica's validation failure is the caller's bad request, as OpenAI says it
    429: RateLimited,
}


def _error_of(status: int, body: bytes) -> SuanliError:
    """The replica's error as ours: its message, param and code, under the error of its status."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) and isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        error = parsed  # vLLM's older flat shape
    if status >= 500 or status not in _BY_STATUS:
        return Unavailable("The model's replica failed while answering. Please retry your request.")
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
        error = {"message": text}
    code = error.get("code")
    return _BY_STATUS[status](
        str(error.get("message") or "the model server refused the request"),
        param=error.get("param") if isinstance(error.get("param"), str) else None,
        code=str(code) if code is not None and not isinstance(code, int) else None,
    )


def _headers() -> dict[str, str]:
    headers = {"content-type": "application/json"}
    propagate.inject(headers)  # the replica's spans join the gateway's trace
    return headers


_UNREACHABLE = "The model's replicas are not answering right now. Please retry your request."


class Upstream:
    def __init__(self, pool: ReplicaPool) -> None:
        self._pool = pool

    async def call(self, url: str, payload: dict[str, Any]) -> tuple[bytes, TokenUsage]:
        response = await self.open_stream(url, payload)
        try:
            content = await response.aread()
        except ReplicaUnreachable as exc:
            raise Unavailable(_UNREACHABLE) from exc
        finally:
            await response.aclose()
        try:
            usage = TokenUsage.of(json.loads(content).get("usage"))
        except (ValueError, AttributeError):
            usage = TokenUsage()
        return content, usage

    async def open_stream(self, url: str, payload: dict[str, Any]) -> ReplicaResponse:
        """The replica's response once it has started well; its error before that."""
        try:
            response = await self._pool.request(url, json.dumps(payload).encode(), _headers())
        except ReplicaUnreachable as exc:
            raise Unavailable(_UNREACHABLE) from exc
        if response.status_code != 200:
            try:
                body = await response.aread()
            except ReplicaUnreachable:
                body = b""
            finally:
                await response.aclose()
            raise _error_of(response.status_code, body)
        return response


USAGE_MARK = b'"usage":{'
EMPTY_CHOICES = b'"choices":[]'


class StreamRelay:
    """Passes a replica's server-sent events through as they come, noting the usage the last
    event carries (the gateway always asks for it) and leaving that event out when the client
    did not ask for it itself; `on_end(usage, completed)` once the stream is over or cut."""

    def __init__(
        self,
        response: ReplicaResponse,
        *,
        client_wants_usage: bool,
        on_end: Callable[[TokenUsage, bool], None],
    ) -> None:
        self._response = response
        self._client_wants_usage = client_wants_usage
        self._on_end = on_end
        self.usage = TokenUsage()
        self.completed = False
        self._aborted = False

    async def events(self) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            while chunk := await self._response.read():
                if not buffer and USAGE_MARK not in chunk and chunk.endswith(b"\n\n"):
                    yield chunk  # whole events, none of them the usage: as they are (the usual case)
                    continue
                buffer += chunk
                out = []
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[: end + 2], buffer[end + 2 :]
                    if self._keep(event):
                        out.append(event)
                if out:
                    yield b"".join(out)
            if buffer:
                yield buffer
            self.completed = True
        except ReplicaUnreachable:
            if not self._aborted:
                raise  # the replica broke off: the client's response is cut, not ended as if whole
        finally:
            if not self.completed:
                # Also when the client went away: closing the connection aborts the generation.
                self._response.abort()
            await self._response.aclose()
            self._on_end(self.usage, self.completed)

    def abort(self) -> None:
        """The client went away: the replica's connection is closed, which ends `events()`."""
        if not self.completed:
            self._aborted = True
            self._response.abort()

    def _keep(self, event: bytes) -> bool:
        if USAGE_MARK not in event:
            return True
        try:
            data = json.loads(event.removeprefix(b"data: ").strip())
        except ValueError:
            return True
        self.usage = TokenUsage.of(data.get("usage"))
        return self._client_wants_usage or EMPTY_CHOICES not in event


class ModelRename:
    """Answers name the model as its engine knows it (`DeploymentSpec.engine_model`); the caller
    gets back the name it asked for. The engine writes compact JSON, so a byte replacement of the
    `"model"` member does it, whole answers and stream events alike."""

    def __init__(self, engine_model: str, model: str) -> None:
        self._pairs = (
            []
            if engine_model == model
            else [
                (f'"model":{json.dumps(engine_model)}'.encode(), f'"model":{json.dumps(model)}'.encode()),
                (f'"model": {json.dumps(engine_model)}'.encode(), f'"model": {json.dumps(model)}'.encode()),
            ]
        )

    def __call__(self, content: bytes) -> bytes:
        for engine, asked in self._pairs:
            content = content.replace(engine, asked)
        return content

    async def each(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield self(chunk)
