"""Fuzz the webhook endpoint with mutated payloads and headers: never a 500, and every
delivery that was stored is processed to an end state."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.intake.conftest import SECRET, Hooks
from tests.intake.payloads import CASES, FIXTURES, JSON, mutate, paths_in, provider_of

EVENT_HEADERS = {
    "github": "X-GitHub-Event",
    "gitlab": "X-Gitlab-Event",
    "gitea": "X-Gitea-Event",
    "bitbucket": "X-Event-Key",
}
ANSWERS: Counter[tuple[int, str]] = Counter()
HEADER_NAMES = st.sampled_from(
    [
        "X-GitHub-Delivery",
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "X-Gitea-Signature",
        "X-Gitlab-Token",
        "Idempotency-Key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Request-UUID",
    ]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


def _signed_headers(provider: str, body: bytes) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "github": {"X-Hub-Signature-256": f"sha256={mac}"},
        "gitea": {"X-Gitea-Signature": mac},
        "bitbucket": {"X-Hub-Signature": f"sha256={mac}"},
        "gitlab": {"X-Gitlab-Token": SECRET},
    }[provider]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.sampled_from([c for c in CASES if c[0].split("/")[0] != "standard-webhooks"]),
    pick=st.integers(min_value=0),
    junk=JSON,
    raw=st.one_of(st.none(), st.binary(max_size=64)),
    extra=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3),
    sign=st.sampled_from([True, True, True, False]),
)
def test_the_endpoint_never_answers_500(
    fuzz_hooks: Hooks,
    case: Any,
    pick: int,
    junk: Any,
    raw: bytes | None,
    extra: dict[str, str],
    sign: bool,
) -> None:
    path, headers, _ = case
    provider = provider_of(path)
    payload = json.loads((FIXTURES / path).read_bytes())
    paths = paths_in(payload, [])
    body = (
        raw
        if raw is not None
        else json.dumps(mutate(payload, paths[pick % len(paths)], junk)).encode()
    )
    sent = {EVENT_HEADERS[provider]: next(iter(headers.values()))}
    if sign:
        sent |= _signed_headers(provider, body)
    signing = ("x-hub", "x-gitea-signature", "x-gitlab-token", "webhook-")
    sent |= {k: v for k, v in extra.items() if not (sign and k.lower().startswith(signing))}
    try:
        response = fuzz_hooks.client.post(
            f"/hooks/{provider}/a/{provider}", content=body, headers=sent
        )
    except UnicodeEncodeError:
        return  # the HTTP client refuses such a header; no server would see it
    assert response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    ANSWERS[response.status_code, answer.get("status") or answer.get("error", "")] += 1
    assert response.status_code in {200, 202, 400, 401, 404, 413, 422}, response.text


def test_fuzzed_deliveries_all_reach_an_end_state(fuzz_hooks: Hooks) -> None:
    """Runs after the fuzz test in the same module-scoped server: whatever it stored was
    processed to done or failed, none by an internal error; and the fuzzing reached every
    stage: refusals, and deliveries stored and translated."""
    assert ANSWERS[202, "accepted"] >= 10, ANSWERS
    assert ANSWERS[401, "bad_signature"] >= 10, ANSWERS
    assert ANSWERS[400, "invalid_json"] >= 5, ANSWERS
    stored = []
    for provider in EVENT_HEADERS:
        stored += fuzz_hooks.settled(provider, 0, timeout=60)
    assert len(stored) == ANSWERS[202, "accepted"]
    for delivery in stored:
        assert delivery["state"] in {"done", "failed"}
        assert not any("internal error" in line for line in delivery["outcome"]), delivery
    print(dict(ANSWERS), Counter(d["state"] for d in stored))
