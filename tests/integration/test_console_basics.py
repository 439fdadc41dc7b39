"""The console's shell in a real browser against the real platform: sign-up, sign-out, sign-in
with a password and with an e-mailed code, API keys, models, GPUs, usage, the language switch,
readable API errors and a phone-size screen. Every page visited is saved as a screenshot."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from console import browser_page, screenshot, sign_in
from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration

SEED_CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
PASSWORD = "correct-horse-1"


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    # Every test signs in through the browser from 127.0.0.1: more than the default 20 a minute.
    return {"SUANLI_SIGNIN_LIMIT_PER_IP": "1000"}


@pytest.fixture
def page(platform: Platform) -> Iterator[Page]:
    with browser_page(platform) as page:
        yield page


def new_email() -> str:
    return f"console-{uuid.uuid4().hex[:10]}@example.com"


def new_account(platform: Platform) -> str:
    """A user signed up over HTTP; its e-mail (the password is PASSWORD)."""
    email = new_email()
    created = httpx.post(
        f"{platform.base_url}/api/v1/auth/signup", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert created.status_code == 201, created.text
    return email


def read_code(home: Path, email: str, timeout: float = 30) -> str:
    """The newest sign-in code mailed to `email`, from the embedded mailer's outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in sorted((home / "outbox").glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
            text = mail.read_text()
            if email in text:
                match = re.search(r"\b(\d{6})\b", text)
                assert match, text
                return match.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no mail for {email} in {home / 'outbox'}")


def test_sign_up_sign_out_and_sign_in_with_a_password(page: Page, platform: Platform) -> None:
    email = new_email()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"#/login"))  # the guard: no session, no console
    page.get_by_role("link", name="Create one").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "basics-signup")
    page.get_by_role("button", name="Create account").click()

    expect(page.locator("#who")).to_have_text(f"Signed in as {email}")
    expect(page).to_have_url(re.compile(r"#/models"))
    expect(page.get_by_role("navigation").get_by_role("link", name="API keys")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"#/login"))
    expect(page.locator("#sign-out")).to_be_hidden()
    expect(page.get_by_role("navigation")).to_be_hidden()
    page.goto("/#/keys")  # signed out: the guard sends a deep link to the sign-in form
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "basics-login")

    sign_in(page, platform, email, PASSWORD)
    expect(page.locator("#who")).to_have_text(f"Signed in as {email}")


def test_sign_in_with_an_emailed_code(page: Page, platform: Platform) -> None:
    email = new_account(platform)
    page.goto("/#/login")
    page.get_by_role("button", name="E-mail code").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("status")).to_contain_text("a code is on its way")
    page.get_by_label("Code from the e-mail").fill(read_code(platform.home, email))
    screenshot(page, "basics-login-code")
    page.locator("#login-submit").click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {email}")


def test_a_wrong_password_shows_the_apis_message(page: Page, platform: Platform) -> None:
    email = new_account(platform)
    page.goto("/#/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not-the-password")
    page.locator("#login-submit").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("incorrect email or password")
    expect(page.locator("#login-submit")).to_be_visible()  # the form stays, not a blank page
    screenshot(page, "basics-wrong-password")


def test_an_expired_session_and_a_missing_model_say_so(page: Page, platform: Platform) -> None:
    page.goto("/#/login")
    stale = {"token": "expired", "email": "x@example.com"}
    page.evaluate("(stale) => localStorage.setItem('suanli.session', JSON.stringify(stale))", stale)
    page.goto("/#/keys")  # the API answers 401: the console forgets the token and asks to sign in
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/login\?next="))
    page.get_by_label("Email").fill(new_account(platform))
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#login-submit").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()  # back where it was going

    page.goto("/#/models/no-such-model")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("model 'no-such-model' not found")
    expect(alert.get_by_role("button", name="Retry")).to_be_visible()
    screenshot(page, "basics-missing-model")


def test_an_api_key_is_shown_once_works_and_is_revoked(page: Page, platform: Platform) -> None:
    sign_in(page, platform, new_account(platform), PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name").fill("console laptop")
    page.get_by_role("button", name="Create key").click()

    secret = page.locator("#new-key-secret")
    expect(secret).to_be_visible()
    key = secret.inner_text()
    expect(page.locator("#key-created").get_by_role("button", name="Copy")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("console laptop"))
    expect(row).to_contain_text("active")
    screenshot(page, "basics-key-created")
    me = httpx.get(f"{platform.base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200, me.text

    page.reload()  # shown once: a new visit lists the key without its secret
    expect(row).to_be_visible()
    expect(page.locator("#new-key-secret")).to_have_count(0)
    assert key not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke key console laptop").click()
    expect(row).to_contain_text("revoked")
    screenshot(page, "basics-key-revoked")
    me = httpx.get(f"{platform.base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 401, me.text


def test_models_list_the_seed_models_with_details(page: Page, platform: Platform) -> None:
    sign_in(page, platform, new_account(platform), PASSWORD)
    page.goto("/#/models")
    base = page.locator('section[data-kind="base"]')
    row = base.get_by_role("row", name=re.compile(SEED_CHAT_MODEL))
    expect(row).to_contain_text("LlamaForCausalLM")
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("default chat model")
    expect(row.get_by_role("link", name="Fine-tune")).to_have_attribute(
        "href", f"#/fine-tunes/new?model={SEED_CHAT_MODEL}"
    )
    expect(row.get_by_role("link", name="Deploy")).to_have_attribute(
        "href", f"#/deployments/new?model={SEED_CHAT_MODEL}"
    )
    expect(row.get_by_role("button", name="Download")).to_be_visible()
    expect(page.locator('section[data-kind="embedding"]')).to_contain_text(EMBEDDING_MODEL)
    expect(page.get_by_role("heading", name="Fine-tuned models")).to_be_visible()
    expect(page.get_by_role("heading", name="Adapters")).to_be_visible()
    screenshot(page, "basics-models")

    row.get_by_role("link", name=SEED_CHAT_MODEL).click()
    expect(page.get_by_role("heading", name=SEED_CHAT_MODEL)).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("LlamaForCausalLM")
    files = page.get_by_role("row", name=re.compile(r"^config\.json"))
    expect(files).to_be_visible()
    with page.expect_download() as download:
        files.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == "config.json"
    assert '"architectures"' in Path(download.value.path()).read_text()
    screenshot(page, "basics-model-detail")


def test_gpu_and_usage_pages(page: Page, platform: Platform) -> None:
    sign_in(page, platform, new_account(platform), PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="GPUs").click()
    by_type = page.locator("#gpu-inventory table").first
    expect(by_type.get_by_role("row", name=re.compile(r"^cpu"))).to_contain_text("0 of 2 used")
    expect(page.locator("#gpu-inventory table").nth(1)).to_contain_text("cpu")
    screenshot(page, "basics-gpus")

    page.get_by_role("navigation").get_by_role("link", name="Usage").click()
    usage = page.frame_locator("#usage-frame")
    expect(usage.get_by_role("heading", name="Usage and balance")).to_be_visible()
    expect(usage.locator("#balance-amount")).not_to_have_text(re.compile(r"^(—|Loading…)$"))
    expect(usage.locator("#usage-status")).to_contain_text("lines shown")
    expect(usage.locator(".topbar")).to_be_hidden()  # the console's header stands in for it
    screenshot(page, "basics-usage")

    page.goto("/usage.html")  # the page on its own still works, with its own header
    expect(page.locator(".topbar")).to_be_visible()
    expect(page.get_by_role("heading", name="Usage and balance")).to_be_visible()
    expect(page.locator("#usage-status")).to_contain_text("lines shown")


def test_the_language_switch_to_chinese_stays_after_a_reload(page: Page, platform: Platform) -> None:
    sign_in(page, platform, new_account(platform), PASSWORD)
    page.goto("/#/gpus")
    expect(page.get_by_role("heading", name="GPUs", exact=True)).to_be_visible()
    page.get_by_role("button", name=re.compile("switch to Chinese")).click()
    expect(page.get_by_role("heading", name="GPU 资源")).to_be_visible()
    expect(page.get_by_role("navigation").get_by_role("link", name="模型")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.reload()
    expect(page.get_by_role("heading", name="GPU 资源")).to_be_visible()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    screenshot(page, "basics-chinese")


def test_a_phone_size_screen_folds_the_nav_behind_a_menu(platform: Platform) -> None:
    with browser_page(platform, phone=True) as page:
        sign_in(page, platform, new_account(platform), PASSWORD)
        nav = page.get_by_role("navigation")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(nav).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav.get_by_role("link", name="API keys")).to_be_visible()
        screenshot(page, "basics-phone-menu")
        nav.get_by_role("link", name="API keys").click()
        expect(page.get_by_role("heading", name="API keys")).to_be_visible()
        expect(nav).to_be_hidden()  # it folds again once a page is chosen
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        screenshot(page, "basics-phone-keys")
