"""Fine-tune datasets uploaded as LLaMA-Factory archives over the real gRPC API: a zip or tar(.gz)
holding dataset_info.json and the data file it names, validated with the declared formatting,
column and tag names; refused archives leave nothing behind."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from typing import Any

import pytest

from suanli_catalog.llamafactory import ShareGptRows
from suanli_catalog.validation import RowError
from suanli_common.errors import InvalidRequest, PayloadTooLarge
from suanli_common.proto.suanli.v1 import catalog_pb2

ALPACA_QA = {"q": "Add 1 and 2", "ctx": "", "a": "3", "sys": "Be brief"}
ALPACA_INFO = {
    "sums": {
        "file_name": "train.jsonl",
        "columns": {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"},
    }
}
CHAT = {
    "messages": [
        {"role": "system", "content": "Be kind"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
}
SHAREGPT_INFO = {
    "chat": {
        "file_name": "data/chat.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }
}


def jsonl(*rows: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def tarred(files: dict[str, bytes], mode: str = "w:gz", links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return out.getvalue()


def info(entries: dict[str, Any]) -> bytes:
    return json.dumps(entries, indent=2).encode()


async def assert_nothing_stored(catalog: Any) -> None:
    assert catalog.blobs() == []
    listed = await catalog.stub.ListFiles(catalog_pb2.ListFilesRequest(caller_id="user_alice"))
    assert list(listed.files) == []


async def test_zip_with_alpaca_under_custom_columns_is_processed(
    catalog: Any, upload_file: Any, join_stream: Any
) -> None:
    data = zipped(
        {
            "sums/dataset_info.json": info(ALPACA_INFO),  # zipped from a folder: one level down
            "sums/train.jsonl": jsonl(*[ALPACA_QA] * 40),
            "sums/README.md": b"not read",
        }
    )
    file = await upload_file(catalog.stub, data, filename="sums.zip", chunk_size=100)
    assert file.status == "processed" and file.bytes == len(data)
    assert (file.validation.format, file.validation.examples) == ("llamafactory:alpaca", 40)
    assert file.validation.tokens > 0 and file.validation.tokenizer == "bytes/4"
    request = catalog_pb2.ReadFileContentRequest(caller_id="user_alice", file_id=file.id)
    assert await join_stream(catalog.stub.ReadFileContent(request)) == data  # stored as uploaded


@pytest.mark.parametrize("mode", ["w:gz", "w"])
async def test_tar_with_sharegpt_under_custom_tags_is_processed(
    catalog: Any, upload_file: Any, mode: str
) -> None:
    data = tarred(
        {"./dataset_info.json": info(SHAREGPT_INFO), "./data/chat.json": json.dumps([CHAT] * 7).encode()},
        mode,
    )
    file = await upload_file(catalog.stub, data, filename="chat.tar.gz" if mode == "w:gz" else "chat.tar")
    assert file.status == "processed"
    assert (file.validation.format, file.validation.examples) == ("llamafactory:sharegpt", 7)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"train.jsonl": jsonl(ALPACA_QA)}, "holds no dataset_info.json"),
        (
            {"dataset_info.json": info(ALPACA_INFO)},
            "names the file 'train.jsonl', which is not in the archive",
        ),
        (
            {"dataset_info.json": info(ALPACA_INFO), "train.jsonl": b"", "../evil.jsonl": b"x"},
            "'../evil.jsonl' points outside the archive",
        ),
        (
            {"dataset_info.json": info({"d": {"file_name": "../train.jsonl"}}), "train.jsonl": b""},
            "outside the archive",
        ),
        (
            {
                "dataset_info.json": info({"d": {"file_name": "train.jsonl", "formatting": "openai"}}),
                "train.jsonl": jsonl(ALPACA_QA),
            },
            "unknown formatting 'openai': expected 'alpaca' or 'sharegpt'",
        ),
        (
            {"dataset_info.json": info({"d": {"hf_hub_url": "someone/data"}})},
            "points elsewhere (hf_hub_url)",
        ),
        (
            {"dataset_info.json": info({"d": {"file_name": "train.csv"}}), "train.csv": b"q,a\n"},
            "only .json and .jsonl data files are accepted",
        ),
        (
            {"dataset_info.json": b"{not json", "train.jsonl": jsonl(ALPACA_QA)},
            "dataset_info.json is not valid JSON",
        ),
        (
            {
                "dataset_info.json": info(ALPACA_INFO),
                "train.jsonl": jsonl(ALPACA_QA, ALPACA_QA, {"q": "no answer", "sys": "x"}),
            },
            "train.jsonl line 3: missing 'a' (the response column)",
        ),
    ],
)
async def test_bad_zip_archives_are_refused_without_orphans(
    catalog: Any, upload_file: Any, files: dict[str, bytes], fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await upload_file(catalog.stub, zipped(files), filename="data.zip")
    message = refused.value.message
    assert message.startswith("data.zip is not a valid fine-tune file") and fragment in message, message
    assert refused.value.code == "invalid_file"
    await assert_nothing_stored(catalog)


@pytest.mark.parametrize(
    ("files", "links", "fragment"),
    [
        (
            {"dataset_info.json": info(SHAREGPT_INFO), "data/chat.json": b"[]"},
            {"data/chat2.json": "/etc/passwd"},
            "'data/chat2.json' is a link",
        ),
        ({"/abs/dataset_info.json": info(SHAREGPT_INFO)}, {}, "points outside the archive"),
        (
            {
                "dataset_info.json": info(SHAREGPT_INFO),
                "data/chat.json": json.dumps(
                    [CHAT, {"messages": [{"role": "assistant", "content": "first"}]}], indent=2
                ).encode(),
            },
            {},
            "data/chat.json line 2: messages[0] has role 'assistant'; expected 'user' or 'observation'",
        ),
        (
            {"dataset_info.json": info(SHAREGPT_INFO), "data/chat.json": b'[\n{"messages": [}\n]'},
            {},
            "data/chat.json line 2: invalid JSON",
        ),
    ],
)
async def test_bad_tar_archives_are_refused_without_orphans(
    catalog: Any, upload_file: Any, files: dict[str, bytes], links: dict[str, str], fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await upload_file(catalog.stub, tarred(files, links=links), filename="data.tar.gz")
    assert fragment in refused.value.message, refused.value.message
    await assert_nothing_stored(catalog)


async def test_a_broken_archive_is_refused(catalog: Any, upload_file: Any) -> None:
    data = zipped({"dataset_info.json": info(ALPACA_INFO), "train.jsonl": jsonl(ALPACA_QA)})
    with pytest.raises(InvalidRequest, match="not a readable zip archive"):
        await upload_file(catalog.stub, data[: len(data) // 2], filename="cut.zip")
    await assert_nothing_stored(catalog)


async def test_archives_over_the_limit_are_refused(start_catalog: Any, upload_file: Any) -> None:
    catalog = await start_catalog(max_upload_bytes=20_000)
    rows = jsonl(*[ALPACA_QA] * 2000)  # ~100 kB that deflate to far less than the limit
    small = zipped({"dataset_info.json": info(ALPACA_INFO), "train.jsonl": rows})
    assert len(small) < 20_000 < len(rows)
    with pytest.raises(InvalidRequest, match=r"train\.jsonl unpacks to more than the limit of 20000 bytes"):
        await upload_file(catalog.stub, small, filename="bomb.zip")
    big = tarred({"dataset_info.json": info(ALPACA_INFO), "train.jsonl": rows}, mode="w")
    with pytest.raises(PayloadTooLarge):
        await upload_file(catalog.stub, big, filename="big.tar")
    await assert_nothing_stored(catalog)


def test_sharegpt_rows_follow_the_tags() -> None:
    rows = ShareGptRows("llamafactory:sharegpt", {}, {})  # LLaMA-Factory's defaults
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]
    fmt, texts = rows.check({"conversations": turns})
    assert (fmt, texts) == ("llamafactory:sharegpt", ["Hi", "Yo"])
    with pytest.raises(RowError, match="must end with an assistant turn"):
        rows.check({"conversations": [{"from": "human", "value": "Hi"}]})
    with pytest.raises(RowError, match=r"conversations\[1\].value must be a string"):
        rows.check({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": 1}]})
