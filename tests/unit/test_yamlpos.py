from __future__ import annotations

import pytest

from conveyor.pipeline.errors import Position
from conveyor.pipeline.yamlpos import YamlSyntaxError, load_located


def test_values_and_keys_carry_their_positions():
    located = load_located("a:\n  b: [1, 2]\n  c: x\n")
    assert located.data == {"a": {"b": [1, 2], "c": "x"}}
    assert located.key_at(("a", "c")) == Position(3, 3)
    assert located.value_at(("a", "c")) == Position(3, 6)
    assert located.value_at(("a", "b", 1)) == Position(2, 10)


def test_missing_path_falls_back_to_nearest_ancestor():
    located = load_located("a:\n  b: 1\n")
    assert located.value_at(("a", "zzz", 3)) == located.value_at(("a",))


def test_yaml_12_keeps_on_and_yes_as_strings():
    located = load_located("on: yes\n")
    assert located.data == {"on": "yes"}


def test_every_duplicate_key_is_a_problem_with_the_first_line():
    located = load_located("jobs:\n  a: 1\n  b: 2\n  a: 3\n  b: 4\n")
    assert located.problems == [
        (Position(4, 3), "duplicate key 'a' (first defined at line 2)"),
        (Position(5, 3), "duplicate key 'b' (first defined at line 3)"),
    ]
    assert located.data == {"jobs": {"a": 1, "b": 2}}


def test_anchors_aliases_and_merge_keys():
    text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n"
    assert load_located(text).data["use"] == {"x": 1, "y": 3}


def test_merge_of_a_list_of_mappings():
    text = "a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc:\n  <<: [*a, *b]\n"
    assert load_located(text).data["c"] == {"x": 1, "z": 3}


def test_merging_a_scalar_is_a_problem():
    located = load_located("a: &a 1\nb:\n  <<: *a\n")
    assert located.problems[0][1] == "`<<` must merge a mapping"


def test_complex_keys_are_a_problem():
    located = load_located("? [a, b]\n: 1\n")
    assert located.problems == [(Position(1, 3), "a mapping key must be a plain value")]


def test_syntax_error_has_position():
    with pytest.raises(YamlSyntaxError) as caught:
        load_located("a: [1, 2\nb: 3\n")
    assert caught.value.position.line >= 2
    assert "YAML syntax error" in caught.value.message


def test_alias_bomb_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    located = load_located("\n".join(lines) + "\n")
    assert any("more than" in message for _, message in located.problems)


def test_empty_document():
    assert load_located("").data is None
