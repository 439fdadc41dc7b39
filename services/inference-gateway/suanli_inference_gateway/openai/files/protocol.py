"""Wire models of /v1/files, in OpenAI's shapes; the dataset check rides in an extra field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.catalog import DatasetValidation, StoredFile
from suanli_inference_gateway.platform.protocol import unix_seconds

FilePurpose = Literal["fine-tune", "assistants"]


class ValidationObject(BaseModel):
    format: str = Field(description="openai_messages, alpaca or sharegpt")
    examples: int = Field(description="Training examples in the file")
    tokens: int = Field(description="Tokens of all examples")
    tokenizer: str = Field(description="The model whose tokenizer counted, or 'bytes/4' for an estimate")

    @classmethod
    def of(cls, validation: DatasetValidation) -> ValidationObject:
        return cls(
            format=validation.format,
            examples=validation.examples,
            tokens=validation.tokens,
            tokenizer=validation.tokenizer,
        )


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = Field(description="'processed' once stored (and, for fine-tune files, validated)")
    status_details: str | None = None
    validation: ValidationObject | None = Field(
        None, description="Suanli's extra: what the dataset check found (fine-tune files)"
    )

    @classmethod
    def of(cls, file: StoredFile) -> FileObject:
        return cls(
            id=file.id,
            bytes=file.bytes,
            created_at=unix_seconds(file.created_at),
            filename=file.filename,
            purpose=file.purpose,
            status=file.status,
            status_details=file.status_details or None,
            validation=ValidationObject.of(file.validation) if file.validation else None,
        )


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
