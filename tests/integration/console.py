"""Browser helpers of the console's tests: Playwright's sync API driving Debian's Chromium
(/usr/bin/chromium; Playwright's own browser download is not possible here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

if TYPE_CHECKING:
    from conftest import Platform

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# The machine is slow and shared: a page may take a while to answer, never a test's verdict.
TIMEOUT_MS = 30_000


@contextmanager
def browser_page(platform: Platform, *, phone: bool = False) -> Iterator[Page]:
    """A page in a fresh browser context (no session, English unless the test switches), whose
    relative URLs are the platform's; the browser's JavaScript errors are printed for the test log."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                base_url=platform.base_url,
                viewport=PHONE if phone else DESKTOP,
                locale="en-US",
                is_mobile=phone,
                has_touch=phone,
            )
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=platform.base_url)
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page = context.new_page()
            page.on("pageerror", lambda error: print(f"browser error: {error}"))
            yield page
            context.close()
        finally:
            browser.close()


def sign_in(page: Page, platform: Platform, email: str, password: str) -> None:
    """Signs in through the console's own login form; returns once the signed-in header shows."""
    page.goto(f"{platform.base_url}/#/login")
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(password)
    page.locator("#login-submit").click()
    expect(page.locator("#sign-out")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r"#/login"))


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG in test-artifacts/screenshots/<name>.png (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
