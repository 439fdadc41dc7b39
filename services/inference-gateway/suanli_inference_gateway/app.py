"""`create_app(settings, deps)`: the FastAPI application, from collaborators built elsewhere."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from suanli_inference_gateway import health
from suanli_inference_gateway.dependencies import GatewayDeps
from suanli_inference_gateway.errors import install_error_handlers
from suanli_inference_gateway.metrics import instrument_http
from suanli_inference_gateway.openai.files.router import router as files_router
from suanli_inference_gateway.openai.fine_tuning.router import router as fine_tuning_router
from suanli_inference_gateway.openai.inference import edge
from suanli_inference_gateway.openai.inference.router import router as inference_router
from suanli_inference_gateway.openai.vector_stores.router import router as vector_stores_router
from suanli_inference_gateway.platform.api_keys.router import router as api_keys_router
from suanli_inference_gateway.platform.auth.router import router as auth_router
from suanli_inference_gateway.platform.billing.router import router as billing_router
from suanli_inference_gateway.platform.deployments.router import router as deployments_router
from suanli_inference_gateway.platform.evaluations.router import router as evaluations_router
from suanli_inference_gateway.platform.gpus.router import router as gpus_router
from suanli_inference_gateway.platform.instances.proxy import router as instance_proxy_router
from suanli_inference_gateway.platform.instances.router import router as instances_router
from suanli_inference_gateway.platform.jobs.router import router as jobs_router
from suanli_inference_gateway.platform.knowledge_bases.router import router as knowledge_bases_router
from suanli_inference_gateway.platform.models.router import router as models_router
from suanli_inference_gateway.platform.quotas.router import router as quotas_router
from suanli_inference_gateway.platform.usage.router import router as usage_router
from suanli_inference_gateway.settings import GatewaySettings

PLATFORM_PREFIX = "/api/v1"
OPENAI_PREFIX = "/v1"
API_PATHS = (f"{PLATFORM_PREFIX}/", f"{OPENAI_PREFIX}/")


def platform_router() -> APIRouter:
    router = APIRouter(prefix=PLATFORM_PREFIX)
    router.include_router(auth_router)
    router.include_router(api_keys_router)
    router.include_router(jobs_router)
    router.include_router(gpus_router)
    router.include_router(models_router)
    router.include_router(evaluations_router)
    router.include_router(deployments_router)
    router.include_router(knowledge_bases_router)
    router.include_router(usage_router)
    router.include_router(billing_router)
    router.include_router(quotas_router)
    router.include_router(instances_router)
    return router


def openai_router() -> APIRouter:
    # The OpenAI surfaces (models, chat, files, fine_tuning, vector_stores) are included here.
    router = APIRouter(prefix=OPENAI_PREFIX)
    router.include_router(files_router)
    router.include_router(fine_tuning_router)
    router.include_router(inference_router)
    router.include_router(vector_stores_router)
    return router


def console_app(files: StaticFiles) -> ASGIApp:
    """Serves the console's files for any path the API does not own."""

    async def console(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(API_PATHS) or path in (PLATFORM_PREFIX, OPENAI_PREFIX):
            raise HTTPException(status_code=404)
        await files(scope, receive, send)

    return console


class GatewayApp(FastAPI):
    """FastAPI, with the inference routes' POSTs served by the inference edge before any of the
    framework's middleware (see `openai/inference/edge.py` for why)."""

    inference_edge: edge.InferenceEdge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inference_edge is not None and edge.handles(scope):
            scope["app"] = self
            await self.inference_edge(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: GatewaySettings, deps: GatewayDeps, metrics: CollectorRegistry | None = None
) -> FastAPI:
    """The app; its /metrics serves `metrics` (the process's registry, which the bus and the
    usage counter record into too), or a registry of its own."""
    app = GatewayApp(
        title="Suanli API",
        version="1",
        description="Suanli's platform API. The OpenAI-compatible API lives under /v1.",
        openapi_url=f"{PLATFORM_PREFIX}/openapi.json",
        docs_url=f"{PLATFORM_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.deps = deps
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(platform_router())
    app.include_router(openai_router())
    app.include_router(instance_proxy_router)  # /instances/{id}/: each instance's own server
    if settings.web_dir is not None and settings.web_dir.is_dir():
        # The console is the router's fallback rather than a mount at "/": a mount matches
        # every path fully and would answer a wrong method on an API route with its own 405.
        app.router.default = console_app(StaticFiles(directory=settings.web_dir, html=True))
    http_metrics = instrument_http(app, metrics if metrics is not None else CollectorRegistry())
    app.inference_edge = edge.InferenceEdge(lambda: app.state.deps, http_metrics)
    # No spans per ASGI send/receive: they double a request's tracing cost and say nothing the
    # request span does not.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )
    return app
