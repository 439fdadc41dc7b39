"""What the inference routes need, built once per gateway (`main.py`, or a test)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from suanli_common.errors import Unavailable
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.openai.inference.limits import InferenceLimits
from suanli_inference_gateway.openai.inference.quota import TokenQuotaGate
from suanli_inference_gateway.openai.inference.routing import RoutingTable
from suanli_inference_gateway.openai.inference.upstream import Upstream
from suanli_inference_gateway.openai.inference.usage import UsageSink


@dataclass(slots=True)
class Inference:
    routes: RoutingTable
    upstream: Upstream
    limits: InferenceLimits
    usage: UsageSink
    # None: no daily token quota is checked (a gateway, or a test, without one).
    quota: TokenQuotaGate | None = None


def require_inference(request: Request) -> Inference:
    inference = gateway_deps(request).inference
    if inference is None:
        raise Unavailable("inference is not available on this gateway")
    return inference
