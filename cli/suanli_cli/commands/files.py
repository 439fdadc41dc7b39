"""`suanli files`: datasets and documents (OpenAI's Files API); uploads stream from disk with a
progress bar of the bytes sent, never holding the file in memory."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

from suanli_cli.client import open_client
from suanli_cli.output import (
    JsonFlag,
    console,
    fields,
    human_bytes,
    note,
    print_json,
    table,
    when,
)

app = typer.Typer(help="Upload, list, inspect and delete files (datasets, documents).", no_args_is_help=True)

FileId = Annotated[str, typer.Argument(metavar="ID", help="The file's id (see `suanli files list`).")]
# Reading the upload is quick; the server then validates a dataset before it answers.
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=600.0)


class Purpose(StrEnum):
    fine_tune = "fine-tune"
    assistants = "assistants"


class ProgressReader:
    """A read-only file that advances a progress bar as httpx's multipart encoder reads it in
    chunks; it keeps `fileno` so httpx still learns the size and sends a Content-Length."""

    def __init__(self, file: BinaryIO, progress: Progress, task: TaskID) -> None:
        self._file = file
        self._progress = progress
        self._task = task

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._progress.update(self._task, completed=self._file.tell())
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self._progress.update(self._task, completed=position)
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def _show(file: dict[str, Any]) -> None:
    validation = file.get("validation") or {}
    rows: list[tuple[str, object]] = [
        ("id", file["id"]),
        ("filename", file["filename"]),
        ("purpose", file["purpose"]),
        ("bytes", f"{file['bytes']} ({human_bytes(file['bytes'])})"),
        ("status", file["status"]),
        ("details", file.get("status_details")),
        ("created", when(file["created_at"])),
    ]
    if validation:
        rows += [
            ("format", validation["format"]),
            ("examples", validation["examples"]),
            ("tokens", f"{validation['tokens']} (counted by {validation['tokenizer']})"),
        ]
    fields(rows)


UPLOAD_EXAMPLES = """Examples:

  suanli files upload train.jsonl
  suanli files upload handbook.pdf --purpose assistants
  suanli files upload train.jsonl --json | jq -r .id"""


@app.command("upload", epilog=UPLOAD_EXAMPLES)
def upload(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The file to upload: a JSONL dataset (OpenAI messages, alpaca, sharegpt) or a document.",
        ),
    ],
    purpose: Annotated[
        Purpose, typer.Option(help="fine-tune: a JSONL dataset (validated); assistants: a document for RAG.")
    ] = Purpose.fine_tune,
    json_output: JsonFlag = False,
) -> None:
    """Upload a file with a progress bar; a dataset is checked and its examples and tokens counted."""
    size = path.stat().st_size
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console(),
        disable=json_output,
    )
    with open_client() as client, path.open("rb") as raw, progress:
        task = progress.add_task(f"uploading {path.name}", total=size)
        reader = ProgressReader(raw, progress, task)
        stored = client.post(
            "/v1/files",
            files={"file": (path.name, reader, "application/octet-stream")},
            data={"purpose": purpose.value},
            timeout=UPLOAD_TIMEOUT,
        )
    if json_output:
        print_json(stored)
    else:
        _show(stored)


@app.command("list")
def list_files(
    purpose: Annotated[Purpose | None, typer.Option(help="Only files of this purpose. Default: all.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List your files, newest first."""
    params = {"purpose": purpose.value} if purpose else {}
    with open_client() as client:
        files = client.get("/v1/files", params=params)
    if json_output:
        print_json(files)
        return
    table(
        ["ID", "FILENAME", "PURPOSE", "SIZE", "STATUS", "CREATED"],
        (
            [
                f["id"],
                f["filename"],
                f["purpose"],
                human_bytes(f["bytes"]),
                f["status"],
                when(f["created_at"]),
            ]
            for f in files["data"]
        ),
    )


@app.command("show")
def show(file_id: FileId, json_output: JsonFlag = False) -> None:
    """Show one file and what the dataset check found (format, examples, tokens)."""
    with open_client() as client:
        file = client.get(f"/v1/files/{file_id}")
    if json_output:
        print_json(file)
    else:
        _show(file)


@app.command("delete")
def delete(file_id: FileId, json_output: JsonFlag = False) -> None:
    """Delete a file (fine-tunes and knowledge bases made from it keep what they took)."""
    with open_client() as client:
        deleted = client.delete(f"/v1/files/{file_id}")
    if json_output:
        print_json(deleted)
    else:
        note(f"deleted {deleted['id']}")
