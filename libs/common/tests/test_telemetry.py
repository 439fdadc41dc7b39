"""The trace helpers: a stored traceparent resumes its trace, `untraced` records nothing."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from suanli_common.telemetry import annotate, current_traceparent, traced_from, untraced

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def recording_tracer() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def test_a_stored_traceparent_resumes_its_trace() -> None:
    exporter, provider = recording_tracer()
    tracer = provider.get_tracer("test")
    with traced_from(f"00-{TRACE_ID}-00f067aa0ba902b7-01"), tracer.start_as_current_span("later") as span:
        annotate({"suanli.job.id": "job_1", "suanli.unknown": None})
        assert TRACE_ID in current_traceparent()
        assert current_traceparent().split("-")[2] == format(span.get_span_context().span_id, "016x")
    (finished,) = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == TRACE_ID
    assert finished.parent is not None and format(finished.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert dict(finished.attributes or {}) == {"suanli.job.id": "job_1"}


def test_no_traceparent_starts_a_new_trace_and_untraced_records_nothing() -> None:
    exporter, provider = recording_tracer()
    tracer = provider.get_tracer("test")
    with traced_from(""):
        assert current_traceparent() == ""
        with tracer.start_as_current_span("root"):
            with untraced(), tracer.start_as_current_span("a log line") as quiet:
                assert not quiet.is_recording()
            with tracer.start_as_current_span("after"):
                pass
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["after", "root"]
