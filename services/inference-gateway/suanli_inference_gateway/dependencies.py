"""The collaborators the gateway's routes use, built once at start-up (`main.py`, or a test) and
handed to `create_app`; routes reach them through `gateway_deps(request)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.clients.auth import AuthApi
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.job_logs import JobLogs
from suanli_inference_gateway.clients.scheduler import SchedulerApi
from suanli_inference_gateway.ratelimit import SignInLimiter

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


def gateway_deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps = request.app.state.deps
    return deps
