"""One way to run a service process: logging, telemetry, then the service's main coroutine until
SIGTERM or SIGINT, when it is cancelled so its `finally` blocks close servers and connections."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from suanli_common.logging import configure_logging, get_logger
from suanli_common.settings import ServiceSettings
from suanli_common.telemetry import setup_telemetry


def run_service(settings: ServiceSettings, main: Callable[[], Awaitable[None]]) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    provider = setup_telemetry(settings.service_name)
    log = get_logger("suanli.process")

    async def runner() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    log.info("starting", pid=__import__("os").getpid())
    try:
        asyncio.run(runner())
    finally:
        provider.shutdown()  # flushes the spans still queued for export
        log.info("stopped")
