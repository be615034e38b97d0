"""The UI's pages and buttons in-process: login and its cookie, team isolation and roles
as the API has them, CSRF on every form, and escaping of what users control."""

from __future__ import annotations

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
