"""Wire models of /v1/vector_stores, in OpenAI's shapes. A vector store is a knowledge base; the
platform's own choices (the chat model answers come from, the embedding model) ride as extra
fields, which OpenAI's client sends with `extra_body`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from suanli_inference_gateway.clients.rag import Document, DocumentBatch, FileCounts, KnowledgeBase, Passage
from suanli_inference_gateway.platform.protocol import RequestModel, unix_seconds

Attributes = dict[str, str | int | float | bool]


class StaticChunking(RequestModel):
    # The rag service holds the limits (they follow from the embedding model) and names them.
    max_chunk_size_tokens: int = Field(ge=1, description="Tokens per chunk (16-224)")
    chunk_overlap_tokens: int = Field(ge=0, description="Tokens shared by neighbouring chunks (<= half)")


class ChunkingStrategy(RequestModel):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static(self) -> ChunkingStrategy:
        if self.type == "static" and self.static is None:
            raise ValueError("a static chunking strategy needs 'static'")
        return self


class VectorStoreCreate(RequestModel):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: None = Field(None, description="Not supported: vector stores do not expire")
    model: str | None = Field(
        None, description="Suanli: the deployed chat model that answers questions (default: the seed model)"
    )
    embedding_model: str | None = Field(
        None, description="Suanli: 'all-minilm-l6-v2' (default, in-process) or a deployed embedding model"
    )


class FileCountsObject(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int

    @classmethod
    def of(cls, counts: FileCounts) -> FileCountsObject:
        return cls(
            in_progress=counts.in_progress,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            total=counts.total,
        )


class VectorStoreObject(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    description: str | None
    usage_bytes: int
    file_counts: FileCountsObject
    status: str
    expires_after: None = None
    expires_at: None = None
    last_active_at: int
    metadata: dict[str, str]
    model: str = Field(description="Suanli: the chat model of /api/v1/knowledge-bases/{id}/ask")
    embedding_model: str
    chunking_strategy: dict[str, Any]

    @classmethod
    def of(cls, kb: KnowledgeBase) -> VectorStoreObject:
        return cls(
            id=kb.id,
            created_at=unix_seconds(kb.created_at),
            name=kb.name,
            description=kb.description or None,
            usage_bytes=kb.usage_bytes,
            file_counts=FileCountsObject.of(kb.file_counts),
            status=kb.status,
            last_active_at=unix_seconds(kb.last_active_at),
            metadata=kb.metadata,
            model=kb.model,
            embedding_model=kb.embedding_model,
            chunking_strategy=static_chunking(kb.chunk_max_tokens, kb.chunk_overlap_tokens),
        )


def static_chunking(max_tokens: int, overlap_tokens: int) -> dict[str, Any]:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap_tokens},
    }


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: bool = True


class VectorStoreFileCreate(RequestModel):
    file_id: str = Field(min_length=1, max_length=64)
    attributes: Attributes | None = Field(None, max_length=16)
    chunking_strategy: ChunkingStrategy | None = Field(
        None, description="Only 'auto': chunking is set per vector store (re-index to change it)"
    )

    @model_validator(mode="after")
    def _per_store(self) -> VectorStoreFileCreate:
        if self.chunking_strategy is not None and self.chunking_strategy.type != "auto":
            raise ValueError(
                "chunking is set per vector store; use POST /api/v1/knowledge-bases/{id}/reindex"
            )
        return self


class BatchFile(RequestModel):
    file_id: str = Field(min_length=1, max_length=64)
    attributes: Attributes | None = Field(None, max_length=16)


class VectorStoreFileBatchCreate(RequestModel):
    file_ids: list[str] | None = Field(None, max_length=500)
    files: list[BatchFile] | None = Field(
        None, max_length=500, description="Files with attributes of their own"
    )
    attributes: Attributes | None = Field(None, max_length=16, description="For every file of `file_ids`")
    chunking_strategy: ChunkingStrategy | None = Field(None, description="Only 'auto': chunking is per store")

    @model_validator(mode="after")
    def _files(self) -> VectorStoreFileBatchCreate:
        if bool(self.file_ids) == bool(self.files):
            raise ValueError("give either file_ids or files")
        if self.chunking_strategy is not None and self.chunking_strategy.type != "auto":
            raise ValueError(
                "chunking is set per vector store; use POST /api/v1/knowledge-bases/{id}/reindex"
            )
        return self

    def pairs(self) -> list[tuple[str, dict[str, Any]]]:
        if self.files:
            return [(f.file_id, dict(f.attributes or {})) for f in self.files]
        return [(file_id, dict(self.attributes or {})) for file_id in self.file_ids or []]


class VectorStoreFileBatchObject(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: str
    file_counts: FileCountsObject

    @classmethod
    def of(cls, batch: DocumentBatch) -> VectorStoreFileBatchObject:
        return cls(
            id=batch.id,
            created_at=unix_seconds(batch.created_at),
            vector_store_id=batch.knowledge_base_id,
            status=batch.status,
            file_counts=FileCountsObject.of(batch.file_counts),
        )


class LastError(BaseModel):
    code: str
    message: str


class IndexingProgress(BaseModel):
    chunks: int = Field(description="Chunks embedded and stored so far")
    chunks_total: int = Field(description="Chunks of the document, once it is parsed (0 before)")


class VectorStoreFileObject(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int
    created_at: int
    vector_store_id: str
    status: str
    last_error: LastError | None
    attributes: dict[str, Any]
    filename: str
    progress: IndexingProgress = Field(description="Suanli: how far indexing got")

    @classmethod
    def of(cls, document: Document) -> VectorStoreFileObject:
        return cls(
            id=document.file_id,
            usage_bytes=document.bytes,
            created_at=unix_seconds(document.created_at),
            vector_store_id=document.knowledge_base_id,
            status=document.status,
            last_error=(
                LastError(code=document.error_code, message=document.error_message)
                if document.status == "failed"
                else None
            ),
            attributes=document.attributes,
            filename=document.filename,
            progress=IndexingProgress(chunks=document.chunks, chunks_total=document.chunks_total),
        )


class VectorStoreFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreFileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: bool = True


class RankingOptions(RequestModel):
    ranker: Literal["auto", "default-2024-11-15", "none"] | None = None
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)


class SearchRequest(RequestModel):
    query: str | list[str]
    max_num_results: int = Field(10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False

    @model_validator(mode="after")
    def _query(self) -> SearchRequest:
        if not self.queries:
            raise ValueError("query must not be empty")
        if self.rewrite_query:
            raise ValueError("rewrite_query is not supported")
        return self

    @property
    def queries(self) -> list[str]:
        return [q for q in ([self.query] if isinstance(self.query, str) else self.query) if q.strip()]


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    content: list[TextContent]
    chunk_index: int = Field(description="Suanli: the chunk's position in its document")
    heading_path: str = Field(description="Suanli: the headings above the chunk")
    page: int | None = Field(None, description="Suanli: the PDF page the chunk starts on")

    @classmethod
    def of(cls, passage: Passage) -> SearchResult:
        return cls(
            file_id=passage.file_id,
            filename=passage.filename,
            score=passage.score,
            attributes=passage.attributes,
            content=[TextContent(text=passage.text)],
            chunk_index=passage.chunk_index,
            heading_path=passage.heading_path,
            page=passage.page,
        )


class SearchResultsPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None
