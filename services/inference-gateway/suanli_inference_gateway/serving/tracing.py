"""Traces from inside Ray Serve: its proxy and replicas read the `traceparent` the gateway sends
and record their spans in the gateway's trace. Serve builds each process's tracer provider
itself and asks an "exporter" function (named by import path) for its span processors; this
module is that function, exporting over OTLP the way every Suanli service does.

Serve's proxy reads its tracing settings from the environment only (Ray 2.60 hands it no
`TracingConfig`), so the settings travel as Ray's environment variables, which every Ray process
started from this one inherits (on a Ray cluster of your own: set them on its pods)."""

from __future__ import annotations

import os

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

EXPORTER_IMPORT_PATH = f"{__name__}:otlp_span_processors"
# The resource name of Serve's processes (the proxy and the ingress) and of the vLLM replicas.
SERVE_SERVICE_NAME = "suanli-serve"
REPLICA_SERVICE_NAME = "suanli-replica"


def export_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def otlp_span_processors() -> list[SpanProcessor]:
    """Called by Serve in each of its processes (a custom exporter takes no arguments)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return [BatchSpanProcessor(OTLPSpanExporter())]


def serve_tracing_env() -> dict[str, str]:
    """Ray Serve's tracing variables: on when OTLP export is configured, else none. Serve samples by
    the parent (the gateway's decision, which follows `OTEL_TRACES_SAMPLER*`); its ratio applies
    only to requests that arrive without a trace."""
    if not export_configured():
        return {}
    return {
        "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": EXPORTER_IMPORT_PATH,
        "RAY_SERVE_TRACING_SAMPLING_RATIO": "1.0",
        # This process names its own spans explicitly, so the variable only names Serve's.
        "OTEL_SERVICE_NAME": SERVE_SERVICE_NAME,
    }
