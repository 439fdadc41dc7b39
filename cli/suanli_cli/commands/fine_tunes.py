"""`suanli fine-tunes`: create a fine-tune (OpenAI's fine-tuning API), watch it train with a
progress bar and its loss, list, show, read its events, cancel, and evaluate it against its base."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from suanli_cli.client import ApiClient, open_client
from suanli_cli.output import JsonFlag, console, error_console, fields, note, print_json, table, when

app = typer.Typer(help="Fine-tune models, watch them train, evaluate them.", no_args_is_help=True)

FineTuneId = Annotated[
    str, typer.Argument(metavar="ID", help="The fine-tune's id (see `suanli fine-tunes list`).")
]
FINAL = frozenset({"succeeded", "failed", "cancelled"})
POLL_S = 2.0


class Training(StrEnum):
    lora = "lora"
    qlora = "qlora"
    full = "full"


def _auto(value: float | None) -> float | str:
    return "auto" if value is None else value


def _show(job: dict[str, Any]) -> None:
    hp = job["hyperparameters"]
    error = job.get("error") or {}
    fields(
        [
            ("id", job["id"]),
            ("status", job["status"]),
            ("error", error.get("message")),
            ("model", job["model"]),
            ("training file", job["training_file"]),
            ("validation file", job.get("validation_file")),
            ("method", job["method"]["supervised"]["training"]),
            (
                "epochs / batch / lr x",
                f"{hp['n_epochs']} / {hp['batch_size']} / {hp['learning_rate_multiplier']}",
            ),
            ("fine-tuned model", job.get("fine_tuned_model")),
            ("adapter", job.get("adapter_model")),
            ("trained tokens", job.get("trained_tokens")),
            ("created", when(job["created_at"])),
            ("finished", when(job.get("finished_at"))),
        ]
    )


def watch(client: ApiClient, job_id: str) -> dict[str, Any]:
    """A progress bar over the training steps with the latest loss, until the job ends."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console(),
    )
    with progress:
        task = progress.add_task("queued", total=None, loss="-")
        while True:
            job = client.get(f"/v1/fine_tuning/jobs/{job_id}")
            events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 20})["data"]
            latest = next((e["data"] for e in events if e["type"] == "metrics" and e.get("data")), None)
            if latest:
                progress.update(
                    task,
                    total=latest["total_steps"],
                    completed=latest["step"],
                    loss=f"{latest['train_loss']:.4f}",
                )
            progress.update(task, description=job["status"])
            if job["status"] in FINAL:
                return dict(job)
            time.sleep(POLL_S)


def _report(job: dict[str, Any]) -> None:
    if job["status"] == "succeeded":
        note(f"fine-tune {job['id']} succeeded: {job['fine_tuned_model']}")
    else:
        reason = (job.get("error") or {}).get("message", "")
        error_console().print(f"fine-tune {job['id']} {job['status']}" + (f": {reason}" if reason else ""))


@app.command("create")
def create(
    model: Annotated[str, typer.Option("--model", "-m", help="The base model (see `suanli models list`).")],
    training_file: Annotated[
        str, typer.Option("--file", "-f", help="A fine-tune file id (see `suanli files`).")
    ],
    validation_file: Annotated[str | None, typer.Option(help="A held-out file id.")] = None,
    suffix: Annotated[str | None, typer.Option(help="Goes into the fine-tuned model's id.")] = None,
    training: Annotated[Training, typer.Option(help="lora, qlora (CUDA GPU) or full.")] = Training.lora,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data (default: auto).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Examples per step (default: auto).")] = None,
    lr_multiplier: Annotated[
        float | None, typer.Option(help="Scales the base learning rate (default: auto).")
    ] = None,
    gpu_type: Annotated[
        str | None, typer.Option(help="A GPU type of the cluster (see `suanli gpus`).")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Show its progress until it ends.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start a fine-tune; with --follow, a progress bar with its loss until it ends."""
    body: dict[str, Any] = {
        "model": model,
        "training_file": training_file,
        "method": {
            "type": "supervised",
            "supervised": {
                "training": training.value,
                "hyperparameters": {
                    "n_epochs": _auto(epochs),
                    "batch_size": _auto(batch_size),
                    "learning_rate_multiplier": _auto(lr_multiplier),
                },
            },
        },
    }
    if validation_file:
        body["validation_file"] = validation_file
    if suffix:
        body["suffix"] = suffix
    if gpu_type:
        body["metadata"] = {"gpu_type": gpu_type}
    with open_client() as client:
        job = client.post("/v1/fine_tuning/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if not follow:
            print_json(job) if json_output else _show(job)
            return
        note(f"created fine-tune {job['id']}")
        job = watch(client, job["id"])
    print_json(job) if json_output else _report(job)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_fine_tunes(json_output: JsonFlag = False) -> None:
    """List your fine-tunes, newest first."""
    with open_client() as client:
        jobs = client.get("/v1/fine_tuning/jobs", params={"limit": 100})
    if json_output:
        print_json(jobs)
        return
    table(
        ["ID", "MODEL", "STATUS", "FINE-TUNED MODEL", "CREATED"],
        (
            [j["id"], j["model"], j["status"], j.get("fine_tuned_model") or "", when(j["created_at"])]
            for j in jobs["data"]
        ),
    )


@app.command("show")
def show(job_id: FineTuneId, json_output: JsonFlag = False) -> None:
    """Show one fine-tune: status, hyperparameters (what "auto" became), its models."""
    with open_client() as client:
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}")
    print_json(job) if json_output else _show(job)


@app.command("watch")
def watch_command(job_id: FineTuneId) -> None:
    """Follow a fine-tune's progress and loss until it ends."""
    with open_client() as client:
        job = watch(client, job_id)
    _report(job)


@app.command("events")
def events(
    job_id: FineTuneId,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    json_output: JsonFlag = False,
) -> None:
    """A fine-tune's events, newest first: status changes, steps with their loss, checkpoints."""
    with open_client() as client:
        page = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": limit})
    if json_output:
        print_json(page)
        return
    table(
        ["TIME", "LEVEL", "MESSAGE"],
        ([when(e["created_at"]), e["level"], e["message"]] for e in page["data"]),
    )


@app.command("cancel")
def cancel(job_id: FineTuneId, json_output: JsonFlag = False) -> None:
    """Cancel a fine-tune: its process stops and its GPU slot is freed."""
    with open_client() as client:
        job = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    print_json(job) if json_output else note(f"fine-tune {job['id']} {job['status']}")


@app.command("evaluate")
def evaluate(
    job_id: FineTuneId,
    file: Annotated[str, typer.Option("--file", "-f", help="A held-out fine-tune file id.")],
    max_examples: Annotated[int, typer.Option(min=1, help="Only the first this many examples.")] = 200,
    json_output: JsonFlag = False,
) -> None:
    """Score the fine-tuned model and its base side by side (BLEU, exact match, accuracy)."""
    with open_client() as client:
        evaluation = client.post(
            "/api/v1/evaluations",
            json={"fine_tuning_job": job_id, "file": file, "max_examples": max_examples},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        with console().status(f"evaluating {evaluation['model']} against {evaluation['compare_to']}"):
            while evaluation["status"] not in FINAL:
                time.sleep(POLL_S)
                evaluation = client.get(f"/api/v1/evaluations/{evaluation['id']}")
    if json_output:
        print_json(evaluation)
        return
    if evaluation["status"] != "succeeded":
        error_console().print(
            f"evaluation {evaluation['id']} {evaluation['status']}: {evaluation.get('error')}"
        )
        raise typer.Exit(1)
    table(
        ["MODEL", "BLEU", "EXACT MATCH", "ACCURACY", "EXAMPLES"],
        (
            [
                r["model"],
                f"{r['bleu']:.1f}",
                f"{r['exact_match']:.0%}",
                "" if r["accuracy"] is None else f"{r['accuracy']:.0%}",
                r["examples"],
            ]
            for r in evaluation["results"]
        ),
    )
