"""No input makes loading a pipeline raise anything but a reported error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import parse_pipeline

KEYS = [
    "version",
    "service",
    "team",
    "on",
    "jobs",
    "stages",
    "defaults",
    "env",
    "runtime",
    "script",
    "needs",
    "stage",
    "when",
    "retry",
    "matrix",
    "if",
    "branch",
    "paths",
    "push",
    "tag",
    "cron",
    "schedule",
    "timeout",
    "gates",
    "reports",
    "deploy",
    "strategy",
    "canary",
    "steps",
    "weight",
    "<<",
    "a",
    "b",
    "max",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True),
    st.sampled_from(KEYS),
    st.text(max_size=12),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=30,
)


def check(text: str | bytes) -> None:
    try:
        parse_pipeline(text, "fuzz.yml")
    except PipelineInvalid as exc:
        assert exc.errors, "an invalid pipeline must say why"
        for error in exc.errors:
            assert error.position.line >= 1 and error.position.column >= 1
            assert error.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    check(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_arbitrary_yaml_structures(tree):
    import json

    # JSON is YAML; this reaches deep into the schema with well-formed documents.
    check(json.dumps(tree))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=6))
def test_pipeline_shaped_documents(doc):
    import json

    check(json.dumps({"version": 1, "service": "s", "team": "t", **doc}))
