"""OpenTelemetry set-up: one tracer provider per process, OTLP export when configured.

The SDK reads the standard variables itself (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_SCHEDULE_DELAY`), so operators
configure export and sampling the way they do for any OpenTelemetry service.
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def setup_telemetry(service: str, *extra_processors: SpanProcessor) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": f"suanli-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def inject_trace_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """W3C traceparent/tracestate of the current span, for a message or request."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier
