"""Queries against the catalog's tables, inside the caller's unit of work (an `AsyncSession`)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_catalog.domain import (
    DatasetStats,
    FilePurpose,
    Model,
    ModelKind,
    ModelState,
    StoredFile,
    Visibility,
)
from suanli_catalog.models import FileRow, ModelRow


def model_from_row(row: ModelRow) -> Model:
    return Model(
        id=row.id,
        owner_id=row.owner_id,
        kind=ModelKind(row.kind),
        state=ModelState(row.state),
        visibility=Visibility(row.visibility),
        source=row.source,
        path=row.path,
        architecture=row.architecture,
        parameter_count=row.parameter_count,
        context_length=row.context_length,
        chat_template=row.chat_template,
        base_model_id=row.base_model_id,
        size_bytes=row.size_bytes,
        is_default=row.is_default,
        error=row.error,
        created_at=row.created_at,
    )


def file_from_row(row: FileRow) -> StoredFile:
    dataset = (
        DatasetStats(row.dataset_format, row.examples, row.tokens, row.tokenizer)
        if row.dataset_format
        else None
    )
    return StoredFile(
        id=row.id,
        owner_id=row.owner_id,
        filename=row.filename,
        purpose=FilePurpose(row.purpose),
        bytes=row.bytes,
        storage_key=row.storage_key,
        status=row.status,
        status_details=row.status_details,
        dataset=dataset,
        created_at=row.created_at,
    )


class ModelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_row(self, model_id: str) -> ModelRow | None:
        return await self._session.get(ModelRow, model_id)

    async def add(self, row: ModelRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def by_source(self, source: str) -> ModelRow | None:
        row: ModelRow | None = await self._session.scalar(
            select(ModelRow).where(ModelRow.source == source).limit(1)
        )
        return row

    async def visible_to(self, caller_id: str) -> list[ModelRow]:
        """Public models and the caller's own, the default model first, then by id."""
        query = select(ModelRow).where(
            or_(ModelRow.visibility == Visibility.public.value, ModelRow.owner_id == caller_id)
            if caller_id
            else ModelRow.visibility == Visibility.public.value
        )
        rows = (await self._session.scalars(query.order_by(ModelRow.is_default.desc(), ModelRow.id))).all()
        return list(rows)

    async def default_model(self) -> ModelRow | None:
        row: ModelRow | None = await self._session.scalar(
            select(ModelRow).where(ModelRow.is_default.is_(True)).limit(1)
        )
        return row

    async def delete(self, row: ModelRow) -> None:
        await self._session.delete(row)


class FileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: FileRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def owned(self, owner_id: str, file_id: str) -> FileRow | None:
        """The file when `owner_id` owns it; None otherwise, so another's file looks absent."""
        row = await self._session.get(FileRow, file_id)
        return row if row is not None and row.owner_id == owner_id else None

    async def list_owned(self, owner_id: str, purpose: str = "") -> list[FileRow]:
        query = select(FileRow).where(FileRow.owner_id == owner_id)
        if purpose:
            query = query.where(FileRow.purpose == purpose)
        return list((await self._session.scalars(query.order_by(FileRow.created_at.desc()))).all())

    async def delete(self, row: FileRow) -> None:
        await self._session.delete(row)
