"""Fail fast, before anything starts, when a port the platform needs is taken."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class PortClaim:
    port: int
    purpose: str
    env_var: str


class PortInUseError(RuntimeError):
    def __init__(self, claim: PortClaim) -> None:
        super().__init__(
            f"port {claim.port} ({claim.purpose}) is already in use; "
            f"stop what holds it or set {claim.env_var} to another port"
        )
        self.claim = claim


def ensure_ports_free(claims: list[PortClaim], host: str = "127.0.0.1") -> None:
    for claim in claims:
        if not port_is_free(claim.port, host):
            raise PortInUseError(claim)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    # SO_REUSEADDR like the servers themselves: connections of a previous run still in TIME_WAIT
    # do not stop them from binding, so they must not stop us either; a listener does.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True
