"""Deploy requests that are refused, and why: every answer says what is wrong."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from tests.api.conftest import World

BASE = "/api/v1/projects/a/api"


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(world: World, content: bytes, name: str = "svc") -> str:
    made = world.call(
        "a:developer", "POST", f"{BASE}/artifacts", params={"name": name}, content=content
    )
    assert made.status_code in (200, 201), made.text
    return str(made.json()["digest"])


def deploy(world: World, digest: str, **body: object):  # type: ignore[no-untyped-def]
    payload = {"environment": "staging", "artifact": digest, **body}
    return world.call("a:developer", "POST", f"{BASE}/deployments", json=payload)


@pytest.fixture(autouse=True)
def _haproxy(haproxy_required: None) -> None:
    """Deploy requests need HAProxy on the coordinator."""


def test_an_artifact_must_carry_a_conveyor_yml_with_a_runtime(world: World):
    plain = upload(world, b"not a tarball")
    refused = deploy(world, plain)
    assert refused.status_code == 422 and "not a tarball" in refused.json()["detail"]
    empty = upload(world, tarball({"app.py": "print()"}))
    refused = deploy(world, empty)
    assert refused.status_code == 422 and "no conveyor.yml at its root" in refused.json()["detail"]
    broken = upload(world, tarball({"conveyor.yml": "version: 1\nservice: x\njobs: 7\n"}))
    refused = deploy(world, broken)
    assert refused.status_code == 422 and "conveyor.yml:3:7" in refused.json()["detail"]
    no_runtime = upload(
        world,
        tarball(
            {"conveyor.yml": "version: 1\nservice: x\nteam: a\njobs:\n  a: {script: 'true'}\n"}
        ),
    )
    refused = deploy(world, no_runtime)
    assert refused.status_code == 422 and "no `runtime` section" in refused.json()["detail"]


def test_a_large_artifact_that_is_not_a_tarball_is_refused_at_once(world: World):
    """Issue 19 §1.5: 600 MB of zeros kept the coordinator busy 212 s in tarfile's `r:*`
    (100 MB took 6 s here). The archive's kind is told from its first bytes."""
    zeros = upload(world, bytes(100 << 20))
    began = time.monotonic()
    refused = deploy(world, zeros)
    took = time.monotonic() - began
    assert refused.status_code == 422 and "is not a tarball" in refused.json()["detail"]
    assert took < 2.0, f"the refusal took {took:.1f} s"


def test_strategies_and_steps_are_checked(world: World):
    good = upload(
        world,
        tarball(
            {
                "conveyor.yml": "version: 1\nservice: x\nteam: a\njobs:\n  a: {script: 'true'}\n"
                "runtime: {command: 'serve --port $PORT'}\n"
            }
        ),
    )
    refused = deploy(world, good, strategy="canary", steps="10,pause=soon")
    assert refused.status_code == 422 and "--steps item 2" in refused.json()["detail"]
    refused = deploy(world, good, steps="10,101")
    assert refused.status_code == 422 and "at most 100" in refused.json()["detail"]
    refused = deploy(world, good, strategy="rolling", steps="10")
    assert refused.status_code == 422 and "goes with the canary" in refused.json()["detail"]
    refused = deploy(world, good, strategy="sideways")
    assert refused.status_code == 422
    missing = deploy(world, "sha256:" + "0" * 64)
    assert missing.status_code == 404 and "no artifact" in missing.json()["detail"]


def test_who_may_deploy_and_see_environments(world: World):
    denied = world.call(
        "a:viewer",
        "POST",
        f"{BASE}/deployments",
        json={"environment": "staging", "artifact": "sha256:" + "0" * 64},
    )
    assert denied.status_code == 403
    assert world.call("b:owner", "GET", f"{BASE}/environments").status_code == 404
    missing = world.call("a:viewer", "GET", f"{BASE}/environments/nowhere")
    assert missing.status_code == 404 and "created at its first deploy" in missing.json()["detail"]
    assert world.call("a:viewer", "GET", f"{BASE}/environments").json() == []
