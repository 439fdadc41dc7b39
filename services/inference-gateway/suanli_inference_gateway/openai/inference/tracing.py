"""One client span per inference call into a replica, named and annotated by the OpenTelemetry
GenAI semantic conventions (`chat smollm2-135m-instruct`, `gen_ai.usage.output_tokens`, ...).

A streamed answer outlives the route handler, so the span is opened by hand and ended when the
relay meters the stream, not when the handler returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import Span, SpanKind, StatusCode

from suanli_inference_gateway.clients.deployments import Deployment
from suanli_inference_gateway.openai.inference.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from suanli_inference_gateway.openai.inference.upstream import TokenUsage

_tracer = trace.get_tracer("suanli.gateway.inference")

# The convention's operation names, by our endpoint names.
OPERATIONS = {"chat.completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}
PROVIDER = "vllm"  # the engine behind every replica


class InferenceSpan:
    def __init__(
        self,
        body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest,
        endpoint: str,
        deployment: Deployment,
    ) -> None:
        operation = OPERATIONS.get(endpoint, endpoint)
        attributes: dict[str, str | int | float | bool] = {
            gen_ai.GEN_AI_OPERATION_NAME: operation,
            gen_ai.GEN_AI_PROVIDER_NAME: PROVIDER,
            gen_ai.GEN_AI_REQUEST_MODEL: body.model,
            "suanli.deployment.id": deployment.id,
        }
        if not isinstance(body, EmbeddingRequest):
            sampling = {
                gen_ai.GEN_AI_REQUEST_STREAM: body.stream,
                gen_ai.GEN_AI_REQUEST_MAX_TOKENS: body.max_tokens,
                gen_ai.GEN_AI_REQUEST_TEMPERATURE: body.temperature,
                gen_ai.GEN_AI_REQUEST_TOP_P: body.top_p,
                gen_ai.GEN_AI_REQUEST_SEED: body.seed,
                gen_ai.GEN_AI_REQUEST_CHOICE_COUNT: body.n,
            }
            attributes.update({k: v for k, v in sampling.items() if v is not None})
        self._span: Span = _tracer.start_span(
            f"{operation} {body.model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self._ended = False

    @contextmanager
    def current(self) -> Iterator[None]:
        """The block (the call into the replica) runs in this span, so its headers carry it."""
        token = otel_context.attach(trace.set_span_in_context(self._span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def finish(self, usage: TokenUsage, completed: bool = True) -> None:
        if self._ended:
            return
        self._span.set_attributes(
            {
                gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage.prompt_tokens,
                gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage.completion_tokens,
            }
        )
        if not completed:
            self._span.set_attribute("suanli.client_disconnected", True)
        self._end()

    def fail(self, error: BaseException) -> None:
        if self._ended:
            return
        self._span.set_attribute("error.type", type(error).__name__)
        self._span.set_status(StatusCode.ERROR, str(error)[:500])
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._span.end()
