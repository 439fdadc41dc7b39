"""Byte streams from a service, as HTTP downloads.

A gRPC server stream reports "not found" or "not ready" only when its first message is read;
by then a `StreamingResponse` would already have sent `200 OK`. So the first chunk is read
before the response starts: an error becomes a proper error object, and only a failure in
the middle of a transfer shows as a cut response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

from fastapi.responses import StreamingResponse


async def _chain(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first is not None:
            yield first
            async for chunk in rest:
                yield chunk
    finally:
        # Also when the client goes away: the service's stream is cancelled, not left running.
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def stream_response(
    chunks: AsyncIterator[bytes], media_type: str, headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """A response that starts only once the stream has produced its first chunk (or ended)."""
    try:
        first = await anext(chunks, None)
    except BaseException:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    return StreamingResponse(_chain(first, chunks), media_type=media_type, headers=dict(headers or {}))


def attachment(filename: str) -> str:
    """A Content-Disposition header naming the download, safe for any file name (RFC 6266: an
    ASCII fallback and the exact UTF-8 name)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
