"""The UI in a real browser (Chromium, driven by Playwright) against a real `conveyor
serve`, runner, git repository and HAProxy: log in, follow a run's graph and its live
log to the end, watch a canary's split change, press abort and see the traffic go to
0 %, approve a waiting deployment; a viewer sees no buttons; a log line with `<script>`
is text."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.api.conftest import repo_with
from tests.deploy.conftest import Stack
from tests.helpers import conveyor, process

PIPELINE = """\
version: 1
service: svc
team: a
jobs:
  build:
    script:
      - echo "<script>alert(1)</script>"
      - for i in 1 2 3 4 5; do echo "line $i"; sleep 0.4; done
      - printf '\\033[31mred\\033[0m done\\n'
  test:
    needs: [build]
    script: ["echo tested"]
"""


def login(page: Page, stack: Stack, token: str) -> None:
    page.goto(stack.url + "/login")
    page.fill("input[name=token]", token)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(stack.url + "/")


def token(stack: Stack, role: str) -> str:
    made = stack.cli("token", "create", "--team", "a", "--name", role, "--role", role)
    return made.stdout.strip()


def test_a_run_s_graph_and_live_log_to_the_end(stack: Stack, page: Page, tmp_path: Path):
    source = repo_with(tmp_path / "svc", PIPELINE)
    stack.cli("project", "create", "a/svc", "--repo", f"file://{source}")
    registration = stack.cli("runner-token", "create", "--team", "a").stdout.strip()
    runner = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "runner"))
    login(page, stack, token(stack, "developer"))
    with process(runner, tmp_path / "runner.log", stack.env):
        run = json.loads(stack.cli("trigger", "a/svc", "--ref", "main", "--json").stdout)
        page.goto(f"{stack.url}/runs/{run['id']}")
        build = page.locator('a[data-job="build"]')
        expect(build).to_be_visible()
        build.click()
        log = page.locator("#log")
        expect(log).to_contain_text("line 1")
        expect(page.locator("#job-status")).to_have_text("success", timeout=60_000)
        expect(log).to_contain_text("line 5")
        # What the job printed is text, never markup.
        expect(log).to_contain_text("<script>alert(1)</script>")
        assert page.locator("#log script").count() == 0
        assert page.locator("#log span[style*='color']").count() >= 1  # ANSI red
        expect(page.locator("#L1")).to_be_attached()
        page.goto(f"{stack.url}/runs/{run['id']}")
        expect(page.locator("#run-status")).to_have_text("success", timeout=60_000)
        expect(page.locator('a[data-job="test"]')).to_have_attribute("data-status", "success")


def test_a_canary_s_split_changes_and_abort_sends_it_to_zero(stack: Stack, page: Page):
    v1, v2 = stack.upload("v1"), stack.upload("v2")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    login(page, stack, token(stack, "developer"))
    page.goto(f"{stack.url}/p/a/pay/env/production")
    canary = page.locator("#canary")
    expect(canary).to_have_text("0.0")
    stack.deploy("production", v2, strategy="canary", steps="50,pause")
    expect(canary).to_have_text("50.0", timeout=60_000)  # the page follows by itself
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-command=abort]")
    expect(canary).to_have_text("0.0", timeout=30_000)
    expect(page.locator("#phase")).to_have_text("aborted", timeout=30_000)
    assert stack.status("production")["traffic"]["canary"] == 0.0


def test_a_viewer_sees_no_buttons(stack: Stack, page: Page):
    v1 = stack.upload("v1")
    stack.wait_phase("staging", stack.deploy("staging", v1)["number"], {"succeeded"})
    login(page, stack, token(stack, "viewer"))
    page.goto(f"{stack.url}/p/a/pay/env/staging")
    expect(page.locator("#phase")).to_be_visible()
    assert page.locator("button.act").count() == 0
    page.goto(stack.url + "/")
    assert page.locator("button.act").count() == 0


def test_a_maintainer_approves_a_waiting_deployment(stack: Stack, page: Page):
    rules = {"required_approvals": 1}
    protect = stack.api("PUT", "/api/v1/projects/a/pay/environments/staging/protection", json=rules)
    assert protect.status_code == 200, protect.text
    waiting = stack.deploy("staging", stack.upload("v1"))
    assert waiting["awaiting_approval"]
    login(page, stack, token(stack, "maintainer"))
    page.goto(stack.url + "/approvals")
    card = page.locator(f'[data-deployment="{waiting["id"]}"]')
    expect(card).to_contain_text("staging requires 1 approval by a maintainer")
    card.locator("input[name=comment]").first.fill("looks fine")
    card.locator("button:has-text('approve')").click()
    expect(page.locator(f'[data-deployment="{waiting["id"]}"]')).to_have_count(0)
    stack.wait_phase("staging", waiting["number"], {"succeeded"})
    decided = stack.api("GET", f"/api/v1/deployments/{waiting['id']}").json()
    assert [(d["decision"], d["comment"]) for d in decided["approval"]["decisions"]] == [
        ("approve", "looks fine")
    ]


def test_a_maintainer_finds_a_project_its_environment_artifacts_runners_and_audit_log(
    stack: Stack, page: Page
):
    """Issue 19 §3: navigation a GitLab user expects, by clicking."""
    v1 = stack.upload("v1")
    stack.wait_phase("staging", stack.deploy("staging", v1)["number"], {"succeeded"})
    login(page, stack, token(stack, "maintainer"))
    page.click("header >> text=Projects")
    page.fill("input[name=q]", "PAY")
    page.click("button.find")
    expect(page.locator("main")).to_contain_text("1 project")
    page.click("main >> a:has-text('pay')")
    expect(page).to_have_url(stack.url + "/p/a/pay")
    page.click("nav.tabs >> text=Environments")
    expect(page.locator("main table")).to_contain_text("staging")
    page.click("main table >> a:has-text('staging')")
    expect(page.locator("#phase")).to_have_text("succeeded")
    # What the environment's state allows, and no more: nothing is in progress.
    expect(page.locator("button[data-command=abort]")).to_have_count(0)
    expect(page.locator("table.timeline")).to_contain_text("revision 1 begins")
    page.goto(stack.url + "/p/a/pay")
    page.click("nav.tabs >> text=Artifacts")
    expect(page.locator("main table")).to_contain_text(v1[7:19])
    page.click("header >> text=Runners")
    expect(page.locator("h1")).to_have_text("Runners")
    page.click("header >> text=Audit log")
    expect(page.locator("main table")).to_contain_text("deploy")
    page.screenshot(path=str(stack.data.parent / "audit.png"))
