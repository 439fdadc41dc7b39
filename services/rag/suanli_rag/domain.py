"""What the rag service talks about: knowledge bases and their documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DocumentStatus(StrEnum):
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    id: str
    owner_id: str
    name: str
    description: str
    model: str
    embedding_model: str
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    metadata: dict[str, str]
    created_at: datetime
    last_active_at: datetime
    file_counts: FileCounts = field(default_factory=FileCounts)
    usage_bytes: int = 0

    @property
    def status(self) -> str:
        return "in_progress" if self.file_counts.in_progress else "completed"


@dataclass(frozen=True, slots=True)
class Document:
    knowledge_base_id: str
    file_id: str
    owner_id: str
    filename: str
    bytes: int
    status: DocumentStatus
    attempt_id: str
    error_code: str
    error_message: str
    chunks: int
    chunks_total: int
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewKnowledgeBase:
    name: str
    model: str
    embedding_model: str
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    metadata: dict[str, str]
    description: str = ""


@dataclass(frozen=True, slots=True)
class DocumentBatch:
    id: str
    knowledge_base_id: str
    created_at: datetime
    file_counts: FileCounts

    @property
    def status(self) -> str:
        return "in_progress" if self.file_counts.in_progress else "completed"
