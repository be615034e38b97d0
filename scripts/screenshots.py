"""Screenshots of every UI page for docs/ui.md: `python scripts/screenshots.py URL TOKEN
DIR` logs in with TOKEN (Chromium through Playwright) and saves one PNG per page. The
demo calls it at its end when CONVEYOR_DEMO_SCREENSHOTS names a folder."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright


def first(page: Page, pattern: str) -> str | None:
    found = re.search(pattern, page.content())
    return found.group(1) if found else None


def main(url: str, token: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/login")
        page.screenshot(path=folder / "login.png")
        page.fill("input[name=token]", token)
        page.click("button:has-text('Log in')")
        page.wait_for_url(url + "/")

        def shot(path: str, name: str) -> None:
            page.goto(url + path)
            page.wait_for_timeout(1500)  # live parts (logs, charts) fill in
            page.screenshot(path=folder / f"{name}.png", full_page=True)

        shot("/", "overview")
        project = first(page, r'href="(/p/[^/"]+/[^/"]+)"')
        if project:
            shot(project, "runs")
            run = first(page, r'href="(/runs/[0-9a-f-]{36})"')
            if run:
                shot(run, "run")
                job = first(page, r'href="(/jobs/[0-9a-f-]{36})"')
                if job:
                    shot(job, "log")
            shot(project + "/env/production", "environment")
            shot(project + "/env/production/timeline", "timeline")
            shot(project + "/environments", "environments")
            shot(project + "/artifacts", "artifacts")
            shot(project + "/deliveries", "deliveries")
        shot("/projects", "projects")
        shot("/runners", "runners")
        shot("/audit", "audit")
        shot("/approvals", "approvals")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
