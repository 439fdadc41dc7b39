"""The console's training pages in a real browser against the real platform: upload a dataset (the
progress bar reaches 100 %, the file is listed and previewed) and a broken one (its errors shown by
line); start a fine-tune of the tiny test model from the form and watch its page (the loss chart
gains points while it runs, the log tail shows its steps, it succeeds); submit a custom job and
follow its log to the end; a bad job form shows the API's message naming the field."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from console import browser_page, screenshot, sign_in
from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from conftest import Platform

# The module's platform starts inside its first test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PASSWORD = "correct-horse-1"
BASE_MODEL = "suanli-tiny-qwen2"
EXAMPLES = [
    ("What is Suanli?", "Suanli is a self-hosted cloud for training and serving language models."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Say hello.", "Hello, how are you today?"),
    ("How are you?", "I am fine, thank you."),
    ("Count to five.", "1 2 3 4 5"),
    ("Who are you?", "I am Suanli, a helpful assistant."),
]
# Enough steps (about 4 s on an idle machine) that the page is seen while the tiny model trains.
EPOCHS, BATCH_SIZE = 40, 1
TOTAL_STEPS = EPOCHS * len(EXAMPLES) // BATCH_SIZE
FINE_TUNE_TIMEOUT_S = 480.0
EVALUATION_TIMEOUT_MS = 300_000
CHART_POINTS = """() => {
  const chart = window.Chart && window.Chart.getChart(document.getElementById("ft-chart"));
  return chart ? chart.data.datasets[0].data.length : -1;
}"""


def jsonl(rows: list[tuple[str, str]]) -> str:
    return "".join(
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in rows
    )


@pytest.fixture(scope="module")
def account(platform: Platform) -> tuple[str, str]:
    """A new user's (email, API token) for the browser to sign in as."""
    email = f"console-training-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=platform.base_url, timeout=30) as api:
        created = api.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return email, str(login.json()["access_token"])


@pytest.fixture(scope="module")
def training_file(platform: Platform, account: tuple[str, str]) -> str:
    """A dataset uploaded over the API, for the fine-tune test not to depend on the upload test."""
    with httpx.Client(base_url=platform.base_url, timeout=60) as api:
        uploaded = api.post(
            "/v1/files",
            headers={"Authorization": f"Bearer {account[1]}"},
            data={"purpose": "fine-tune"},
            files={"file": ("train.jsonl", jsonl(EXAMPLES).encode(), "application/jsonl")},
        )
    assert uploaded.status_code == 200, uploaded.text
    return str(uploaded.json()["id"])


def signed_in(page: Page, platform: Platform, account: tuple[str, str]) -> None:
    sign_in(page, platform, account[0], PASSWORD)


def test_datasets_upload_with_progress_preview_and_line_numbered_errors(
    platform: Platform, account: tuple[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "console-good.jsonl"
    good.write_text(jsonl(EXAMPLES))
    broken = tmp_path / "console-broken.jsonl"
    broken.write_text(jsonl(EXAMPLES[:1]) + "not json at all\n" + jsonl(EXAMPLES[1:2]) + '{"text": 1}\n')

    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/datasets")
        expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()

        page.locator(".upload-form input[type=file]").set_input_files(str(good))
        page.get_by_role("button", name="Upload", exact=True).click()
        bar = page.locator(".upload-progress [role=progressbar]")
        expect(bar).to_have_attribute("aria-valuenow", "100")
        expect(page.locator(".upload-progress")).to_contain_text("100%")
        expect(page.locator(".upload-result")).to_contain_text(f"{len(EXAMPLES)} examples")
        row = page.locator(".datasets-list tr", has_text="console-good.jsonl")
        expect(row).to_be_visible()
        expect(row).to_contain_text("openai_messages")

        row.get_by_role("button", name="Preview").click()
        expect(page.locator(".preview")).to_contain_text("What is Suanli?")
        screenshot(page, "console-datasets")

        page.locator(".upload-form input[type=file]").set_input_files(str(broken))
        page.get_by_role("button", name="Upload", exact=True).click()
        errors = page.locator(".validation-errors")
        expect(errors).to_be_visible()
        expect(errors).to_contain_text("console-broken.jsonl is not a valid fine-tune file")
        expect(errors.locator("li[data-line='2']")).to_contain_text("Line 2")
        expect(errors.locator("li[data-line='4']")).to_contain_text("Line 4")
        screenshot(page, "console-datasets-refused")
        # Refused: never listed.
        expect(page.locator(".datasets-list tr", has_text="console-broken.jsonl")).to_have_count(0)


def watch_chart(page: Page) -> list[tuple[str, int]]:
    """(status, chart points) as the fine-tune's page shows them, sampled until it ends."""
    samples: list[tuple[str, int]] = []
    shot: Path | None = None
    deadline = time.monotonic() + FINE_TUNE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = page.locator("#ft-status [data-status]").get_attribute("data-status") or ""
        samples.append((status, int(page.evaluate(CHART_POINTS))))
        if status == "running" and samples[-1][1] > 0 and not shot:
            shot = screenshot(page, "console-fine-tune-running")
        if status in ("succeeded", "failed", "cancelled"):
            break
        page.wait_for_timeout(200)
    return samples


def test_a_fine_tune_started_from_the_form_is_watched_live(
    platform: Platform, account: tuple[str, str], training_file: str
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/fine-tunes/new?model={BASE_MODEL}&file={training_file}")
        expect(page.locator("#ft-model")).to_have_value(BASE_MODEL)
        expect(page.locator("#ft-training-file")).to_have_value(training_file)
        expect(page.locator("#ft-epochs")).to_have_value("auto")

        # A refused request shows the API's message naming the parameter.
        page.locator("#ft-suffix").fill("not a suffix!")
        page.locator("#ft-submit").click()
        expect(page.locator(".form-result [role=alert]")).to_contain_text("suffix")
        screenshot(page, "console-fine-tune-form")

        page.locator("#ft-suffix").fill("console")
        page.locator("#ft-epochs").fill(str(EPOCHS))
        page.locator("#ft-batch-size").fill(str(BATCH_SIZE))
        page.locator("#ft-lr").fill("10")
        page.locator("#ft-submit").click()
        expect(page).to_have_url(re.compile(r"#/fine-tunes/job_"))
        job_id = page.url.rsplit("/", 1)[1]

        samples = watch_chart(page)
        assert samples[-1][0] == "succeeded", samples[-20:]
        # Live: while it ran, the chart held some of the steps, and later more of them.
        running = [points for status, points in samples if status == "running" and points > 0]
        assert running, samples
        assert len({points for _, points in samples if points > 0}) >= 2, samples
        expect(page.locator("#ft-status")).to_contain_text("succeeded")
        assert page.evaluate(CHART_POINTS) == TOTAL_STEPS
        expect(page.locator(".log-tail")).to_contain_text(f"step 1/{TOTAL_STEPS}")
        expect(page.locator(".events")).to_contain_text("The job has successfully completed")
        expect(page.locator(".checkpoints")).to_contain_text(f"ckpt-step-{TOTAL_STEPS}")
        expect(page.locator("#ft-download")).to_be_visible()
        expect(page.locator(".facts")).to_contain_text(f"ft:{BASE_MODEL}:console:{job_id}")
        expect(page.locator("#page")).not_to_contain_text("null")
        with page.expect_download() as download:
            page.locator("#ft-download").click()
        assert download.value.suggested_filename.endswith(".tar")
        assert Path(download.value.path()).stat().st_size > 0

        evaluations = page.locator("section:has(#ft-eval-title)")
        page.locator("#ft-eval-max").fill("2")
        evaluations.get_by_role("button", name="Evaluate").click()
        expect(evaluations.locator("tbody tr")).to_have_count(2, timeout=EVALUATION_TIMEOUT_MS)
        expect(evaluations.locator("[data-status]").first).to_have_attribute("data-status", "succeeded")
        expect(evaluations).to_contain_text(BASE_MODEL)
        screenshot(page, "console-fine-tune-detail")

        page.goto(f"{platform.base_url}/#/fine-tunes")
        row = page.locator("tr", has_text=job_id)
        expect(row.locator("[data-status]")).to_have_attribute("data-status", "succeeded")
        screenshot(page, "console-fine-tunes")


def submit_job(page: Page, fields: dict[str, Any]) -> None:
    for selector, value in fields.items():
        page.locator(selector).fill(str(value))
    page.get_by_role("button", name="Submit job").click()


def test_a_custom_job_runs_from_the_form_and_a_bad_one_is_refused_readably(
    platform: Platform, account: tuple[str, str]
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/jobs/new")
        submit_job(
            page, {"#job-name": "hello", "#job-command": "echo hello from the console", "#job-nodes": 0}
        )
        alert = page.locator(".form-result [role=alert]")
        expect(alert).to_contain_text("'nodes'")
        expect(page.locator("#job-nodes")).to_have_attribute("aria-invalid", "true")
        screenshot(page, "console-job-form-refused")

        page.get_by_role("button", name="Add variable").click()
        page.locator(".env-key").fill("GREETING")
        page.locator(".env-value").fill("hi")
        submit_job(page, {"#job-nodes": 1, "#job-save": "out"})
        expect(page).to_have_url(re.compile(r"#/jobs/job_"))
        job_id = page.url.rsplit("/", 1)[1]
        expect(page.locator(".log-tail")).to_contain_text("hello from the console")
        expect(page.locator("h1 + [data-status]")).to_have_attribute("data-status", "succeeded")
        expect(page.locator(".facts")).to_contain_text("GREETING=hi")
        expect(page.locator("#page")).not_to_contain_text("null")
        screenshot(page, "console-job-detail")

        page.goto(f"{platform.base_url}/#/jobs")
        expect(page.locator("tr", has_text=job_id)).to_contain_text("hello")
        screenshot(page, "console-jobs")

        page.locator("#lang-switch").click()
        expect(page.get_by_role("heading", name="自定义任务")).to_be_visible()
        expect(page.locator("tr", has_text=job_id).locator("[data-status]")).to_have_text("已成功")
