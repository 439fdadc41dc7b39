"""A lean HTTP/1.1 client for the replicas' OpenAI apps: keep-alive connections per host, a request
written in one `write`, the response parsed by httptools (the C parser uvicorn serves with) and its
body handed over as the bytes arrive.

Why not httpx: on the hot path of every streamed token, httpx's layers (h11's pure-Python parser,
anyio streams, the pool's bookkeeping) cost more CPU than the rest of the gateway together (issue 6:
~5 ms per streamed 16-token chat). A replica is our own Ray Serve app speaking plain HTTP/1.1 on
loopback or the cluster network, so this needs no TLS, proxies, redirects, cookies or HTTP/2.

Closing a response before its end closes its connection: the replica sees the client gone and
aborts the generation (Ray Serve LLM does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools


class ReplicaUnreachable(ConnectionError):
    """The replica could not be reached, or its connection broke before the response ended."""


class ReplicaTimeout(ReplicaUnreachable):
    """The replica sent nothing for the read timeout."""


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    path: bytes  # with the query, as sent on the request line
    host_header: bytes


def _target_of(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the replica client speaks plain http only, not {url!r}")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.hostname, port, path.encode(), parts.netloc.encode())


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. The parser's callbacks move the response
    along: its head resolves `head`, body bytes go to `_chunks` and wake the reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout_s: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.answered = False  # some bytes of the current response came
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[int] | None = None
        self._chunks: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive from asyncio's.
        # asyncio and uvloop both set TCP_NODELAY on TCP sockets themselves.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ReplicaUnreachable(f"the replica's response is not valid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            self._fail(ReplicaUnreachable("the replica closed the connection") if exc is None else exc)

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_result(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._wake()
        if len(self._chunks) > 64 and not self._paused and self.transport is not None:
            self._paused = True  # the reader is behind: let TCP push back on the replica
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        # Asked now: once the message is over, the parser has reset and says False.
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        if self._head is not None and not self._head.done():
            self._head.set_result(self._parser.get_status_code())
        self._wake()

    # -- used by the pool and the response --------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReplicaTimeout("the replica sent nothing in time"))

    def _fail(self, error: BaseException) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: the sender may have given up on it already
        self._wake()

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._head = self._loop.create_future()
        self._chunks = []
        self._complete = False
        self._error = None
        self.answered = False
        self.transport.write(request)
        return self._head

    async def read(self) -> bytes:
        """The body bytes that arrived since the last read (all of them at once); b"" at the end."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = waiter = self._loop.create_future()
            # A timer per wait rather than asyncio.timeout: this runs for every chunk of a stream.
            timer = self._loop.call_later(self._read_timeout, self._time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        chunks, self._chunks = self._chunks, []
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class _Host:
    idle: list[_Connection] = field(default_factory=list)


class ReplicaResponse:
    """A response whose head has arrived; its body is read with `read()` or `aread()` and the
    response must be closed (`aclose`), which hands a finished connection back to the pool."""

    def __init__(self, pool: ReplicaPool, key: tuple[str, int], connection: _Connection, status: int) -> None:
        self._pool = pool
        self._key = key
        self._connection = connection
        self.status_code = status
        self._closed = False

    async def read(self) -> bytes:
        return await self._connection.read()

    async def aread(self) -> bytes:
        parts = []
        while chunk := await self._connection.read():
            parts.append(chunk)
        return b"".join(parts)

    def abort(self) -> None:
        """Closes the connection now (the client went away): the replica stops generating."""
        self._connection.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool._release(self._key, self._connection)


class ReplicaPool:
    """Keep-alive connections to the replicas, at most `max_connections` open at once (requests
    beyond wait). Idle connections older than `keepalive_s` are not reused: the replica's server
    closes its idle ones after a few seconds, and a request must not race that close."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive_s: float = 4.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 600.0,
    ) -> None:
        self._hosts: dict[tuple[str, int], _Host] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive = keepalive_s
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s

    async def request(self, url: str, body: bytes, headers: dict[str, str]) -> ReplicaResponse:
        """POSTs `body` to `url`; the response once its head is in. `ReplicaUnreachable` when the
        replica cannot be reached or drops the connection before answering."""
        target = _target_of(url)
        head = [b"POST ", target.path, b" HTTP/1.1\r\nhost: ", target.host_header, b"\r\n"]
        for name, value in headers.items():
            head += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
        request = b"".join(head)
        key = (target.host, target.port)
        await self._slots.acquire()
        try:
            connection = self._idle(key)
            if connection is not None:
                try:
                    return await self._send(key, connection, request)
                except ReplicaTimeout:
                    raise
                except ReplicaUnreachable:
                    if connection.answered:
                        raise
                    # The replica closed this kept-alive connection as we sent, unanswered: afresh.
            return await self._send(key, await self._connect(key), request)
        except BaseException:
            self._slots.release()
            raise

    def _idle(self, key: tuple[str, int]) -> _Connection | None:
        host = self._hosts.get(key)
        if host is None:
            return None
        fresh_after = time.monotonic() - self._keepalive
        while host.idle:
            connection = host.idle.pop()  # the most recently used: the least likely to be closed
            if not connection.closed and connection.idle_since > fresh_after:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._read_timeout), key[0], key[1]
                )
        except (OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"cannot connect to the replica at {key[0]}:{key[1]}: {exc}") from exc
        return connection

    async def _send(self, key: tuple[str, int], connection: _Connection, request: bytes) -> ReplicaResponse:
        head = connection.send(request)
        try:
            async with asyncio.timeout(self._read_timeout):
                status = await head
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError) and not isinstance(exc, ReplicaUnreachable):
                raise ReplicaTimeout("the replica did not answer in time") from exc
            if isinstance(exc, OSError) and not isinstance(exc, ReplicaUnreachable):
                raise ReplicaUnreachable(str(exc)) from exc
            raise
        return ReplicaResponse(self, key, connection, status)

    def _release(self, key: tuple[str, int], connection: _Connection) -> None:
        self._slots.release()
        if connection.reusable:
            connection.idle_since = time.monotonic()
            self._hosts.setdefault(key, _Host()).idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for host in self._hosts.values():
            for connection in host.idle:
                connection.close()
        self._hosts.clear()
