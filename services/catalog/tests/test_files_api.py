"""OpenAI files over the real gRPC API: streamed uploads under a size limit, validation on the
way in, owner isolation, streamed content, no orphan blobs, dataset.validated on NATS."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname, urlopen

import pytest

from suanli_catalog.events import DATASET_VALIDATED
from suanli_common.errors import InvalidRequest, NotFound, PayloadTooLarge
from suanli_common.proto.suanli.v1 import catalog_pb2, events_pb2

ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def dataset(n: int) -> bytes:
    return b"".join(json.dumps(ROW).encode() + b"\n" for _ in range(n))


async def test_upload_validates_stores_and_streams_back(
    catalog: Any, upload_file: Any, join_stream: Any, catch_events: Any
) -> None:
    data = dataset(500)
    async with catch_events(catalog.nats_url, DATASET_VALIDATED) as events:
        file = await upload_file(catalog.stub, data, chunk_size=1000)
        envelope = events_pb2.EventEnvelope.FromString(await events.next())
    assert file.id.startswith("file-") and file.status == "processed"
    assert (file.bytes, file.purpose, file.filename) == (len(data), "fine-tune", "train.jsonl")
    assert file.validation.format == "openai_messages" and file.validation.examples == 500
    assert file.validation.tokens > 0 and file.validation.tokenizer == "bytes/4"
    payload = events_pb2.DatasetValidated()
    assert envelope.type == DATASET_VALIDATED and envelope.data.Unpack(payload)
    assert (payload.file_id, payload.owner_id, payload.examples) == (file.id, "user_alice", 500)

    request = catalog_pb2.ReadFileContentRequest(caller_id="user_alice", file_id=file.id)
    assert await join_stream(catalog.stub.ReadFileContent(request)) == data
    got = await catalog.stub.GetFile(catalog_pb2.GetFileRequest(caller_id="user_alice", file_id=file.id))
    assert got.validation.examples == 500
    listed = await catalog.stub.ListFiles(catalog_pb2.ListFilesRequest(caller_id="user_alice"))
    assert [f.id for f in listed.files] == [file.id]

    await catalog.stub.DeleteFile(catalog_pb2.DeleteFileRequest(caller_id="user_alice", file_id=file.id))
    assert catalog.blobs() == []
    with pytest.raises(NotFound):
        await catalog.stub.GetFile(catalog_pb2.GetFileRequest(caller_id="user_alice", file_id=file.id))


async def test_another_user_cannot_see_a_file(catalog: Any, upload_file: Any, join_stream: Any) -> None:
    file = await upload_file(catalog.stub, b"some document text", purpose="assistants", filename="doc.txt")
    assert file.status == "processed" and not file.HasField("validation")
    with pytest.raises(NotFound):
        await catalog.stub.GetFile(catalog_pb2.GetFileRequest(caller_id="user_bob", file_id=file.id))
    with pytest.raises(NotFound):
        await join_stream(
            catalog.stub.ReadFileContent(
                catalog_pb2.ReadFileContentRequest(caller_id="user_bob", file_id=file.id)
            )
        )
    with pytest.raises(NotFound):
        await catalog.stub.DeleteFile(catalog_pb2.DeleteFileRequest(caller_id="user_bob", file_id=file.id))
    listed = await catalog.stub.ListFiles(catalog_pb2.ListFilesRequest(caller_id="user_bob"))
    assert list(listed.files) == []
    assert len(catalog.blobs()) == 1


async def test_upload_over_the_limit_is_refused_and_leaves_nothing(
    start_catalog: Any, upload_file: Any
) -> None:
    catalog = await start_catalog(max_upload_bytes=10_000)
    with pytest.raises(PayloadTooLarge) as refused:
        await upload_file(catalog.stub, dataset(200))
    assert "10000 bytes" in refused.value.message and refused.value.code == "file_too_large"
    assert catalog.blobs() == []
    ok = await upload_file(catalog.stub, dataset(10))
    assert ok.status == "processed"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "line"),  # replaced below: empty file has no line
        (dataset(2) + b'{"messages": [\xff]}\n', "line 3: not valid UTF-8"),
        (dataset(3) + b"{not json\n", "line 4: invalid JSON"),
        (dataset(1) + b'{"instruction": "x"}\n', "line 2"),
        (
            json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode(),
            "line 1: no assistant message",
        ),
    ],
)
async def test_bad_fine_tune_files_are_refused_without_orphans(
    catalog: Any, upload_file: Any, data: bytes, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await upload_file(catalog.stub, data)
    message = refused.value.message
    assert ("the file is empty" in message) if not data else (fragment in message), message
    assert catalog.blobs() == []
    listed = await catalog.stub.ListFiles(catalog_pb2.ListFilesRequest(caller_id="user_alice"))
    assert list(listed.files) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.jsonl", "..\\x.jsonl", "..", "", "bad\x00name"])
async def test_path_traversal_file_names_are_refused(catalog: Any, upload_file: Any, name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await upload_file(catalog.stub, dataset(1), filename=name)
    assert refused.value.code == "invalid_filename"
    assert catalog.blobs() == []


async def test_bad_purpose_and_missing_metadata_are_refused(catalog: Any, upload_file: Any) -> None:
    with pytest.raises(InvalidRequest, match="purpose"):
        await upload_file(catalog.stub, dataset(1), purpose="batch")

    async def no_metadata() -> Any:
        yield catalog_pb2.UploadFileChunk(data=b"x")

    with pytest.raises(InvalidRequest, match="metadata"):
        await catalog.stub.UploadFile(no_metadata())


async def test_artifact_url_of_a_file_on_the_local_store(catalog: Any, upload_file: Any) -> None:
    data = dataset(20)
    file = await upload_file(catalog.stub, data)
    before = datetime.now(UTC)
    answer = await catalog.stub.GetArtifactUrl(
        catalog_pb2.GetArtifactUrlRequest(caller_id="user_alice", artifact_id=file.id)
    )
    assert answer.url.startswith("file://")
    path = Path(url2pathname(urlparse(answer.url).path))
    assert await asyncio.to_thread(path.read_bytes) == data and path.is_relative_to(catalog.artifacts)
    expires = answer.expires_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(hours=23) < expires <= datetime.now(UTC) + timedelta(hours=24)
    for caller, artifact in (("user_bob", file.id), ("user_alice", "file-unknown"), ("", file.id)):
        with pytest.raises(NotFound):
            await catalog.stub.GetArtifactUrl(
                catalog_pb2.GetArtifactUrlRequest(caller_id=caller, artifact_id=artifact)
            )


async def test_artifact_url_of_a_file_on_s3_is_presigned(
    start_catalog: Any, upload_file: Any, s3_endpoint: str
) -> None:
    catalog = await start_catalog(
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_bucket="suanli-test",
        artifact_url_ttl_s=600,
    )
    data = dataset(20)
    file = await upload_file(catalog.stub, data)
    answer = await catalog.stub.GetArtifactUrl(
        catalog_pb2.GetArtifactUrlRequest(caller_id="user_alice", artifact_id=file.id)
    )
    assert answer.url.startswith(s3_endpoint) and "Signature=" in answer.url
    assert answer.expires_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC) + timedelta(seconds=600)
    # Readable without credentials, by whoever holds the URL (a job staging its inputs).
    fetched = await asyncio.to_thread(lambda: urlopen(answer.url, timeout=10).read())
    assert fetched == data
    with pytest.raises(NotFound):
        await catalog.stub.GetArtifactUrl(
            catalog_pb2.GetArtifactUrlRequest(caller_id="user_bob", artifact_id=file.id)
        )
