"""The commands that stay with their work while it runs: `fine-tunes create --follow` / `watch`
(the steps and loss, live), `deployments create --wait`, `files upload` (its progress bar) and
`chat` (the answer as it streams); with --json, stdout holds the JSON alone."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from rich.console import Console

from suanli_cli.commands import fine_tunes
from suanli_cli.commands.fine_tunes import StepReport, step_reports

if TYPE_CHECKING:
    from conftest import FakeApi

JOB = "job_1"
JOB_PATH = f"/v1/fine_tuning/jobs/{JOB}"
MODEL = f"ft:tiny:golden:{JOB}"


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB,
        "object": "fine_tuning.job",
        "status": status,
        "model": "tiny",
        "fine_tuned_model": MODEL if status == "succeeded" else None,
        "error": None,
        **extra,
    }


def metrics(step: int, total: int, loss: float | None) -> dict[str, Any]:
    return {
        "id": f"ftevent-{JOB}-m{step}",
        "type": "metrics",
        "message": f"Step {step}/{total}",
        "data": {"step": step, "total_steps": total, "train_loss": loss},
    }


def page(*events: dict[str, Any]) -> dict[str, Any]:
    """Events newest first, as the API lists them."""
    return {"object": "list", "data": list(reversed(events)), "has_more": False}


def follow_a_training(fake_api: FakeApi) -> None:
    """queued, then running with steps 1-2, then 3-4 and done: three polls."""
    fake_api.route("POST", "/v1/fine_tuning/jobs", job("queued"))
    fake_api.route("GET", JOB_PATH, job("queued"), job("running"), job("running"), job("succeeded"))
    fake_api.route(
        "GET",
        f"{JOB_PATH}/events",
        page(),
        page(),
        page(metrics(1, 4, 2.5), metrics(2, 4, 2.25)),
        page(*(metrics(s, 4, 2.5 - s / 4) for s in range(1, 5))),
    )


def test_a_followed_fine_tune_prints_its_statuses_and_every_step_with_its_loss(fake_api: FakeApi) -> None:
    follow_a_training(fake_api)
    result = fake_api.cli("fine-tunes", "create", "-m", "tiny", "-f", "file-1", "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"created fine-tune {JOB}",
        f"fine-tune {JOB} queued",
        f"fine-tune {JOB} running",
        "step 1/4  loss 2.5000",
        "step 2/4  loss 2.2500",
        "step 3/4  loss 1.7500",
        "step 4/4  loss 1.5000",
        f"fine-tune {JOB} succeeded: {MODEL}",
    ]
    sent = json.loads(fake_api.asked("POST", "/v1/fine_tuning/jobs")[0].content)
    assert sent["method"]["supervised"]["hyperparameters"]["n_epochs"] == "auto"


def test_on_a_terminal_the_steps_and_loss_are_a_live_bar(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    follow_a_training(fake_api)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, color_system=None)
    monkeypatch.setattr(fine_tunes, "progress_console", lambda _json_output: terminal)
    result = fake_api.cli("fine-tunes", "create", "-m", "tiny", "-f", "file-1", "--follow")
    assert result.exit_code == 0, result.output
    drawn = screen.getvalue()
    assert "running" in drawn and "2/4 loss 2.2500" in drawn  # redrawn while it ran
    assert "succeeded" in drawn and "4/4 loss 1.5000" in drawn
    assert "step 1/4" not in drawn  # no log lines on a terminal
    assert result.stdout.strip() == f"fine-tune {JOB} succeeded: {MODEL}"


def test_with_json_stdout_is_the_final_job_and_the_progress_goes_to_stderr(fake_api: FakeApi) -> None:
    follow_a_training(fake_api)
    result = fake_api.cli("fine-tunes", "create", "-m", "tiny", "-f", "file-1", "--follow", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fine_tuned_model"] == MODEL
    assert "step 4/4  loss 1.5000" in result.stderr


def test_a_failed_fine_tune_exits_1_with_its_reason(fake_api: FakeApi) -> None:
    failed = job("failed", error={"message": "out of memory", "code": "oom"})
    fake_api.route("GET", JOB_PATH, failed)
    fake_api.route("GET", f"{JOB_PATH}/events", page())
    result = fake_api.cli("fine-tunes", "watch", JOB)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"fine-tune {JOB} failed: out of memory"


def test_ctrl_c_stops_the_watching_not_the_fine_tune(fake_api: FakeApi) -> None:
    def interrupted(_: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    fake_api.route("GET", JOB_PATH, job("running"), interrupted)
    fake_api.route("GET", f"{JOB_PATH}/events", page())
    result = fake_api.cli("fine-tunes", "watch", JOB)
    assert result.exit_code == 130
    assert f"stopped watching; fine-tune {JOB} goes on" in result.stdout
    assert fake_api.asked("POST", f"{JOB_PATH}/cancel") == []


def test_step_reports_are_oldest_first_once_each_and_tolerate_a_missing_loss() -> None:
    events = page(metrics(1, 2, None), metrics(2, 2, 0.5), metrics(1, 2, 3.0))["data"]
    events.append({"type": "message", "message": "Fine-tuning job started", "data": None})
    assert step_reports(events) == [StepReport(1, 2, 3.0), StepReport(2, 2, 0.5)]
    assert StepReport(1, 2, None).line() == "step 1/2  loss -"


def deployment(status: str) -> dict[str, Any]:
    return {"id": "dep_1", "model": MODEL, "status": status, "status_reason": None}


def test_deployments_create_wait_json_keeps_stdout_to_the_json(fake_api: FakeApi) -> None:
    fake_api.route("POST", "/api/v1/deployments", deployment("pending"))
    fake_api.route("GET", "/api/v1/deployments/dep_1", deployment("deploying"), deployment("ready"))
    result = fake_api.cli("deployments", "create", MODEL, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ready"
    assert "deployment dep_1 ready" in result.stderr
    [sent] = fake_api.asked("POST", "/api/v1/deployments")
    assert json.loads(sent.content)["model"] == MODEL
    # Without a key, the gateway refuses a second deployment of a model the user already serves.
    assert "idempotency-key" not in sent.headers


def test_a_deployment_that_fails_while_waited_for_exits_1(fake_api: FakeApi) -> None:
    failed = {**deployment("failed"), "status_reason": "the replica ran out of memory"}
    fake_api.route("POST", "/api/v1/deployments", deployment("pending"))
    fake_api.route("GET", "/api/v1/deployments/dep_1", failed)
    result = fake_api.cli("deployments", "create", MODEL, "--wait")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: deployment dep_1 failed: the replica ran out of memory"


def chunk(text: str) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def test_chat_prints_the_answer_as_it_streams_then_the_tokens(fake_api: FakeApi) -> None:
    usage = {
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
    }
    fake_api.route("POST", "/v1/chat/completions", fake_api.sse(chunk("Par"), chunk("is"), usage, "[DONE]"))
    result = fake_api.cli("chat", "Capital of France?", "-m", MODEL, "--seed", "7", "--temperature", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Paris", "9 prompt + 2 completion tokens"]
    sent = json.loads(fake_api.asked("POST", "/v1/chat/completions")[0].content)
    assert (sent["model"], sent["seed"], sent["temperature"], sent["stream"]) == (MODEL, 7, 0.0, True)

    as_json = fake_api.cli("chat", "Capital of France?", "-m", MODEL, "--json")
    assert json.loads(as_json.stdout) == {
        "model": MODEL,
        "content": "Paris",
        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
    }


def test_an_upload_shows_its_progress_bar_but_not_under_json(fake_api: FakeApi, tmp_path: Path) -> None:
    dataset = tmp_path / "train.jsonl"
    dataset.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 100)
    stored = {
        "id": "file-1",
        "filename": "train.jsonl",
        "purpose": "fine-tune",
        "bytes": dataset.stat().st_size,
        "status": "processed",
        "created_at": 0,
    }
    fake_api.route("POST", "/v1/files", stored)
    shown = fake_api.cli("files", "upload", str(dataset))
    assert shown.exit_code == 0, shown.output
    assert "uploading train.jsonl" in shown.stdout and "5.0/5.0 kB" in shown.stdout
    assert fake_api.requests[0].headers["content-length"]  # streamed from disk with its size
    as_json = fake_api.cli("files", "upload", str(dataset), "--json")
    assert json.loads(as_json.stdout)["id"] == "file-1"
