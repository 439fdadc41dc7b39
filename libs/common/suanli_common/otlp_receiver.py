"""A real OTLP/gRPC trace receiver for tests: services export to it exactly as they would to
Jaeger or an OpenTelemetry collector, and tests read back the spans they sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Set as AbstractSet
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from suanli_common.testing import free_port


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={
                                a.key: a.value.string_value or a.value.int_value for a in span.attributes
                            },
                        )
                    )
        with self.lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._collector = _Collector()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self._collector, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(None)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._collector.lock:
            return list(self._collector.spans)

    def exporter_env(self) -> dict[str, str]:
        """What a service process needs to export here promptly."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        }

    def wait_for_trace(
        self,
        predicate: object,
        services: set[str],
        timeout: float = 20.0,
        *,
        names: AbstractSet[tuple[str, str]] = frozenset(),
        settle_s: float = 0.5,
    ) -> list[ReceivedSpan]:
        """The spans of the first trace that holds a span matching `predicate`, spans of every one
        of `services` and the (service, span name) pairs of `names`, once it is one tree (a parent
        ends after its children, so its export may come later) and has had no new span for
        `settle_s`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        seen_count, stable_since = -1, 0.0
        while time.monotonic() < deadline:
            spans = self.spans
            for root in (s for s in spans if predicate(s)):  # type: ignore[operator]
                in_trace = [s for s in spans if s.trace_id == root.trace_id]
                if not services <= {s.service for s in in_trace}:
                    continue
                if not names <= {(s.service, s.name) for s in in_trace} or not _one_tree(in_trace):
                    continue
                now = time.monotonic()
                if len(in_trace) != seen_count:
                    seen_count, stable_since = len(in_trace), now
                elif now - stable_since >= settle_s:
                    return in_trace
                break
            time.sleep(0.1)
        seen = sorted({(s.service, s.name) for s in self.spans})
        raise AssertionError(f"no whole trace with spans of {services} within {timeout}s; seen: {seen}")


def _one_tree(spans: list[ReceivedSpan]) -> bool:
    ids = {s.span_id for s in spans}
    return sum(1 for s in spans if not s.parent_span_id or s.parent_span_id not in ids) == 1
