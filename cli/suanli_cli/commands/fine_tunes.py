"""`suanli fine-tunes`: create a fine-tune (OpenAI's fine-tuning API), watch it train with a
progress bar and its loss, list, show, read its events, cancel, and evaluate it against its base."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from suanli_cli.client import ApiClient, open_client
from suanli_cli.output import (
    JsonFlag,
    console,
    error_console,
    fields,
    note,
    print_json,
    progress_console,
    table,
    when,
)

app = typer.Typer(
    help="Fine-tune models on your datasets, watch them train, compare them with their base.",
    no_args_is_help=True,
)

FineTuneId = Annotated[
    str, typer.Argument(metavar="ID", help="The fine-tune's id (see `suanli fine-tunes list`).")
]
FINAL = frozenset({"succeeded", "failed", "cancelled"})
POLL_S = 2.0
EVENTS_PER_POLL = 100  # the API's page limit; far more steps than a poll interval sees


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


@dataclass(frozen=True, slots=True)
class StepReport:
    """One optimizer step as the fine-tune's metrics events report it."""

    step: int
    total_steps: int | None
    loss: float | None

    def line(self) -> str:
        of = f"/{self.total_steps}" if self.total_steps else ""
        loss = "-" if self.loss is None else f"{self.loss:.4f}"
        return f"step {self.step}{of}  loss {loss}"


def step_reports(events: list[dict[str, Any]]) -> list[StepReport]:
    """The steps among a page of events (which come newest first), oldest first."""
    found: dict[int, StepReport] = {}
    for event in events:
        data = event.get("data") or {}
        if event.get("type") == "metrics" and isinstance(data.get("step"), int):
            found.setdefault(
                data["step"], StepReport(data["step"], data.get("total_steps"), data.get("train_loss"))
            )
    return [found[step] for step in sorted(found)]


def _poll(client: ApiClient, job_id: str) -> tuple[dict[str, Any], list[StepReport]]:
    job = client.get(f"/v1/fine_tuning/jobs/{job_id}")
    page = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": EVENTS_PER_POLL})
    return dict(job), step_reports(page["data"])


def watch(client: ApiClient, job_id: str, out: Console) -> dict[str, Any]:
    """Follows the fine-tune until it ends: a live bar of its steps with the latest loss on a
    terminal; elsewhere (a pipe, a CI log) one line per status change and per step."""
    try:
        if out.is_terminal:
            return _watch_bar(client, job_id, out)
        return _watch_lines(client, job_id, out)
    except KeyboardInterrupt:
        # Only the watching stops: the fine-tune goes on training.
        note(f"stopped watching; fine-tune {job_id} goes on: `suanli fine-tunes watch {job_id}`", out)
        raise typer.Exit(130) from None


def _watch_bar(client: ApiClient, job_id: str, out: Console) -> dict[str, Any]:
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=out,
    )
    with progress:
        task = progress.add_task("queued", total=None, loss="-")
        while True:
            job, steps = _poll(client, job_id)
            if steps:
                latest = steps[-1]
                progress.update(
                    task,
                    total=latest.total_steps,
                    completed=latest.step,
                    loss="-" if latest.loss is None else f"{latest.loss:.4f}",
                )
            progress.update(task, description=job["status"])
            progress.refresh()  # drawn as polled, not at the bar's next tick
            if job["status"] in FINAL:
                return job
            time.sleep(POLL_S)


def _watch_lines(client: ApiClient, job_id: str, out: Console) -> dict[str, Any]:
    status, printed = "", 0
    while True:
        job, steps = _poll(client, job_id)
        if job["status"] != status and job["status"] not in FINAL:
            status = job["status"]
            out.print(f"fine-tune {job_id} {status}")
        for report in steps:
            # A resumed attempt reports the steps after its checkpoint again: each is shown once.
            if report.step > printed:
                out.print(report.line())
                printed = report.step
        if job["status"] in FINAL:
            return job
        time.sleep(POLL_S)


def _report(job: dict[str, Any], out: Console) -> None:
    if job["status"] == "succeeded":
        note(f"fine-tune {job['id']} succeeded: {job['fine_tuned_model']}", out)
    else:
        reason = (job.get("error") or {}).get("message", "")
        error_console().print(f"fine-tune {job['id']} {job['status']}" + (f": {reason}" if reason else ""))


CREATE_EXAMPLES = """Examples:

  suanli fine-tunes create --model smollm2-135m-instruct --file file-abc123 --suffix support --follow
  suanli fine-tunes create -m smollm2-135m-instruct -f file-abc123 --epochs 3 --training full --json"""


@app.command("create", epilog=CREATE_EXAMPLES)
def create(
    model: Annotated[
        str, typer.Option("--model", "-m", help="The base model to train (see `suanli models list`).")
    ],
    training_file: Annotated[
        str,
        typer.Option("--file", "-f", help="The training dataset's file id (see `suanli files list`)."),
    ],
    validation_file: Annotated[
        str | None,
        typer.Option(help="A held-out fine-tune file id; its loss is reported each epoch. Default: none."),
    ] = None,
    suffix: Annotated[
        str | None,
        typer.Option(help="A label in the fine-tuned model's id, ft:BASE:SUFFIX:JOB. Default: none."),
    ] = None,
    training: Annotated[
        Training, typer.Option(help="lora, qlora (CUDA GPUs only) or full (every weight).")
    ] = Training.lora,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Passes over the dataset. Default: auto (from its size).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Examples per optimizer step. Default: auto (4).")
    ] = None,
    lr_multiplier: Annotated[
        float | None,
        typer.Option(
            help="Scales the method's base learning rate (lora 1e-3, full 1e-5). Default: auto (1)."
        ),
    ] = None,
    gpu_type: Annotated[
        str | None, typer.Option(help="Train on slots of this type (see `suanli gpus`). Default: any.")
    ] = None,
    gpu_count: Annotated[int | None, typer.Option(min=1, help="Slots to train on. Default: 1.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Stay until it ends, showing its steps and loss; exit 1 unless it succeeds.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start a fine-tune of a base model on a dataset; --follow shows its steps and loss live."""
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
    metadata = {key: str(value) for key, value in (("gpu_type", gpu_type), ("gpu_count", gpu_count)) if value}
    if metadata:
        body["metadata"] = metadata
    with open_client() as client:
        job = client.post("/v1/fine_tuning/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if not follow:
            print_json(job) if json_output else _show(job)
            return
        out = progress_console(json_output)
        note(f"created fine-tune {job['id']}", out)
        job = watch(client, job["id"], out)
    _finish(job, json_output)


def _finish(job: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(job)
    else:
        _report(job, console())
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
def watch_command(job_id: FineTuneId, json_output: JsonFlag = False) -> None:
    """Follow a fine-tune's steps and loss until it ends; exit 1 unless it succeeds."""
    with open_client() as client:
        job = watch(client, job_id, progress_console(json_output))
    _finish(job, json_output)


@app.command("events")
def events(
    job_id: FineTuneId,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many events to show, newest first.")] = 20,
    json_output: JsonFlag = False,
) -> None:
    """Show a fine-tune's events, newest first: status changes, steps with their loss, checkpoints."""
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
    file: Annotated[
        str, typer.Option("--file", "-f", help="A held-out fine-tune file id: the examples to score.")
    ],
    max_examples: Annotated[
        int, typer.Option(min=1, help="Score only the first this many examples of the file.")
    ] = 200,
    json_output: JsonFlag = False,
) -> None:
    """Score the fine-tuned model and its base side by side (BLEU, exact match, accuracy)."""
    with open_client() as client:
        evaluation = client.post(
            "/api/v1/evaluations",
            json={"fine_tuning_job": job_id, "file": file, "max_examples": max_examples},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        waiting = f"evaluating {evaluation['model']} against {evaluation['compare_to']}"
        with progress_console(json_output).status(waiting):
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
