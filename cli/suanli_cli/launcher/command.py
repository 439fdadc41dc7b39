"""The `suanli up` command: reads settings, runs the platform in the foreground."""

from __future__ import annotations

import asyncio
import os

import typer

from suanli_cli.launcher.console import PrefixedConsole
from suanli_cli.launcher.ports import PortInUseError
from suanli_cli.launcher.settings import LauncherSettings
from suanli_cli.launcher.up import run_platform


def up() -> None:
    """Start NATS and every service in the foreground; Ctrl-C stops them all.

    All state lives under SUANLI_HOME (default ./var); a second run resumes with the same data.
    Ports: SUANLI_HTTP_PORT (8080), SUANLI_NATS_PORT (14222), SUANLI_AUTH_GRPC_PORT (50051);
    SUANLI_NATS_URL uses an external NATS instead of starting one.
    """
    settings = LauncherSettings()
    console = PrefixedConsole()
    try:
        code = asyncio.run(run_platform(settings, console, dict(os.environ)))
    except PortInUseError as exc:
        console.error(f"suanli up: {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)
