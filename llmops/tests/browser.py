"""Admin tests in a real browser: Playwright for Python driving Debian's Chromium, headless.

A pytest plugin (loaded by the root conftest). The browser is `/usr/bin/chromium` (`apt-get install -y
chromium`; `.ci/run` installs it when missing), never one that `playwright install` downloads. Without
it the browser tests are skipped, except in CI, where they fail: a browser test that never ran
proves nothing.

`admin_browser` logs a superuser in through the admin's own login form on the test's live server and
hands the test a page and `shot(name)`, which writes a numbered screenshot of the page to
`$ADMIN_SCREENSHOTS/<test name>/` (default `var/screenshots/`): look at them, they are the evidence.
"""

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "a-browser-test-password"  # a test user's


def screenshots_root() -> Path:
    return Path(os.environ.get("ADMIN_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "var" / "screenshots")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing: `apt-get install -y chromium` (never `playwright install`)."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls a test makes between two
    # page actions are still plain synchronous calls, so Django's async-safety guard is told so.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class AdminBrowser:
    page: Any
    base_url: str
    user: Any
    folder: Path
    taken: list[Path] = field(default_factory=list)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def follow(self, selector: str) -> None:
        """Clicks a link or button and waits for the page it loads."""
        with self.page.expect_navigation():
            self.page.click(selector)

    def text(self) -> str:
        """The page's visible text, whitespace collapsed (wrapping does not matter)."""
        return " ".join(self.page.inner_text("body").split())

    def shot(self, name: str) -> Path:
        """A full-page screenshot, numbered in the order taken."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def admin_browser(chromium: Any, live_server: Any, django_user_model: Any, request: Any) -> Iterator[AdminBrowser]:
    user = django_user_model.objects.create_superuser(username="staff", email="staff@example.com", password=PASSWORD)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    folder = screenshots_root() / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    browser = AdminBrowser(page=page, base_url=live_server.url, user=user, folder=folder)
    browser.go("/admin/login/?next=/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/$"))
    try:
        yield browser
    finally:
        context.close()



