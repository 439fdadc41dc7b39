"""One way to run a service process: logging, telemetry, then the service's main coroutine until
SIGTERM or SIGINT, when it is cancelled so its `finally` blocks close servers and connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable

from structlog.stdlib import BoundLogger

from suanli_common.logging import configure_logging, get_logger
from suanli_common.settings import ServiceSettings
from suanli_common.telemetry import setup_telemetry

STOP_DEADLINE_S = 8.0
RECANCEL_AFTER_S = 3.0


async def _cancel_until_done(task: asyncio.Future[None], deadline_s: float, log: BoundLogger) -> None:
    """Cancels `task` again and again until it ends. On Python 3.11 `asyncio.wait_for` can swallow
    a cancellation (CPython gh-86296), and libraries we run on (nats-py's fetch) use it, so one
    cancel may leave a service hanging; past the deadline the process exits anyway."""
    started = time.monotonic()
    while not task.done():
        if time.monotonic() - started > deadline_s:
            log.error("did not stop in time; exiting", deadline_s=deadline_s)
            os._exit(1)
        task.cancel()
        # Long enough for the service's own clean-up (servers drain for ~2 s) to finish.
        await asyncio.wait({task}, timeout=RECANCEL_AFTER_S)


def run_service(settings: ServiceSettings, main: Callable[[], Awaitable[None]]) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    provider = setup_telemetry(settings.service_name)
    log = get_logger("suanli.process")

    async def runner() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def stop() -> None:
            if not stopping:
                stopping.append(loop.create_task(_cancel_until_done(task, STOP_DEADLINE_S, log)))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    log.info("starting", pid=os.getpid())
    try:
        asyncio.run(runner())
    finally:
        provider.shutdown()  # flushes the spans still queued for export
        log.info("stopped")
