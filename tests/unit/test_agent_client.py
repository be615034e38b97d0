"""The runner's HTTP client against httpx's MockTransport: failover and log retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conveyor.protocol.errors import StaleLease
from conveyor.runner.agent import LogShipper
from conveyor.runner.client import Client, servers
from tests.helpers import wait_until_async


def client_with(handler) -> Client:  # type: ignore[no-untyped-def]
    client = Client("http://a.invalid,http://b.invalid", "cvy_runner_x")
    client.dialer.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client


def test_server_lists():
    assert servers(" http://a/ , http://b") == ["http://a", "http://b"]
    with pytest.raises(ValueError, match="no coordinator"):
        servers(" , ")


async def test_requests_fail_over_to_the_next_replica():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "a.invalid":
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(204)

    client = client_with(handler)
    assert await client.request(0) is None
    assert await client.request(0) is None
    assert seen == ["a.invalid", "b.invalid", "b.invalid"]  # b stays first after failover
    await client.close()


async def test_stale_fence_is_a_stale_lease():
    client = client_with(lambda request: httpx.Response(409, json={"error": "conflict"}))
    with pytest.raises(StaleLease):
        await client.heartbeat("job", 1)
    await client.close()


async def test_log_chunks_are_resent_at_the_same_offset_after_a_failure():
    calls: list[tuple[str, bytes]] = []
    failures = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures and failures.pop():
            raise httpx.ReadTimeout("slow", request=request)
        calls.append((request.url.params["offset"], request.content))
        return httpx.Response(204)

    client = Client("http://only.invalid", "t")
    client.dialer.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    shipper = LogShipper(client, "job", fence=1, offset=100)
    shipper.job_log("j", "first")
    stop = asyncio.Event()
    task = asyncio.create_task(shipper.run(stop))

    async def sent() -> bool:
        return bool(calls)

    await wait_until_async(sent, 5, "the first chunk (one failed tick, then a good one)")
    shipper.job_log("j", "second")
    stop.set()
    await task
    await shipper.flush()
    assert calls == [("100", b"first\n"), ("106", b"second\n")]
    await client.close()


async def test_a_deploy_job_follows_its_deployment_through_transient_errors():
    from conveyor.runner.remote import RemoteDeployer

    phases = iter(["progressing", "boom", "paused", "succeeded"])

    def deployment(phase: str) -> dict[str, object]:
        # What the coordinator answers has more fields than a runner reads: they are ignored.
        return {
            "environment": "prod",
            "number": 3,
            "digest": "sha256:x",
            "strategy": "canary",
            "phase": phase,
            "step": 0,
            "steps": [],
            "message": "",
            "observed": {"ready": 1},
        }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json=deployment("pending"))
        phase = next(phases)
        if phase == "boom":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=deployment(phase))

    notes: list[str] = []
    deployer = RemoteDeployer(client_with(handler), "job", 1, poll_s=0.001)
    assert await deployer.deploy(None, notes.append) == (True, "succeeded: ")  # type: ignore[arg-type]
    assert notes[0] == "deploying sha256:x to prod as revision 3 (canary)"
    assert [n.split(": ")[1] for n in notes[1:]] == [
        "progressing step 0/0",
        "paused step 0/0",
        "succeeded step 0/0",
    ]


async def test_a_refused_or_unreachable_deploy_fails_the_job_with_the_reason():
    from conveyor.runner.remote import RemoteDeployer

    refused = client_with(
        lambda request: httpx.Response(409, json={"detail": "sha256:x is pinned as bad"})
    )
    notes: list[str] = []
    ok, why = await RemoteDeployer(refused, "job", 1).deploy(None, notes.append)  # type: ignore[arg-type]
    assert not ok and "pinned as bad" in why

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    ok, why = await RemoteDeployer(client_with(down), "job", 1).deploy(None, notes.append)  # type: ignore[arg-type]
    assert not ok and "cannot start the deployment" in why


async def test_an_answer_that_does_not_fit_the_protocol_is_an_http_error():
    """A coordinator's reply missing a field is retried like a transport error, not a
    crash of the worker (`Agent._worker` catches httpx.HTTPError)."""
    client = client_with(lambda request: httpx.Response(200, json={"job_id": "not-a-uuid"}))
    with pytest.raises(httpx.DecodingError, match="answer does not fit Assignment"):
        await client.request(0)
    await client.close()


async def test_a_refused_artifact_download_is_a_stale_lease_not_a_crash(tmp_path):
    """A streamed error body is read before it is quoted (it raised ResponseNotRead)."""
    client = client_with(
        lambda request: httpx.Response(409, json={"detail": "fencing token 1 is stale"})
    )
    with pytest.raises(StaleLease, match="fencing token 1 is stale"):
        await client.artifacts_get("job", 1, "package", tmp_path / "a.tar")
    await client.close()
