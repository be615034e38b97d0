"""Artifacts in S3-compatible object storage, against the real things: two `conveyor
serve` replicas with data directories of their own on one PostgreSQL database and one
SeaweedFS bucket (CONVEYOR_ARTIFACTS_URL). An artifact uploaded through one replica is
downloaded through the other, from a presigned URL of the bucket (the CLI follows the
redirect), and a host's agent fetches it the same way, its sha256 checked."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from pathlib import Path

import httpx

from conveyor.agent.artifacts import ArtifactCache
from tests import seaweed
from tests.helpers import ADMIN, cli, two_replicas

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "payments-api"


def test_replicas_share_artifacts_through_a_bucket_and_hand_out_presigned_urls(
    tmp_path: Path, postgres_url: str, s3_server: tuple[str, str]
):
    endpoint, bucket = s3_server
    where = seaweed.prefix()
    extra = seaweed.CREDENTIALS | {
        "AWS_ENDPOINT_URL": endpoint,
        "CONVEYOR_ARTIFACTS_URL": f"s3://{bucket}/{where}?presign=120",
    }
    with two_replicas(tmp_path, postgres_url, client_of=0, extra=extra) as (urls, env, _):
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/pay", "--repo", f"file://{tmp_path}")
        folder = tmp_path / "svc"
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
        digest = cli(env, "artifacts", "upload", "a/pay", str(folder)).splitlines()[-1]
        # The bytes are in the bucket, under the configured prefix.
        key = f"{where}/sha256/{digest.removeprefix('sha256:')}"
        stored = seaweed.client(endpoint).head_object(Bucket=bucket, Key=key)
        assert stored["ContentLength"] > 0
        # The other replica (its data directory has no copy) sends clients to the bucket.
        other = env | {"CONVEYOR_SERVER": urls[1]}
        path = f"/api/v1/projects/a/pay/artifacts/{digest}/content"
        answer = httpx.get(urls[1] + path, headers={"Authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 307, answer.text
        assert answer.headers["location"].startswith(f"{endpoint}/{bucket}/{key}?")
        out = tmp_path / "got.tar"
        cli(other, "artifacts", "download", "a/pay", digest, "-o", str(out))
        assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == digest
        assert not (tmp_path / "b" / "artifacts-cache" / "sha256").exists()
        # A host's agent fetches it by digest through the same redirect.
        token = cli(env, "host-token", "create", "--team", "a")
        auth = {"Authorization": f"Bearer {token}"}
        body = {"name": "h1", "address": "10.9.0.2", "protocol": 1}
        joined = httpx.post(urls[1] + "/api/v1/agent/join", json=body, headers=auth).json()

        async def fetch() -> Path:
            async with httpx.AsyncClient(headers=auth, follow_redirects=True) as http:
                cache = ArtifactCache(tmp_path / "agent", 1 << 30)
                host_id = uuid.UUID(joined["host_id"])
                return await cache.fetch(http, urls[1], host_id, joined["fence"], digest)

        fetched = asyncio.run(fetch())
        assert fetched.read_bytes() == out.read_bytes()
