"""Wire models of /api/v1/knowledge-bases."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.rag import Passage
from suanli_inference_gateway.platform.protocol import RequestModel


class AskRequest(RequestModel):
    question: str = Field(min_length=1, max_length=4000)
    model: str | None = Field(None, description="A deployed chat model; default: the knowledge base's")
    stream: bool = Field(False, description="Server-sent events: the citations first, then the answer")
    top_k: int = Field(5, ge=1, le=20, description="Passages retrieved and given to the model")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=8192)


class Citation(BaseModel):
    number: int = Field(description="The passage's number in the prompt: the answer cites it as [number]")
    document: str = Field(description="The file id of the document")
    filename: str
    chunk: int = Field(description="The chunk's position in its document")
    text: str
    score: float
    heading_path: str
    page: int | None
    cited: bool = Field(description="The answer refers to this passage by its number")

    @classmethod
    def of(cls, number: int, passage: Passage, answer: str) -> Citation:
        return cls(
            number=number,
            document=passage.file_id,
            filename=passage.filename,
            chunk=passage.chunk_index,
            text=passage.text,
            score=passage.score,
            heading_path=passage.heading_path,
            page=passage.page,
            cited=f"[{number}]" in answer,
        )


class AnswerUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskResponse(BaseModel):
    object: Literal["knowledge_base.answer"] = "knowledge_base.answer"
    knowledge_base_id: str
    answer: str
    found: bool = Field(description="False when no passage was relevant: the model was not asked")
    model: str | None
    citations: list[Citation]
    usage: AnswerUsage | None = None


class ReindexRequest(RequestModel):
    chunk_size: int = Field(ge=1, description="Tokens per chunk (16-224)")
    chunk_overlap: int = Field(ge=0, description="Tokens shared by neighbouring chunks (at most half)")
