"""Artifact storage behind one Protocol: a local directory (embedded) or an S3-compatible store.

Keys are made by the catalog (`files/<owner>/<file id>`), never taken from a user. Writes take an
async stream of chunks and never hold a whole file; a write that fails midway leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from suanli_common.errors import NotFound

READ_CHUNK = 256 * 1024
S3_PART = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last


class ArtifactStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Stores the stream under `key`; returns its size. Nothing is left if the stream fails."""
        ...

    def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def url(self, key: str, expires_in: int = 3600) -> str:
        """Where a caller may read the artifact: a file:// path or a presigned URL."""
        ...


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad artifact key {key!r}")


class LocalStore:
    """Artifacts as files under one directory; written to a temporary name, renamed when whole."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self._root / key

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        handle: BinaryIO = await asyncio.to_thread(partial.open, "wb")
        size = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
            handle.close()
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        return size

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"artifact {key!r} not found") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def url(self, key: str, expires_in: int = 3600) -> str:
        return self._path(key).as_uri()


class S3Store:
    """Artifacts in an S3-compatible bucket (MinIO, Ceph, AWS) through boto3, run in threads.
    Uploads are multipart, so a stream of any size goes through in bounded memory; a failed
    stream aborts its multipart upload, leaving no object."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
            )
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        _check_key(key)
        return self._prefix + key

    async def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self._s3.head_bucket, Bucket=self._bucket)
        except ClientError:
            await asyncio.to_thread(self._s3.create_bucket, Bucket=self._bucket)

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        name = self._key(key)
        upload = await asyncio.to_thread(self._s3.create_multipart_upload, Bucket=self._bucket, Key=name)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        buffer = bytearray()
        size = 0

        async def send(data: bytes) -> None:
            number = len(parts) + 1
            answer = await asyncio.to_thread(
                self._s3.upload_part,
                Bucket=self._bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= S3_PART:
                    await send(bytes(buffer))
                    buffer.clear()
            if buffer or not parts:
                await send(bytes(buffer))
            await asyncio.to_thread(
                self._s3.complete_multipart_upload,
                Bucket=self._bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await asyncio.shield(
                asyncio.to_thread(
                    self._s3.abort_multipart_upload, Bucket=self._bucket, Key=name, UploadId=upload_id
                )
            )
            raise
        return size

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            answer = await asyncio.to_thread(self._s3.get_object, Bucket=self._bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"artifact {key!r} not found") from None
            raise
        body = answer["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._s3.delete_object, Bucket=self._bucket, Key=self._key(key))

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self._s3.head_object, Bucket=self._bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    async def url(self, key: str, expires_in: int = 3600) -> str:
        url: str = await asyncio.to_thread(
            self._s3.generate_presigned_url,
            "get_object",
            Params={"Bucket": self._bucket, "Key": self._key(key)},
            ExpiresIn=expires_in,
        )
        return url
