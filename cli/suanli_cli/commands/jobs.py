"""`suanli jobs`: custom GPU jobs (a command over nodes x GPU slots): submit, watch the log live,
list, show, cancel."""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.text import Text

from suanli_cli.client import ApiClient, ApiError, open_client
from suanli_cli.output import (
    JsonFlag,
    console,
    error_console,
    fail,
    fields,
    note,
    print_json,
    print_json_line,
    table,
    when,
)
from suanli_cli.sse import iter_sse

app = typer.Typer(
    help="Custom GPU jobs (a command on nodes x GPU slots): submit, follow the log, list, cancel.",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(metavar="ID", help="The job's id (see `suanli jobs list`).")]
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
# A followed log waits for lines as long as the job runs; the server sends keepalives meanwhile.
FOLLOW_READ_TIMEOUT_S = 120.0


class JobType(StrEnum):
    pytorch = "pytorch"
    mpi = "mpi"


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


def _show(job: dict[str, Any]) -> None:
    fields(
        [
            ("id", job["id"]),
            ("name", job["name"]),
            ("status", job["status"]),
            ("reason", job.get("status_reason")),
            ("type", job["job_type"]),
            ("command", job.get("command")),
            ("image", job.get("image")),
            (
                "nodes x gpus",
                f"{job['nodes']} x {job['gpus_per_node']} {job.get('gpu_type') or '(any type)'}",
            ),
            ("placed on", ", ".join(job["node_ids"])),
            ("env", " ".join(f"{k}={v}" for k, v in job["env"].items())),
            ("max runtime", f"{job['max_runtime_minutes']} min" if job.get("max_runtime_minutes") else None),
            ("output", job.get("output_path")),
            ("attempt", job["attempt"]),
            ("created", when(job["created_at"])),
            ("started", when(job.get("started_at"))),
            ("finished", when(job.get("finished_at"))),
        ]
    )


def follow_log(client: ApiClient, job_id: str, as_json: bool) -> dict[str, Any]:
    """Prints the job's log live (`node | line`) until it ends; returns the final `end` event."""
    out = console()
    with client.stream("GET", f"/api/v1/jobs/{job_id}/logs", timeout=FOLLOW_READ_TIMEOUT_S) as response:
        events = iter_sse(response.iter_lines())
        for event in events:
            data = json.loads(event.data)
            if as_json:
                print_json_line({"event": event.event, **data} if event.event != "message" else data)
            if event.event == "message" and not as_json:
                style = "red" if data.get("stream") == "stderr" else ""
                out.print(Text.assemble((f"{data['node']} | ", "dim"), (data["line"], style)), soft_wrap=True)
            elif event.event == "error":
                raise ApiError(data.get("error", {}).get("message", "the log stream failed"))
            elif event.event == "end":
                return dict(data)
    raise ApiError(f"the log stream of {job_id} ended before the job did")


def _report_end(end: dict[str, Any]) -> None:
    reason = f": {end['status_reason']}" if end.get("status_reason") else ""
    line = Text(f"job {end['id']} {end['status']}{reason}", style="bold")
    line.stylize("green" if end["status"] == "succeeded" else "red")
    error_console().print(line)


SUBMIT_EXAMPLES = """Examples:

  suanli jobs submit --command "python train.py" --gpus-per-node 2 --follow
  suanli jobs submit -c "torchrun train.py" --nodes 2 --gpus-per-node 8 --gpu-type A100-80G -e EPOCHS=3
  suanli jobs submit -c "python sweep.py" --max-runtime-minutes 90 --json"""


@app.command("submit", epilog=SUBMIT_EXAMPLES)
def submit(
    command: Annotated[str, typer.Option("--command", "-c", help="Shell command to run on each node.")],
    name: Annotated[
        str, typer.Option("--name", "-n", help="A label to recognise the job by. Default: none.")
    ] = "",
    job_type: Annotated[
        JobType,
        typer.Option(
            help="pytorch: torchrun across the nodes (RANK, WORLD_SIZE, ...); mpi: mpirun over all nodes."
        ),
    ] = JobType.pytorch,
    nodes: Annotated[int, typer.Option(min=1, help="How many nodes to run it on.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=1, help="GPU slots on each node.")] = 1,
    gpu_type: Annotated[
        str | None, typer.Option(help="Run on slots of this type (see `suanli gpus`). Default: any.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", "-e", help="NAME=VALUE in the job's environment; repeat it for more. Default: none."
        ),
    ] = None,
    max_runtime_minutes: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop it (as timed_out) after this many minutes. Default: run to completion."
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream its log until it ends; exit 1 unless it succeeded.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Submit a command to run as a job on nodes x GPU slots; --follow streams its log."""
    body: dict[str, Any] = {
        "name": name,
        "command": command,
        "job_type": job_type.value,
        "nodes": nodes,
        "gpus_per_node": gpus_per_node,
        "env": parse_env(env or []),
    }
    if gpu_type:
        body["gpu_type"] = gpu_type
    if max_runtime_minutes is not None:
        body["max_runtime_minutes"] = max_runtime_minutes
    with open_client() as client:
        # The key makes a retried submission the same job rather than a second one.
        job = client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if json_output and follow:
            print_json_line(job)  # then one line per log event: JSON lines throughout
        elif json_output:
            print_json(job)
        else:
            note(f"submitted job {job['id']} ({job['status']})")
        if not follow:
            return
        end = follow_log(client, job["id"], json_output)
    if not json_output:
        _report_end(end)
    if end["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(json_output: JsonFlag = False) -> None:
    """List your jobs, newest first."""
    with open_client() as client:
        jobs = client.get("/api/v1/jobs")
    if json_output:
        print_json(jobs)
        return
    table(
        ["ID", "NAME", "STATUS", "TYPE", "NODES x GPUS", "CREATED", "FINISHED"],
        (
            [
                j["id"],
                j["name"],
                j["status"],
                j["job_type"],
                f"{j['nodes']} x {j['gpus_per_node']} {j.get('gpu_type') or ''}".strip(),
                when(j["created_at"]),
                when(j.get("finished_at")),
            ]
            for j in jobs["data"]
        ),
    )


@app.command("show")
def show(job_id: JobId, json_output: JsonFlag = False) -> None:
    """Show one job: its status (and why), placement and times."""
    with open_client() as client:
        job = client.get(f"/api/v1/jobs/{job_id}")
    if json_output:
        print_json(job)
    else:
        _show(job)


@app.command("logs")
def logs(
    job_id: JobId,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow", "-f", help="Stream until the job ends, or print the log so far."
        ),
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Print a job's log, live as `node | line` until it ends (or what it printed so far)."""
    if json_output and not follow:
        # The log so far comes as the text the job printed: there is no JSON of it to give.
        fail("--json needs --follow (--no-follow prints the log as plain text)", code=2)
    with open_client() as client:
        if not follow:
            with client.stream("GET", f"/api/v1/jobs/{job_id}/logs", params={"follow": "false"}) as response:
                for line in response.iter_lines():
                    typer.echo(line)
            return
        end = follow_log(client, job_id, json_output)
    if not json_output:
        _report_end(end)


@app.command("cancel")
def cancel(job_id: JobId, json_output: JsonFlag = False) -> None:
    """Cancel a job: it stops on every node and its GPU slots are freed."""
    with open_client() as client:
        job = client.post(f"/api/v1/jobs/{job_id}/cancel")
    if json_output:
        print_json(job)
    else:
        note(f"job {job['id']} {job['status']}")
