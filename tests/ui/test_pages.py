"""The UI's pages and buttons in-process: login and its cookie, team isolation and roles
as the API has them, CSRF on every form, and escaping of what users control."""

from __future__ import annotations

import json

from tests.helpers import wait_until
from tests.ui.conftest import Site


def trigger(site: Site, team: str = "a") -> dict:  # type: ignore[type-arg]
    made = site.client.post(
        f"/api/v1/projects/{team}/api/runs",
        json={"ref": "main"},
        headers={"Authorization": f"Bearer {site.tokens[f'{team}:developer']}"},
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_pages_need_a_login_and_the_cookie_is_httponly(site: Site):
    assert site.client.get("/", follow_redirects=False).headers["location"] == "/login"
    refused = site.client.post("/login", data={"token": "cvy_team_nope"})
    assert refused.status_code == 401 and "unknown token" in refused.text
    site.client.cookies.clear()
    answer = site.client.post(
        "/login", data={"token": site.tokens["a:viewer"]}, follow_redirects=False
    )
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert site.tokens["a:viewer"] not in cookie  # sealed, not readable
    page = site.client.get("/")
    assert page.status_code == 200 and "a/api" in page.text and "b/api" not in page.text
    site.client.cookies.set("conveyor_session", "forged")
    assert site.client.get("/", follow_redirects=False).status_code == 303


def test_a_run_page_shows_its_graph_and_another_team_gets_404(site: Site):
    run = trigger(site)
    client = site.login("a:viewer")
    page = client.get(f"/runs/{run['id']}")
    assert page.status_code == 200
    for job in run["jobs"]:
        assert f'data-job="{job["name"]}"' in page.text
    assert "retry</button>" not in page.text  # a viewer sees no buttons
    assert client.get("/p/a/api").status_code == 200
    site.login("b:owner")
    assert site.client.get(f"/runs/{run['id']}").status_code == 404
    assert site.client.get("/p/a/api").status_code == 404
    assert site.client.get(f"/jobs/{run['jobs'][0]['id']}").status_code == 404


def test_buttons_need_the_forms_csrf_token_and_the_role(site: Site):
    run = trigger(site)
    client = site.login("a:developer")
    token = site.csrf(f"/runs/{run['id']}")
    refused = client.post(f"/runs/{run['id']}/cancel", data={})
    assert refused.status_code == 403 and "CSRF" in refused.text
    canceled = client.post(
        f"/runs/{run['id']}/cancel", data={"csrf": token}, follow_redirects=False
    )
    assert canceled.status_code == 303
    assert (
        client.get(
            f"/api/v1/runs/{run['id']}",
            headers={"Authorization": f"Bearer {site.tokens['a:developer']}"},
        ).json()["status"]
        == "canceled"
    )
    viewer = site.login("a:viewer")
    token = site.csrf("/")
    denied = viewer.post(f"/runs/{run['id']}/retry", data={"csrf": token})
    assert denied.status_code == 403


def test_what_users_control_is_escaped(site: Site):
    trigger(site)
    client = site.login("a:viewer")
    page = client.get("/p/a/api", params={"ref": "<script>alert(1)</script>"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def _runner(site: Site) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {site.tokens['admin']}"}
    reg = site.client.post("/api/v1/runner-tokens", json={}, headers=admin).json()["token"]
    made = site.client.post("/api/v1/runners/register", json={"token": reg, "name": "r"})
    return {"Authorization": f"Bearer {made.json()['token']}"}


def _events(text: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_a_log_streams_as_escaped_coloured_numbered_lines(site: Site):
    trigger(site)
    runner = _runner(site)
    job = site.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=runner
    ).json()
    text = "first\n<script>alert(1)</script>\n\x1b[31mred\x1b[0m\n"
    site.client.put(
        f"/api/v1/runners/jobs/{job['job_id']}/log",
        params={"fence": job["fence"], "offset": 0},
        content=text.encode(),
        headers=runner,
    ).raise_for_status()
    site.client.post(
        f"/api/v1/runners/jobs/{job['job_id']}/finish",
        json={"fence": job["fence"], "status": "success", "exit_code": 0},
        headers=runner,
    ).raise_for_status()
    client = site.login("a:viewer")
    page = client.get(f"/jobs/{job['job_id']}")
    assert page.status_code == 200 and "/log/events" in page.text
    streamed = client.get(f"/jobs/{job['job_id']}/log/events")
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    lines = [e for e in events if e[0] == "lines"]
    assert lines[0][1]["first"] == 1
    html = [h for _, body in lines for h in body["lines"]]
    assert html[0] == "first"
    assert html[1] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<span" in html[2] and "red" in html[2] and "\x1b" not in html[2]
    assert events[-1] == ("end", {"status": "success"})
    # Resuming after the first line (Last-Event-ID is the byte offset): numbering goes on.
    resumed = client.get(
        f"/jobs/{job['job_id']}/log/events", headers={"Last-Event-ID": str(len("first\n"))}
    )
    first = next(body for name, body in _events(resumed.text) if name == "lines")
    assert first["first"] == 2
    download = client.get(f"/jobs/{job['job_id']}/log.txt")
    assert download.text == text and "attachment" in download.headers["content-disposition"]


def test_approvals_and_an_environment_page_by_role(
    site: Site, haproxy_required: None, stops_deploys: None
):
    from tests.api.test_deployments import tarball
    from tests.api.test_policy import SERVICE

    developer = {"Authorization": f"Bearer {site.tokens['a:developer']}"}
    made = site.client.post(
        "/api/v1/projects/a/api/artifacts",
        params={"name": "svc"},
        content=tarball({"conveyor.yml": SERVICE}),
        headers=developer,
    )
    digest = made.json()["digest"]
    waiting = site.client.post(
        "/api/v1/projects/a/api/deployments",
        json={"environment": "production", "artifact": digest},
        headers=developer,
    ).json()
    assert waiting["awaiting_approval"]
    viewer = site.login("a:viewer")
    inbox = viewer.get("/approvals")
    assert "production requires 1 approval by a maintainer" in inbox.text
    assert "You may not decide it: approving needs the maintainer role" in inbox.text
    environment = wait_until(
        lambda: (
            "at its gate: approval" in (page := viewer.get("/p/a/api/env/production")).text and page
        ),
        10,
        "the deployment to wait at its gate",
    )
    assert 'data-command="abort"' not in environment.text
    maintainer = site.login("a:maintainer")
    token = site.csrf("/approvals")
    assert 'data-command="abort"' in maintainer.get("/p/a/api/env/production").text
    decided = maintainer.post(
        f"/approvals/{waiting['id']}/approve",
        data={"csrf": token, "comment": "fine"},
        follow_redirects=False,
    )
    assert decided.status_code == 303 and decided.headers["location"] == "/approvals"
    shown = site.client.get(f"/api/v1/deployments/{waiting['id']}", headers=developer).json()
    assert shown["approval"]["decisions"][0]["comment"] == "fine"
    again = maintainer.post(f"/approvals/{waiting['id']}/approve", data={"csrf": token})
    assert again.status_code == 409 and "approved already" in again.text
    risk = maintainer.get("/p/a/api/env/production/risk", params={"artifact": digest})
    assert risk.status_code == 200 and "change size" in risk.text


def test_runs_are_shown_as_their_commit_with_times_in_words(site: Site):
    """Issue 19 §3: a run is its commit's first line, author and short sha, with times in
    words (the exact time on hover) and how long it took; not its id."""
    run = trigger(site)
    client = site.login("a:developer")
    listing = client.get("/p/a/api").text
    assert "init" in listing and ">t<" not in listing  # git_repo's commit: message "init"
    assert run["sha"][:8] in listing and f">{run['id']}<" not in listing
    assert 'title="20' in listing and "just now" in listing  # <time title="2026-… UTC">
    page = client.get(f"/runs/{run['id']}").text
    assert "<h1>init</h1>" in page and "by t" in page and "so far" in page
    # A run that is going on can be canceled, not run again; once ended, the reverse.
    assert 'data-action="cancel"' in page and 'data-action="retry"' not in page
    token = site.csrf(f"/runs/{run['id']}")
    client.post(f"/runs/{run['id']}/cancel", data={"csrf": token})
    ended = client.get(f"/runs/{run['id']}").text
    assert 'data-action="retry"' in ended and 'data-action="cancel"' not in ended


def test_navigation_reaches_projects_runners_artifacts_environments_and_the_audit_log(
    site: Site,
):
    client = site.login("a:maintainer")
    home = client.get("/").text
    for link in ("/projects", "/runners", "/approvals", "/audit"):
        assert f'href="{link}"' in home, link
        assert client.get(link).status_code == 200, link
    found = client.get("/projects", params={"q": "API"}).text
    assert 'href="/p/a/api"' in found and "1 project" in found
    assert "No project matches" in client.get("/projects", params={"q": "zzz"}).text
    assert "No service matches" in client.get("/", params={"q": "zzz"}).text
    tabs = client.get("/p/a/api").text
    for tab in ("environments", "artifacts", "deliveries"):
        assert f'href="/p/a/api/{tab}"' in tabs
        assert client.get(f"/p/a/api/{tab}").status_code == 200
    assert "Not deployed anywhere yet" in client.get("/p/a/api/environments").text
    assert "No artifacts yet" in client.get("/p/a/api/artifacts").text
    assert "No runner has registered" in client.get("/runners").text
    audit = client.get("/audit").text
    assert "team a" in audit and "conveyor audit verify a" in audit
    # Another team's project pages are not found, as in the API.
    assert client.get("/p/b/api/artifacts").status_code == 404
    assert client.get("/p/b/api/environments").status_code == 404
    assert client.get("/p/a/api/env/nowhere/timeline").status_code == 404
    assert client.get("/p/b/api/env/production/timeline").status_code == 404
    # The admin's audit log is the company's, and lists teams to choose from.
    admin = site.login("admin")
    company = admin.get("/audit").text
    assert "the company" in company and "team.create" in company
    assert "project.create" in admin.get("/audit", params={"team": "b"}).text


def test_the_hosts_page_lists_the_teams_hosts_only(site: Site):
    client = site.login("a:viewer")
    assert 'href="/hosts"' in client.get("/").text
    assert "No host has joined" in client.get("/hosts").text
    admin = {"Authorization": f"Bearer {site.tokens['admin']}"}
    for team, name, address in (("a", "web-1", "10.9.0.1"), ("b", "db-1", "10.9.0.2")):
        made = site.client.post(f"/api/v1/teams/{team}/host-tokens", json={}, headers=admin)
        host = {"Authorization": f"Bearer {made.json()['token']}"}
        body = {"name": name, "address": address, "labels": {"zone": "a"}, "slots": 4}
        assert site.client.post("/api/v1/agent/join", json=body, headers=host).status_code == 201
    page = site.login("a:viewer").get("/hosts").text
    assert "web-1" in page and "10.9.0.1" in page and "zone=a" in page and ">up<" in page
    assert "db-1" not in page
