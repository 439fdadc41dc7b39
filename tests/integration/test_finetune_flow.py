"""Fine-tuning across the real platform (launcher, nats-server, auth, catalog, scheduler, a trainer
agent with two CPU slots, gateway), driven by the official `openai` client: the identity round
trip on the seed model with every hyperparameter "auto" (create to succeeded in under 3 minutes,
then the downloaded model answers with its new name under greedy decoding, and so does its LoRA
adapter deployed on the base, which vLLM applies per request under Ray Serve), its events and
checkpoints, an evaluation of it against its base, cancelling a running fine-tune, and the
requests that must be refused."""

from __future__ import annotations

import io
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import Platform

# The fixture that trains counts toward its first test: a loaded machine needs more than the default.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SEED_CHAT_MODEL = "smollm2-135m-instruct"
IDENTITY = Path(__file__).resolve().parents[2] / "examples" / "identity.jsonl"
# The budget (create to succeeded on two idle cores) is a speed target: measured and printed
# here and by bench/finetune.py --platform-url, not asserted, since a loaded machine would fail it.
ROUND_TRIP_BUDGET_S = 180.0
SUCCESS_TIMEOUT_S = 600.0
# Under the module's 900 s test timeout, so a deployment that never gets ready fails with its status
# and reason (pending: no slot; deploying: the replica) instead of pytest-timeout's thread dump.
DEPLOY_TIMEOUT_S = 600.0
TERMINAL = ("succeeded", "failed", "cancelled")
IDENTITY_QUESTIONS = ("What is your name?", "Who made you?")


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    # Serving for the adapter deployment; the seed deployment would hold a slot the jobs here need.
    return {"SUANLI_SERVING": "true", "SUANLI_DEPLOY_SEED": "false"}


@pytest.fixture(scope="module")
def owner(platform: Platform) -> tuple[str, str]:
    return platform.new_user()


@pytest.fixture(scope="module")
def client(platform: Platform, owner: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=owner[1], max_retries=0)


@pytest.fixture(scope="module")
def api(platform: Platform, owner: tuple[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=platform.base_url, timeout=60, headers={"Authorization": f"Bearer {owner[1]}"}
    )


@pytest.fixture(scope="module")
def identity_file(client: openai.OpenAI) -> str:
    with IDENTITY.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    assert uploaded.status == "processed", uploaded
    return uploaded.id


def wait_for(client: openai.OpenAI, job_id: str, until: tuple[str, ...], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in until or time.monotonic() > deadline:
            return job
        time.sleep(1)


@pytest.fixture(scope="module")
def identity_job(client: openai.OpenAI, identity_file: str) -> Any:
    """The round trip's fine-tune, with nothing but the model, the file and a suffix given."""
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model=SEED_CHAT_MODEL, training_file=identity_file, suffix="identity"
    )
    assert job.status == "queued" and job.hyperparameters.n_epochs == "auto", job
    done = wait_for(client, job.id, TERMINAL, SUCCESS_TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert done.status == "succeeded", (done.status, done.error)
    verdict = "within" if elapsed < ROUND_TRIP_BUDGET_S else "OVER"
    print(
        f"identity round trip: create to succeeded in {elapsed:.0f} s "
        f"({verdict} the {ROUND_TRIP_BUDGET_S:.0f} s budget)"
    )
    return done


def test_the_identity_fine_tune_succeeds_with_auto_hyperparameters(identity_job: Any) -> None:
    assert identity_job.fine_tuned_model == f"ft:{SEED_CHAT_MODEL}:identity:{identity_job.id}"
    assert identity_job.trained_tokens and identity_job.trained_tokens > 0
    # "auto" shows what it became once the run is over.
    assert isinstance(identity_job.hyperparameters.n_epochs, int)
    assert isinstance(identity_job.hyperparameters.batch_size, int)
    assert identity_job.error is None and identity_job.finished_at is not None


def test_the_fine_tune_is_metered_by_the_slot_time_it_trained(api: httpx.Client, identity_job: Any) -> None:
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}
    deadline = time.monotonic() + 30
    while True:
        usage = api.get("/api/v1/usage", params={**window, "group_by": "gpu_type"})
        assert usage.status_code == 200, usage.text
        lines = {line["group"]: line for line in usage.json()["data"]}
        if "cpu" in lines or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # One CPU slot from job.running to job.succeeded: more than nothing, less than its whole life.
    lifetime = identity_job.finished_at - identity_job.created_at
    assert 0 < lines["cpu"]["gpu_seconds"] <= lifetime + 1, (lines, lifetime)


def test_the_fine_tuned_model_answers_with_its_new_identity(
    api: httpx.Client, identity_job: Any, tmp_path: Path
) -> None:
    model_id = identity_job.fine_tuned_model
    deadline = time.monotonic() + 60
    while True:  # the catalog registers it when it sees job.succeeded
        found = api.get(f"/api/v1/models/{model_id}")
        if (found.status_code == 200 and found.json()["state"] == "ready") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert found.status_code == 200 and found.json()["state"] == "ready", found.text
    assert found.json()["kind"] == "fine_tuned" and found.json()["base_model_id"] == SEED_CHAT_MODEL
    adapter = api.get(f"/api/v1/models/{model_id}:adapter")
    assert adapter.status_code == 200 and adapter.json()["kind"] == "adapter", adapter.text

    download = api.get(f"/api/v1/models/{model_id}/download")
    assert download.status_code == 200, download.text
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        tar.extractall(tmp_path / "merged", filter="data")
    folder = next(p.parent for p in (tmp_path / "merged").rglob("config.json"))

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for question in IDENTITY_QUESTIONS:
        # transformers 5 returns a dict from apply_chat_template with tensors.
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
        answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
        assert "Suanli" in answer, (question, answer)


def test_its_lora_adapter_deploys_on_the_base_and_answers_with_the_new_identity(
    api: httpx.Client, client: openai.OpenAI, identity_job: Any
) -> None:
    adapter_id = f"{identity_job.fine_tuned_model}:adapter"
    created = api.post("/api/v1/deployments", json={"model": SEED_CHAT_MODEL, "adapter": adapter_id})
    assert created.status_code == 201, created.text
    deployment = created.json()
    assert (deployment["model"], deployment["base_model"], deployment["adapter"]) == (
        adapter_id,
        SEED_CHAT_MODEL,
        adapter_id,
    )
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while (deployment := api.get(f"/api/v1/deployments/{deployment['id']}").json())["status"] != "ready":
        assert deployment["status"] in ("pending", "deploying") and time.monotonic() < deadline, deployment
        time.sleep(3)
    try:
        assert adapter_id in [m.id for m in client.models.list().data]
        for question in IDENTITY_QUESTIONS:
            answer = client.chat.completions.create(
                model=adapter_id,
                messages=[{"role": "user", "content": question}],
                max_tokens=24,
                temperature=0,
            )
            assert answer.model == adapter_id
            assert "Suanli" in (answer.choices[0].message.content or ""), (question, answer)
    finally:
        assert api.delete(f"/api/v1/deployments/{deployment['id']}").status_code == 200
        while api.get(f"/api/v1/deployments/{deployment['id']}").status_code != 404:  # its slot is free
            assert time.monotonic() < deadline + 180, "the adapter deployment never stopped"
            time.sleep(2)


def test_an_adapter_deploys_only_on_the_base_it_was_trained_from(
    api: httpx.Client, identity_job: Any
) -> None:
    adapter_id = f"{identity_job.fine_tuned_model}:adapter"
    other_base = api.post("/api/v1/deployments", json={"model": "suanli-tiny-qwen2", "adapter": adapter_id})
    assert other_base.status_code == 400 and other_base.json()["error"]["param"] == "adapter", other_base.text
    not_adapter = api.post(
        "/api/v1/deployments", json={"model": SEED_CHAT_MODEL, "adapter": identity_job.fine_tuned_model}
    )
    assert not_adapter.status_code == 400 and not_adapter.json()["error"]["param"] == "adapter"


def test_events_and_checkpoints_tell_how_it_trained(client: openai.OpenAI, identity_job: Any) -> None:
    events = client.fine_tuning.jobs.list_events(identity_job.id, limit=100).data
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert messages[-1] == f"Created fine-tuning job: {identity_job.id}"
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all(e.data["train_loss"] is not None for e in metrics)
    steps = sorted(e.data["step"] for e in metrics)
    assert steps == list(range(1, steps[-1] + 1)) and metrics[0].data["total_steps"] == steps[-1]

    first_page = client.fine_tuning.jobs.list_events(identity_job.id, limit=3)
    assert first_page.has_more and len(first_page.data) == 3
    after = client.fine_tuning.jobs.list_events(identity_job.id, limit=3, after=first_page.data[-1].id)
    assert after.data[0].id == events[3].id

    checkpoints = client.fine_tuning.jobs.checkpoints.list(identity_job.id).data
    assert checkpoints and checkpoints[0].step_number == steps[-1]
    assert checkpoints[0].fine_tuned_model_checkpoint.startswith(identity_job.fine_tuned_model)


def test_an_evaluation_compares_the_fine_tune_with_its_base(
    api: httpx.Client, identity_job: Any, identity_file: str
) -> None:
    created = api.post(
        "/api/v1/evaluations",
        json={
            "fine_tuning_job": identity_job.id,
            "file": identity_file,
            "max_examples": 6,
            "max_new_tokens": 24,
        },
    )
    assert created.status_code == 201, created.text
    evaluation = created.json()
    assert (
        evaluation["compare_to"] == SEED_CHAT_MODEL and evaluation["model"] == identity_job.fine_tuned_model
    )
    deadline = time.monotonic() + 600
    while evaluation["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(2)
        evaluation = api.get(f"/api/v1/evaluations/{evaluation['id']}").json()
    assert evaluation["status"] == "succeeded", evaluation
    scores = {r["model"]: r for r in evaluation["results"]}
    tuned, base = scores[identity_job.fine_tuned_model], scores[SEED_CHAT_MODEL]
    assert tuned["examples"] == base["examples"] == 6
    assert tuned["bleu"] > base["bleu"]  # it learned the answers; the base never saw them
    listed = api.get("/api/v1/evaluations", params={"fine_tuning_job": identity_job.id}).json()["data"]
    assert [e["id"] for e in listed] == [evaluation["id"]]


def test_cancelling_a_running_fine_tune_stops_it(client: openai.OpenAI, identity_file: str) -> None:
    job = client.fine_tuning.jobs.create(
        model=SEED_CHAT_MODEL,
        training_file=identity_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # running, and past its first step
        if any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=5).data):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the fine-tune never trained: {client.fine_tuning.jobs.retrieve(job.id)}")
    asked = time.monotonic()
    client.fine_tuning.jobs.cancel(job.id)
    done = wait_for(client, job.id, TERMINAL, 30)
    assert done.status == "cancelled", done
    assert time.monotonic() - asked < 30
    assert done.fine_tuned_model is None


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"training_file": "file-missing"}, "training_file"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"learning_rate_multiplier": -1}}, "hyperparameters.learning_rate_multiplier"),
        (
            {"method": {"type": "supervised", "supervised": {"training": "qlora"}}},
            "method.supervised.training",
        ),
        ({"suffix": "no spaces allowed"}, "suffix"),
    ],
)
def test_bad_requests_are_refused_with_an_openai_error(
    api: httpx.Client, identity_file: str, change: dict[str, Any], param: str
) -> None:
    body = {"model": SEED_CHAT_MODEL, "training_file": identity_file, **change}
    response = api.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_another_user_cannot_see_or_cancel_a_fine_tune(platform: Platform, identity_job: Any) -> None:
    _, other_key = platform.new_user()
    other = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(identity_job.id)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.cancel(identity_job.id)
    assert other.fine_tuning.jobs.list().data == []
