"""The messages between an `mpi` job's launcher, its workers and its rsh agents: one JSON object
per line, output bytes in base64, and the handshake by which launcher and worker prove to each
other that they hold the same attempt's secret (so neither a stale attempt on the same port nor a
stranger on the network can join the job or make a worker run a command)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import sys
from typing import Any

TOKEN_ENV = "SUANLI_MPI_TOKEN"  # the attempt's lease id, given by the agent; never passed on to user code
LINE_LIMIT = 1 << 22  # a line carries at most one read of a process's output (64 KiB), in base64

Message = dict[str, Any]


class HandshakeError(Exception):
    """The peer did not prove it holds this attempt's secret, or spoke out of turn."""


async def send(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> Message | None:
    """The next message; None when the peer closed the connection (or sent garbage)."""
    try:
        line = await reader.readline()
    except (ConnectionError, ValueError):
        return None
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def output(session: int, stream: str, data: bytes) -> Message:
    return {"op": "output", "id": session, "stream": stream, "data": base64.b64encode(data).decode()}


def output_bytes(message: Message) -> bytes:
    return base64.b64decode(str(message.get("data", "")))


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(token: str, role: str, theirs: str, mine: str) -> str:
    """What `role` ("launcher" or "worker") sends to show it knows the token, bound to both nonces."""
    return hmac.new(token.encode(), f"{role}|{theirs}|{mine}".encode(), hashlib.sha256).hexdigest()


def proves(token: str, role: str, theirs: str, mine: str, claimed: object) -> bool:
    return isinstance(claimed, str) and hmac.compare_digest(proof(token, role, theirs, mine), claimed)


async def join_as_worker(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, node_rank: int, problem: str
) -> str:
    """Worker side of the handshake; returns the host name the launcher gave this node."""
    mine = new_nonce()
    await send(writer, {"op": "hello", "node_rank": node_rank, "nonce": mine})
    challenge = await receive(reader)
    if challenge is None or challenge.get("op") != "challenge":
        raise HandshakeError("the launcher closed the connection during the handshake")
    theirs = str(challenge.get("nonce", ""))
    if not theirs or not proves(token, "launcher", mine, theirs, challenge.get("proof")):
        raise HandshakeError("the process at the launcher's port does not hold this attempt's secret")
    await send(writer, {"op": "join", "proof": proof(token, "worker", theirs, mine), "problem": problem})
    if problem:
        return ""  # told the launcher why this node cannot take part: nothing more to wait for
    welcome = await receive(reader)
    if welcome is None or welcome.get("op") != "welcome":
        raise HandshakeError("the launcher refused this worker")
    return str(welcome.get("host", ""))


async def accept_worker(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str
) -> tuple[int, str]:
    """Launcher side of the handshake up to the worker's proof: (its node rank, its problem if any).
    The launcher sends the welcome once it has decided to take the worker."""
    hello = await receive(reader)
    if hello is None or hello.get("op") != "hello" or not isinstance(hello.get("node_rank"), int):
        raise HandshakeError("not a worker's hello")
    theirs = str(hello.get("nonce", ""))
    if not theirs:
        raise HandshakeError("a hello without a nonce")
    mine = new_nonce()
    await send(writer, {"op": "challenge", "nonce": mine, "proof": proof(token, "launcher", theirs, mine)})
    join = await receive(reader)
    if (
        join is None
        or join.get("op") != "join"
        or not proves(token, "worker", mine, theirs, join.get("proof"))
    ):
        raise HandshakeError("the worker does not hold this attempt's secret")
    return int(hello["node_rank"]), str(join.get("problem", ""))


def say(line: str) -> None:
    """A line of the job's log (stderr), from the launcher, worker or rsh agent themselves."""
    print(line, file=sys.stderr, flush=True)
