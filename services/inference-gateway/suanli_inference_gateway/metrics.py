"""The gateway's Prometheus metrics, served at GET /metrics on its HTTP port: requests and their
latency by route template (prometheus-fastapi-instrumentator finds the template), and the tokens
of answered inference requests by model."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

METRICS_PATH = "/metrics"
# Inference requests (a long generation, a stream) take minutes; the default buckets stop at 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Any other method (a client may send anything) is counted as "other", to keep the label bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class TokenMetrics:
    tokens: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> TokenMetrics:
        return cls(
            Counter(
                "suanli_tokens_total",
                "Tokens of answered inference requests, by model and direction (input: prompt, "
                "output: completion)",
                ["model", "direction"],
                registry=registry,
            )
        )

    def count(self, model: str, input_tokens: int, output_tokens: int) -> None:
        self.tokens.labels(model=model, direction="input").inc(max(input_tokens, 0))
        self.tokens.labels(model=model, direction="output").inc(max(output_tokens, 0))


@dataclass(frozen=True, slots=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> HttpMetrics:
        return cls(
            Counter(
                "suanli_http_requests_total",
                "HTTP requests answered, by method, route template and status code",
                ["method", "route", "status"],
                registry=registry,
            ),
            Histogram(
                "suanli_http_request_duration_seconds",
                "Time from a request's arrival to the end of its response body (a whole stream), by route",
                ["method", "route"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )

    def observe(self, method: str, route: str, status: str, duration_s: float) -> None:
        method = method if method in KNOWN_METHODS else "other"
        self.requests.labels(method, route, status).inc()
        self.duration.labels(method, route).observe(duration_s)


def instrument_http(app: FastAPI, registry: CollectorRegistry) -> HttpMetrics:
    """Counts and times every request by method, route template and status, and serves the registry
    at /metrics (not counted itself, and kept out of the OpenAPI document). Paths no route owns (the
    console's files, unknown paths) share the route "none". Routes served outside the framework's
    middleware (the inference edge) record into the returned metrics themselves."""
    metrics = HttpMetrics.register(registry)

    def record(info: Info) -> None:
        metrics.observe(info.method, info.modified_handler, info.modified_status, info.modified_duration)

    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,
        excluded_handlers=[f"^{METRICS_PATH}$"],
        registry=registry,
    )
    instrumentator.add(record).instrument(app)
    instrumentator.expose(app, endpoint=METRICS_PATH, include_in_schema=False)
    return metrics
