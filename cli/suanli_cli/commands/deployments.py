"""`suanli deployments`: serve a model of the repository behind the OpenAI API (create, list, show,
delete), and `suanli chat`: talk to a deployed model, the answer streamed as it is generated."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from suanli_cli.client import ApiClient, ApiError, open_client
from suanli_cli.output import JsonFlag, console, fields, note, print_json, progress_console, table, when
from suanli_cli.sse import iter_sse

app = typer.Typer(
    help="Serve models behind the OpenAI API: create, list, show and delete deployments.",
    no_args_is_help=True,
)

DeploymentId = Annotated[
    str, typer.Argument(metavar="ID", help="The deployment's id (see `suanli deployments list`).")
]
SETTLED = frozenset({"ready", "failed", "stopped"})
WAIT_POLL_S = 3.0
# A long answer streams for a while; the engine sends tokens throughout.
CHAT_READ_TIMEOUT_S = 300.0


def _show(deployment: dict[str, Any]) -> None:
    span = f"{deployment['min_replicas']}-{deployment['max_replicas']}"
    fields(
        [
            ("id", deployment["id"]),
            ("model", deployment["model"]),
            ("status", deployment["status"]),
            ("reason", deployment.get("status_reason")),
            ("slots", f"{deployment['gpu_count']} {deployment.get('gpu_type') or '(any type)'} per replica"),
            (
                "replicas",
                f"{deployment['ready_replicas']} ready of {span}",
            ),
            ("context", deployment.get("max_model_len")),
            ("owned by", deployment["owned_by"]),
            ("created", when(deployment.get("created_at"))),
        ]
    )


def wait_settled(
    client: ApiClient, deployment: dict[str, Any], timeout_s: float, out: Console
) -> dict[str, Any]:
    """Polls until the deployment is ready, failed or gone, saying each new status."""
    deadline = time.monotonic() + timeout_s
    last = deployment["status"]
    while deployment["status"] not in SETTLED:
        if time.monotonic() > deadline:
            raise ApiError(
                f"deployment {deployment['id']} is still {deployment['status']} after {timeout_s:g}s"
            )
        time.sleep(WAIT_POLL_S)
        deployment = client.get(f"/api/v1/deployments/{deployment['id']}")
        if deployment["status"] != last:
            last = deployment["status"]
            note(f"deployment {deployment['id']} {last}", out)
    return deployment


CREATE_EXAMPLES = """Examples:

  suanli deployments create smollm2-135m-instruct --wait
  suanli deployments create ft:smollm2-135m-instruct:support:job_abc --gpu-type A100-80G --max-replicas 4
  suanli deployments create ft:smollm2-135m-instruct:support:job_abc:adapter   # a LoRA adapter on its base"""


@app.command("create", epilog=CREATE_EXAMPLES)
def create(
    model: Annotated[
        str,
        typer.Argument(
            help="A ready base or fine-tuned model of the repository (see `suanli models list`), or a LoRA "
            "adapter, which is served on the base it was trained from."
        ),
    ],
    adapter: Annotated[
        str | None,
        typer.Option(
            help="A LoRA adapter of MODEL applied to every request (requests name it). Default: none."
        ),
    ] = None,
    gpu_type: Annotated[
        str | None, typer.Option(help="Serve on slots of this type (see `suanli gpus`). Default: any.")
    ] = None,
    gpu_count: Annotated[
        int, typer.Option(min=1, help="Slots per replica (tensor parallelism on GPUs).")
    ] = 1,
    min_replicas: Annotated[int, typer.Option(min=1, help="Replicas kept running when idle.")] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, help="Most replicas under load. Default: --min-replicas.")
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(min=16, help="Context length in tokens (prompt and answer). Default: the model's."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait until it is ready; exit 1 if it fails.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="How long --wait waits, in seconds.")] = 900.0,
    json_output: JsonFlag = False,
) -> None:
    """Deploy a model behind the OpenAI API; requests name it by its model id."""
    body: dict[str, Any] = {"model": model, "gpu_count": gpu_count, "min_replicas": min_replicas}
    for key, value in (
        ("adapter", adapter),
        ("gpu_type", gpu_type),
        ("max_replicas", max_replicas),
        ("max_model_len", max_model_len),
    ):
        if value is not None:
            body[key] = value
    out = progress_console(json_output)
    with open_client() as client:
        # No Idempotency-Key: with one, the gateway leaves it to the key to spot a repeated create
        # and no longer refuses a second deployment of a model this user already serves.
        deployment = client.post("/api/v1/deployments", json=body)
        note(f"deployment {deployment['id']} of {deployment['model']} ({deployment['status']})", out)
        if wait:
            deployment = wait_settled(client, deployment, timeout, out)
    if json_output:
        print_json(deployment)
    if wait and deployment["status"] != "ready":
        raise ApiError(
            f"deployment {deployment['id']} {deployment['status']}: {deployment.get('status_reason') or ''}"
        )


@app.command("list")
def list_deployments(json_output: JsonFlag = False) -> None:
    """List your deployments and the shared ones, newest first."""
    with open_client() as client:
        deployments = client.get("/api/v1/deployments")
    if json_output:
        print_json(deployments)
        return
    table(
        ["ID", "MODEL", "STATUS", "REPLICAS", "SLOTS", "OWNER", "CREATED"],
        (
            [
                d["id"],
                d["model"],
                d["status"],
                f"{d['ready_replicas']}/{d['max_replicas']}",
                f"{d['gpu_count']} {d.get('gpu_type') or ''}".strip(),
                d["owned_by"],
                when(d.get("created_at")),
            ]
            for d in deployments["data"]
        ),
    )


@app.command("show")
def show(deployment_id: DeploymentId, json_output: JsonFlag = False) -> None:
    """Show one deployment: status (and why), replicas, slots."""
    with open_client() as client:
        deployment = client.get(f"/api/v1/deployments/{deployment_id}")
    if json_output:
        print_json(deployment)
    else:
        _show(deployment)


@app.command("delete")
def delete(deployment_id: DeploymentId, json_output: JsonFlag = False) -> None:
    """Delete a deployment: its replicas drain and its slots are freed."""
    with open_client() as client:
        deployment = client.delete(f"/api/v1/deployments/{deployment_id}")
    if json_output:
        print_json(deployment)
    else:
        note(f"deployment {deployment['id']} {deployment['status']}")


CHAT_EXAMPLES = """Examples:

  suanli chat "What is the capital of France?"
  suanli chat "Summarise: ..." --model ft:smollm2-135m-instruct:support:job_abc --temperature 0
  suanli chat "Hello" --system "Answer in French." --max-tokens 64 --json"""


def chat(
    message: Annotated[str, typer.Argument(help="What to say to the model.")],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="A deployed model (see `suanli deployments list`)."),
    ] = "smollm2-135m-instruct",
    system: Annotated[
        str | None, typer.Option(help="A system prompt that steers the answer. Default: none.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens the answer may have.")] = 256,
    temperature: Annotated[
        float,
        typer.Option(
            min=0, max=2, help="Sampling temperature: 0 always picks the likeliest token, higher varies more."
        ),
    ] = 0.7,
    seed: Annotated[
        int | None,
        typer.Option(help="Sampling seed: the same seed and prompt give the same answer. Default: random."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Chat with a deployed model; the answer is printed as it is generated."""
    messages = [
        *([{"role": "system", "content": system}] if system else []),
        {"role": "user", "content": message},
    ]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if seed is not None:
        body["seed"] = seed
    out = console()
    text: list[str] = []
    usage: dict[str, Any] = {}
    finished = False
    with (
        open_client() as client,
        client.stream("POST", "/v1/chat/completions", json=body, timeout=CHAT_READ_TIMEOUT_S) as response,
    ):
        for event in iter_sse(response.iter_lines()):
            if event.data == "[DONE]":
                finished = True
                break
            chunk = _chunk(event.data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                text.append(piece)
                if not json_output:
                    out.print(piece, end="", soft_wrap=True, markup=False, highlight=False)
    if not json_output and text:
        out.print()
    if not finished:
        raise ApiError("the answer was cut off: the stream ended before the model finished")
    if json_output:
        print_json({"model": model, "content": "".join(text), "usage": usage})
        return
    if usage:
        note(
            f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens"
        )


def _chunk(data: str) -> dict[str, Any]:
    """One streamed chunk; an error the engine sends mid-answer (vLLM's `{"error": ...}` or its
    older `{"object": "error", ...}`) fails the command in one line."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ApiError(f"the model's stream sent something not JSON: {data[:120]}") from None
    if not isinstance(chunk, dict):
        raise ApiError(f"the model's stream sent something unexpected: {data[:120]}")
    failure = chunk if chunk.get("object") == "error" else chunk.get("error")
    if failure is not None:
        message = (failure.get("message") if isinstance(failure, dict) else None) or failure
        raise ApiError(f"the model failed mid-answer: {message}")
    return chunk
