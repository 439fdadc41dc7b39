"""OpenTelemetry set-up: one tracer provider per process, OTLP export when configured.

The SDK reads the standard variables itself (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_SCHEDULE_DELAY`), so operators
configure export and sampling the way they do for any OpenTelemetry service.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue


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


def current_traceparent() -> str:
    """The W3C traceparent of the current span, to store with work taken up later ("" outside a trace)."""
    return inject_trace_headers().get("traceparent", "")


@contextmanager
def traced_from(traceparent: str) -> Iterator[None]:
    """Runs the block inside the trace that `traceparent` names (one stored with work that is
    taken up later, by another process or after a restart); outside any trace when it is empty."""
    token = otel_context.attach(propagate.extract({"traceparent": traceparent} if traceparent else {}))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def untraced() -> Iterator[None]:
    """Runs the block under a parent that is not sampled, so the (parent-based) sampler records
    nothing inside it: for chatty work such as relaying every log line of a job, whose spans
    would bury the trace they belong to."""
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=1, span_id=1, is_remote=False, trace_flags=trace.TraceFlags(0))
    )
    token = otel_context.attach(trace.set_span_in_context(unsampled))
    try:
        yield
    finally:
        otel_context.detach(token)


def annotate(attributes: Mapping[str, AttributeValue | None]) -> None:
    """Adds attributes to the current span, leaving out the ones that are not known (None)."""
    trace.get_current_span().set_attributes({k: v for k, v in attributes.items() if v is not None})
