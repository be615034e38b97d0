"""Browser tests: Playwright driving Debian's Chromium (`apt-get install chromium`;
Playwright's own browser download is not reachable here) against a real `conveyor
serve` with HAProxy (the deploy tests' stack)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.deploy.conftest import haproxy_required, stack  # noqa: F401 - fixtures

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """One per test, asked for after the stack: Playwright's event loop is gone before
    the stack's teardown runs its own (stopping HAProxy)."""
    if not os.path.exists(CHROMIUM):
        message = (
            "Chromium is not installed: the browser tests need it "
            "(apt-get install -y --no-install-recommends chromium; .ci/run does this)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()
