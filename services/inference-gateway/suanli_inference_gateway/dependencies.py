"""The collaborators the gateway's routes use, built once at start-up (`main.py`, or a test) and
handed to `create_app`; routes reach them through `gateway_deps(request)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from suanli_common.errors import Unavailable
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.clients.auth import AuthApi
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.deployments import DeploymentsApi
from suanli_inference_gateway.clients.instances import InstancesApi
from suanli_inference_gateway.clients.job_logs import JobLogs
from suanli_inference_gateway.clients.job_metrics import JobMetrics
from suanli_inference_gateway.clients.rag import RagApi
from suanli_inference_gateway.clients.scheduler import SchedulerApi
from suanli_inference_gateway.ratelimit import SignInLimiter

if TYPE_CHECKING:
    from suanli_inference_gateway.openai.inference.service import Inference
    from suanli_inference_gateway.platform.instances.proxy import InstanceProxy

ReadyCheck = Callable[[], Awaitable[bool]]


@dataclass(slots=True)
class GatewayDeps:
    auth: AuthApi
    authenticator: Authenticator
    signin_limiter: SignInLimiter
    catalog: CatalogApi
    # name -> "is it up?"; /readyz runs them all ("nats", "auth", ...).
    ready_checks: Mapping[str, ReadyCheck] = field(default_factory=dict)
    # None where a gateway (a test) runs without the scheduler: its routes answer 503.
    scheduler: SchedulerApi | None = None
    job_logs: JobLogs | None = None
    job_metrics: JobMetrics | None = None
    deployments: DeploymentsApi | None = None
    inference: Inference | None = None
    rag: RagApi | None = None
    instances: InstancesApi | None = None
    instance_proxy: InstanceProxy | None = None  # serves /instances/{id}/


def gateway_deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps = request.app.state.deps
    return deps


def require_scheduler(request: Request) -> SchedulerApi:
    scheduler = gateway_deps(request).scheduler
    if scheduler is None:
        raise Unavailable("jobs are not available on this gateway")
    return scheduler


def require_job_logs(request: Request) -> JobLogs:
    logs = gateway_deps(request).job_logs
    if logs is None:
        raise Unavailable("job logs are not available on this gateway")
    return logs


def require_job_metrics(request: Request) -> JobMetrics:
    metrics = gateway_deps(request).job_metrics
    if metrics is None:
        raise Unavailable("job metrics are not available on this gateway")
    return metrics


def require_deployments(request: Request) -> DeploymentsApi:
    deployments = gateway_deps(request).deployments
    if deployments is None:
        raise Unavailable("deployments are not available on this gateway")
    return deployments


def require_rag(request: Request) -> RagApi:
    rag = gateway_deps(request).rag
    if rag is None:
        raise Unavailable("knowledge bases are not available on this gateway")
    return rag


def require_instances(request: Request) -> InstancesApi:
    instances = gateway_deps(request).instances
    if instances is None:
        raise Unavailable("instances are not available on this gateway")
    return instances
