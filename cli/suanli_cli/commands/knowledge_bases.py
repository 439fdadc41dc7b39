"""`suanli kb`: knowledge bases (create, list, delete), their documents (add with live indexing
progress), search, and `ask`: an answer from the documents, streamed, with its citations."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID

from suanli_cli.client import ApiClient, ApiError, open_client
from suanli_cli.output import JsonFlag, console, note, print_json, table, when
from suanli_cli.sse import iter_sse

app = typer.Typer(
    help="Knowledge bases: documents, search, and answers with citations.", no_args_is_help=True
)

KnowledgeBaseId = Annotated[
    str, typer.Argument(metavar="KB", help="The knowledge base's id, vs_... (see `suanli kb list`).")
]
EXAMPLES = """Examples:

  suanli kb create handbook
  suanli kb add vs_abc123 handbook.pdf faq.md
  suanli kb ask vs_abc123 "How many days of leave do I get?"
"""
POLL_S = 0.5
UPLOAD_TIMEOUT_S = 600.0
ASK_READ_TIMEOUT_S = 300.0


@app.command("create", epilog=EXAMPLES)
def create(
    name: Annotated[str, typer.Argument(help="A name to recognise it by.")],
    model: Annotated[
        str | None,
        typer.Option(help="The deployed chat model that answers its questions. Default: the seed model."),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(min=16, max=224, help="Tokens per chunk of a document. Default: the server's choice."),
    ] = None,
    chunk_overlap: Annotated[
        int, typer.Option(min=0, help="Tokens neighbouring chunks share (with --chunk-size).")
    ] = 40,
    json_output: JsonFlag = False,
) -> None:
    """Create a knowledge base (an OpenAI vector store: the same id works in /v1/vector_stores)."""
    body: dict[str, Any] = {"name": name}
    if model:
        body["model"] = model
    if chunk_size:
        body["chunking_strategy"] = {
            "type": "static",
            "static": {"max_chunk_size_tokens": chunk_size, "chunk_overlap_tokens": chunk_overlap},
        }
    with open_client() as client:
        kb = client.post("/v1/vector_stores", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    if json_output:
        print_json(kb)
    else:
        note(f"knowledge base {kb['id']} ({kb['name']}), answers from {kb['model']}")


@app.command("list")
def list_knowledge_bases(json_output: JsonFlag = False) -> None:
    """List your knowledge bases, newest first."""
    with open_client() as client:
        listed = client.get("/v1/vector_stores")
    if json_output:
        print_json(listed)
        return
    table(
        ["ID", "NAME", "MODEL", "DOCUMENTS", "STATUS", "CREATED"],
        (
            [
                kb["id"],
                kb["name"],
                kb["model"],
                f"{kb['file_counts']['completed']}/{kb['file_counts']['total']}",
                kb["status"],
                when(kb.get("created_at")),
            ]
            for kb in listed["data"]
        ),
    )


@app.command("delete")
def delete(kb_id: KnowledgeBaseId, json_output: JsonFlag = False) -> None:
    """Delete a knowledge base and every chunk of its documents (the uploaded files stay)."""
    with open_client() as client:
        deleted = client.delete(f"/v1/vector_stores/{kb_id}")
    if json_output:
        print_json(deleted)
    else:
        note(f"knowledge base {kb_id} deleted")


def _follow(
    client: ApiClient, kb_id: str, files: dict[str, str], json_output: bool, timeout_s: float
) -> list[dict[str, Any]]:
    """Polls each document until it is indexed or failed, with a bar of its chunks."""
    deadline = time.monotonic() + timeout_s
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        console=console(),
        disable=json_output,
    )
    tasks: dict[str, TaskID] = {
        fid: progress.add_task(f"indexing {name}", total=None) for fid, name in files.items()
    }
    settled: dict[str, dict[str, Any]] = {}
    with progress:
        while len(settled) < len(files):
            if time.monotonic() > deadline:
                raise ApiError(f"still indexing after {timeout_s:g}s; `suanli kb list` shows how far it got")
            for file_id in files:
                if file_id in settled:
                    continue
                document = client.get(f"/v1/vector_stores/{kb_id}/files/{file_id}")
                indexed = document.get("progress") or {}
                progress.update(
                    tasks[file_id],
                    completed=indexed.get("chunks", 0),
                    total=indexed.get("chunks_total") or None,
                )
                if document["status"] != "in_progress":
                    settled[file_id] = document
            time.sleep(POLL_S)
    return list(settled.values())


@app.command("add", epilog=EXAMPLES)
def add(
    kb_id: KnowledgeBaseId,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Documents to add: PDF, DOCX, HTML, Markdown, text or CSV.",
        ),
    ],
    timeout: Annotated[float, typer.Option(help="How long to wait for the indexing, in seconds.")] = 1800.0,
    json_output: JsonFlag = False,
) -> None:
    """Upload documents and add them; waits while they are indexed. Exit 1 if any fails."""
    files: dict[str, str] = {}
    with open_client() as client:
        for path in paths:
            with path.open("rb") as raw:
                stored = client.post(
                    "/v1/files",
                    files={"file": (path.name, raw)},
                    data={"purpose": "assistants"},
                    timeout=UPLOAD_TIMEOUT_S,
                )
            client.post(f"/v1/vector_stores/{kb_id}/files", json={"file_id": stored["id"]})
            files[stored["id"]] = path.name
        documents = _follow(client, kb_id, files, json_output, timeout)
    if json_output:
        print_json(documents)
    failed = [d for d in documents if d["status"] == "failed"]
    for document in documents:
        if document["status"] == "completed" and not json_output:
            note(f"{document['filename']}: {document['progress']['chunks']} chunks")
    if failed:
        raise ApiError(
            "; ".join(
                f"{d['filename']}: {d['last_error']['message']} ({d['last_error']['code']})" for d in failed
            )
        )


@app.command("search")
def search(
    kb_id: KnowledgeBaseId,
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, max=50, help="How many passages to show.")
    ] = 5,
    json_output: JsonFlag = False,
) -> None:
    """Show the passages that best match a query (by meaning and by words)."""
    with open_client() as client:
        results = client.post(
            f"/v1/vector_stores/{kb_id}/search", json={"query": query, "max_num_results": top_k}
        )
    if json_output:
        print_json(results)
        return
    out = console()
    for rank, result in enumerate(results["data"], start=1):
        where = " > ".join(filter(None, [result["filename"], result.get("heading_path")]))
        out.print(f"[bold]{rank}. {where}[/bold]  (score {result['score']:.3f})", highlight=False)
        out.print(result["content"][0]["text"], markup=False, highlight=False)
        out.print()


@app.command("ask", epilog=EXAMPLES)
def ask(
    kb_id: KnowledgeBaseId,
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    model: Annotated[
        str | None,
        typer.Option(help="Answer with this deployed chat model. Default: the knowledge base's."),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, max=20, help="How many passages the answer draws on.")
    ] = 5,
    json_output: JsonFlag = False,
) -> None:
    """Answer a question from the documents; the answer streams, then its citations."""
    body: dict[str, Any] = {"question": question, "top_k": top_k, "stream": True}
    if model:
        body["model"] = model
    out = console()
    answer: list[str] = []
    citations: list[dict[str, Any]] = []
    with (
        open_client() as client,
        client.stream(
            "POST", f"/api/v1/knowledge-bases/{kb_id}/ask", json=body, timeout=ASK_READ_TIMEOUT_S
        ) as response,
    ):
        for event in iter_sse(response.iter_lines()):
            if event.data == "[DONE]":
                break
            data = json.loads(event.data)
            if isinstance(data.get("error"), dict):  # the model failed mid-answer
                raise ApiError(str(data["error"].get("message") or data["error"]))
            if data.get("object") == "knowledge_base.citations":
                citations = data["citations"]
                continue
            piece = data.get("answer") or "".join(
                (c.get("delta") or {}).get("content") or "" for c in data.get("choices", [])
            )
            answer.append(piece)
            if not json_output:
                out.print(piece, end="", soft_wrap=True, markup=False, highlight=False)
    text = "".join(answer)
    if json_output:
        print_json({"answer": text, "citations": citations})
        return
    out.print()
    for citation in citations:
        mark = "*" if f"[{citation['number']}]" in text else " "
        where = " > ".join(filter(None, [citation["filename"], citation.get("heading_path")]))
        note(
            f"{mark}[{citation['number']}] {where} (chunk {citation['chunk']}, score {citation['score']:.3f})"
        )
