"""The artifact API: upload, provenance, download, limits, and teams kept apart."""

from __future__ import annotations

import hashlib

from tests.api.conftest import World

BASE = "/api/v1/projects/a/api/artifacts"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_upload_list_show_and_download(world: World):
    body = b"service bytes" * 1000
    made = world.call(
        "a:developer",
        "POST",
        BASE,
        params={"name": "api.tar", "digest": digest_of(body), "sha": "ab" * 20},
        content=body,
        headers={"Content-Type": "application/x-tar"},
    )
    assert made.status_code == 201, made.text
    artifact = made.json()
    assert artifact["digest"] == digest_of(body) and artifact["size"] == len(body)
    assert artifact["sha"] == "ab" * 20 and artifact["media_type"] == "application/x-tar"
    again = world.call("a:developer", "POST", BASE, params={"name": "api.tar"}, content=body)
    assert again.status_code == 200 and again.json()["id"] == artifact["id"]
    listed = world.call("a:viewer", "GET", BASE).json()
    assert [a["digest"] for a in listed] == [artifact["digest"]]
    shown = world.call("a:viewer", "GET", f"{BASE}/{artifact['digest']}").json()
    assert shown["sha"] == "ab" * 20
    content = world.call("a:viewer", "GET", f"{BASE}/{artifact['digest']}/content")
    assert content.status_code == 200 and content.content == body
    assert content.headers["x-conveyor-digest"] == artifact["digest"]


def test_bad_uploads_get_clear_errors_and_store_nothing(world: World):
    wrong = world.call(
        "a:developer",
        "POST",
        BASE,
        params={"name": "x", "digest": "sha256:" + "0" * 64},
        content=b"payload",
    )
    assert wrong.status_code == 400 and "not sha256:0000" in wrong.json()["detail"]
    malformed = world.call("a:developer", "POST", BASE, params={"name": "x", "digest": "md5:1"})
    assert malformed.status_code == 400 and "64 hex digits" in malformed.json()["detail"]
    no_name = world.call("a:developer", "POST", BASE, content=b"payload")
    assert no_name.status_code == 422
    bad_media = world.call(
        "a:developer",
        "POST",
        BASE,
        params={"name": "x"},
        content=b"p",
        headers={"Content-Type": "x"},
    )
    assert bad_media.status_code == 400 and "media type" in bad_media.json()["detail"]
    assert world.call("a:viewer", "GET", BASE).json() == []
    missing = world.call("a:viewer", "GET", f"{BASE}/{digest_of(b'nothing')}")
    assert missing.status_code == 404


def test_roles_and_teams(world: World):
    denied = world.call("a:viewer", "POST", BASE, params={"name": "x"}, content=b"p")
    assert denied.status_code == 403
    made = world.call("a:developer", "POST", BASE, params={"name": "x"}, content=b"p").json()
    assert world.call("b:owner", "GET", BASE).status_code == 404
    assert world.call("b:owner", "GET", f"{BASE}/{made['digest']}/content").status_code == 404
    theirs = world.call(
        "b:developer",
        "POST",
        "/api/v1/projects/b/api/artifacts",
        params={"name": "x"},
        content=b"p",
    )
    assert theirs.status_code == 201 and theirs.json()["digest"] == made["digest"]
    assert theirs.json()["id"] != made["id"]


def test_retention_is_set_per_project(world: World):
    changed = world.call(
        "a:maintainer", "PATCH", "/api/v1/projects/a/api", json={"artifact_retention_days": 7}
    )
    assert changed.status_code == 200 and changed.json()["artifact_retention_days"] == 7
    assert (
        world.call("a:viewer", "GET", "/api/v1/projects/a/api").json()["artifact_retention_days"]
        == 7
    )
    denied = world.call(
        "a:developer", "PATCH", "/api/v1/projects/a/api", json={"artifact_retention_days": 7}
    )
    assert denied.status_code == 403
    bad = world.call(
        "a:maintainer", "PATCH", "/api/v1/projects/a/api", json={"artifact_retention_days": 0}
    )
    assert bad.status_code == 422
