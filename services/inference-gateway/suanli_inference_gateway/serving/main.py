"""Wires the serving controller: Ray (local or joined), the scheduler's deployments over gRPC,
wake-ups on deployment.* events, and the seed deployment on first start."""

from __future__ import annotations

import asyncio
import contextlib

from suanli_common.bus import Event, declare_streams, make_broker, subscribe_events
from suanli_common.grpc import make_channel
from suanli_common.logging import get_logger
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import catalog_pb2_grpc, scheduler_pb2_grpc
from suanli_common.proto.suanli.v1.events_pb2 import DeploymentChanged
from suanli_inference_gateway.clients.catalog import CATALOG_SERVICE, CatalogClient
from suanli_inference_gateway.clients.deployments import IDEMPOTENT_METHODS, DeploymentsClient
from suanli_inference_gateway.clients.scheduler import SCHEDULER_SERVICE
from suanli_inference_gateway.serving.controller import ServingController
from suanli_inference_gateway.serving.ray_backend import RayServeBackend
from suanli_inference_gateway.serving.seed import deploy_seed_once
from suanli_inference_gateway.serving.settings import ServingSettings

log = get_logger(__name__)


async def serve(settings: ServingSettings) -> None:
    backend = RayServeBackend(settings)
    await asyncio.to_thread(backend.start)
    scheduler_channel = make_channel(
        settings.scheduler_address,
        timeout=settings.grpc_timeout_s,
        service=SCHEDULER_SERVICE,
        idempotent_methods=IDEMPOTENT_METHODS,
    )
    catalog_channel = make_channel(
        settings.catalog_address, timeout=settings.grpc_timeout_s, service=CATALOG_SERVICE
    )
    deployments = DeploymentsClient(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel))
    controller = ServingController(deployments, backend)
    broker = make_broker(settings.nats_url, service="serving")

    async def on_change(event: Event[DeploymentChanged]) -> None:
        controller.wake()

    subscribe_events(broker, "deployment.*", DeploymentChanged, on_change)
    tasks: list[asyncio.Task[None]] = []
    try:
        await broker.connect()
        await declare_streams(broker, settings.nats_stream_replicas)
        await broker.start()
        if settings.deploy_seed:
            catalog = CatalogClient(catalog_pb2_grpc.CatalogServiceStub(catalog_channel))
            tasks.append(asyncio.create_task(deploy_seed_once(catalog, deployments, settings)))
        await controller.run(settings.reconcile_interval_s)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await broker.stop()
        await scheduler_channel.close()
        await catalog_channel.close()
        await asyncio.to_thread(backend.stop)


def main() -> None:
    settings = ServingSettings()
    run_service(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
