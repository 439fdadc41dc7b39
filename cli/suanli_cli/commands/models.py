"""`suanli models`: the model repository (base models, fine-tunes, adapters): list, show, register,
download."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from suanli_cli.client import ApiClient, open_client
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

app = typer.Typer(
    help="The model repository (base models, fine-tunes, adapters): list, inspect, register, download.",
    no_args_is_help=True,
)

ModelId = Annotated[str, typer.Argument(metavar="ID", help="The model's id (see `suanli models list`).")]
SOURCE_PREFIXES = ("path:", "hf:")
# A big model's tar streams for minutes: only a stall this long between chunks is an error.
DOWNLOAD_TIMEOUT_S = 300.0


class Visibility(StrEnum):
    public = "public"
    private = "private"


class ModelKind(StrEnum):
    base = "base"
    fine_tuned = "fine_tuned"
    adapter = "adapter"
    embedding = "embedding"


def model_path(model_id: str) -> str:
    # Model ids may hold '/' (org/name): the routes take the id as a path, each segment escaped.
    return "/api/v1/models/" + quote(model_id, safe="/")


def _parameters(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.0f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count) if count else "-"


def _show(model: dict[str, Any]) -> None:
    fields(
        [
            ("id", model["id"] + ("  (default)" if model.get("is_default") else "")),
            ("kind", model["kind"]),
            ("state", model["state"]),
            ("visibility", model["visibility"]),
            ("architecture", model["architecture"]),
            ("parameters", _parameters(model["parameter_count"])),
            ("context length", model["context_length"]),
            ("size", human_bytes(model["size_bytes"])),
            ("base model", model.get("base_model_id")),
            ("source", model["source"]),
            ("owner", model["owner"]),
            ("error", model.get("error")),
            ("created", when(model["created_at"])),
        ]
    )


@app.command("list")
def list_models(json_output: JsonFlag = False) -> None:
    """List the models you can use: the platform's and your own."""
    with open_client() as client:
        models = client.get("/api/v1/models")
    if json_output:
        print_json(models)
        return
    table(
        ["ID", "KIND", "STATE", "PARAMS", "SIZE", "VISIBILITY", "OWNER"],
        (
            [
                m["id"] + (" *" if m.get("is_default") else ""),
                m["kind"],
                m["state"],
                _parameters(m["parameter_count"]),
                human_bytes(m["size_bytes"]),
                m["visibility"],
                m["owner"],
            ]
            for m in models["data"]
        ),
    )


@app.command("show")
def show(model_id: ModelId, json_output: JsonFlag = False) -> None:
    """Show one model: its state, architecture, size and where it came from."""
    with open_client() as client:
        model = client.get(model_path(model_id))
    if json_output:
        print_json(model)
    else:
        _show(model)


def as_source(path_or_source: str) -> str:
    """'hf:org/name' and 'path:/dir' pass as they are; a local folder becomes its absolute path
    (the catalog reads it on its own machine, which is this one in embedded mode)."""
    if path_or_source.startswith(SOURCE_PREFIXES):
        return path_or_source
    return str(Path(path_or_source).expanduser().resolve())


@app.command("register")
def register(
    path_or_source: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_SOURCE",
            help="A model folder on the catalog's machine, 'path:/dir', or 'hf:org/name' from its HF cache.",
        ),
    ],
    model_id: Annotated[
        str | None,
        typer.Option("--id", help="The model's id (letters, digits, '._:/-'). Default: one is made."),
    ] = None,
    visibility: Annotated[
        Visibility, typer.Option(help="public: every user sees it; private: only you.")
    ] = Visibility.private,
    kind: Annotated[
        ModelKind, typer.Option(help="What it is: a base model, a fine-tune, a LoRA adapter or an embedder.")
    ] = ModelKind.base,
    base_model: Annotated[
        str | None,
        typer.Option("--base-model", help="The base model's id (adapters need one). Default: none."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Register a model from a local folder or Hugging Face cache (admins only)."""
    body: dict[str, Any] = {
        "source": as_source(path_or_source),
        "visibility": visibility.value,
        "kind": kind.value,
    }
    if model_id:
        body["id"] = model_id
    if base_model:
        body["base_model_id"] = base_model
    with open_client() as client:
        model = client.post("/api/v1/models", json=body, timeout=600.0)
    if json_output:
        print_json(model)
    else:
        _show(model)


def _filename(disposition: str | None, fallback: str) -> str:
    match = re.search(r'filename="?([^";]+)"?', disposition or "")
    name = Path(match.group(1)).name if match else ""
    return name or fallback


@app.command("download")
def download(
    model_id: ModelId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The file to write. Default: ID.tar (or the file's name) here."),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option("--path", help="Only this file of the model, relative to its folder. Default: all."),
    ] = None,
) -> None:
    """Download a model's folder as a tar (or one of its files), with a progress bar."""
    params = {"path": path} if path else {}
    with open_client() as client:
        # A tar is streamed without a Content-Length: the model's size is a near estimate of it.
        estimate = None if path else int(client.get(model_path(model_id))["size_bytes"]) or None
        _save(client, model_id, params, output, path, estimate)


def _save(
    client: ApiClient,
    model_id: str,
    params: dict[str, str],
    output: Path | None,
    path: str | None,
    estimate: int | None,
) -> None:
    with (
        client.stream(
            "GET", model_path(model_id) + "/download", params=params, timeout=DOWNLOAD_TIMEOUT_S
        ) as response,
    ):
        fallback = Path(path).name if path else f"{model_id.replace('/', '_')}.tar"
        target = output or Path(_filename(response.headers.get("content-disposition"), fallback))
        length = response.headers.get("content-length")
        total = int(length) if length else estimate
        partial = target.with_name(f".{target.name}.part")
        written = 0
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console(),
            transient=False,
        )
        try:
            with progress, partial.open("wb") as file:
                task = progress.add_task(f"{model_id}", total=total)
                for chunk in response.iter_bytes(1 << 20):
                    file.write(chunk)
                    written += len(chunk)
                    progress.update(task, completed=written)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    note(f"saved {target} ({human_bytes(written)})")
