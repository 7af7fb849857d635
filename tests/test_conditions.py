"""Every operator of the format, through the engine: held, not held, or indeterminate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from conftest import policy
from policylayer_core import Effect, PolicyEngine

HELD, NOT, UNKNOWN = "held", "not held", "indeterminate"

RULE = "/tools/t/deny_if/0"
COND = RULE + "/conditions/0"


def verdict(
    op: str, value: Any, args: Any, path: str = "args.a", *, has_value: bool = True, **call: Any
) -> str:
    condition: dict[str, Any] = {"path": path, "op": op}
    if has_value:
        condition["value"] = value
    engine = PolicyEngine(policy({"t": {"deny_if": [{"conditions": [condition]}]}}))
    d = engine.decide(call.pop("identity", "alice"), "t", args, **call)
    if d.effect is Effect.ALLOW:
        return NOT
    assert d.effect is Effect.DENY
    if d.rule == RULE:
        return HELD
    assert d.rule == COND, d
    return UNKNOWN


@pytest.mark.parametrize(
    ("op", "value", "arg", "expected"),
    [
        # eq / neq: JSON equality
        ("eq", "x", "x", HELD),
        ("eq", "x", "y", NOT),
        ("eq", 1, 1.0, HELD),
        ("eq", 1, True, NOT),
        ("eq", True, 1, NOT),
        ("eq", True, True, HELD),
        ("eq", False, 0, NOT),
        ("eq", 0, False, NOT),
        ("eq", None, None, HELD),
        ("eq", None, "null", NOT),
        ("eq", [1, {"b": [True]}], [1.0, {"b": [True]}], HELD),
        ("eq", [1, {"b": [True]}], [1, {"b": [1]}], NOT),
        ("eq", {"k": 1}, {"k": 1, "j": 2}, NOT),
        ("eq", [1, 2], [2, 1], NOT),
        ("eq", "x", ["x"], NOT),
        ("eq", 2, math.nan, UNKNOWN),
        ("neq", "x", "y", HELD),
        ("neq", "x", "x", NOT),
        ("neq", 1, True, HELD),
        # in / not_in: JSON membership
        ("in", ["a", "b"], "a", HELD),
        ("in", ["a", "b"], "c", NOT),
        ("in", [1, 2], 2.0, HELD),
        ("in", [1, 2], True, NOT),
        ("in", [[1], {"a": None}], {"a": None}, HELD),
        ("in", [], "a", NOT),
        ("not_in", ["a"], "b", HELD),
        ("not_in", ["a"], "a", NOT),
        ("not_in", ["a", "b"], 1, HELD),
        # numeric comparisons
        ("gt", 10, 11, HELD),
        ("gt", 10, 10, NOT),
        ("gte", 10, 10.0, HELD),
        ("lt", 10, 9.5, HELD),
        ("lt", 10, 10, NOT),
        ("lte", 10, 10, HELD),
        ("gt", 10, "20000", UNKNOWN),
        ("gt", 10, True, UNKNOWN),
        ("gt", 10, None, UNKNOWN),
        ("gt", 10, [11], UNKNOWN),
        ("gt", 10, math.nan, UNKNOWN),
        ("gt", 10, math.inf, HELD),
        ("lt", 10, -math.inf, HELD),
        ("gt", 10, 10**30, HELD),
        # strings
        ("regex", "^rm\\b", "rm -rf /", HELD),
        ("regex", "drop", "please DROP table", NOT),
        ("regex", "x", None, UNKNOWN),
        ("regex", "x", 5, UNKNOWN),
        ("glob", "/srv/*", "/srv/a/b", HELD),
        ("glob", "/srv/*", "/etc/srv/a", NOT),
        ("glob", "file?.txt", "file1.txt", HELD),
        ("glob", "file[0-9].txt", "fileA.txt", NOT),
        ("glob", "*.TXT", "a.txt", NOT),
        ("glob", "x", 1, UNKNOWN),
        ("starts_with", "/srv/", "/srv/projects", HELD),
        ("starts_with", "/srv/", "/etc", NOT),
        ("starts_with", "/srv/", ["/srv/"], UNKNOWN),
        ("ends_with", ".json", "a.json", HELD),
        ("ends_with", ".json", "a.yaml", NOT),
        ("ends_with", ".json", False, UNKNOWN),
        # contains: substring, or JSON membership of an array
        ("contains", "secret", "my secret key", HELD),
        ("contains", "secret", "nothing", NOT),
        ("contains", "a", ["a", "b"], HELD),
        ("contains", 1, [1.0], HELD),
        ("contains", 1, [True], NOT),
        ("contains", {"k": 1}, [{"k": 1}], HELD),
        ("contains", 1, "123", UNKNOWN),
        ("contains", "a", {"a": 1}, UNKNOWN),
        ("contains", "a", 5, UNKNOWN),
        # lengths of strings (code points), arrays, objects
        ("len_gt", 2, "abc", HELD),
        ("len_gt", 2, "ab", NOT),
        ("len_gte", 2, [1, 2], HELD),
        ("len_lt", 2, {"a": 1}, HELD),
        ("len_lte", 0, "", HELD),
        ("len_eq", 2, "任务", HELD),
        ("len_eq", 2, "🙂🙂", HELD),
        ("len_gt", 0, 5, UNKNOWN),
        ("len_gt", 0, None, UNKNOWN),
        ("len_gt", 0, True, UNKNOWN),
    ],
)
def test_operator(op: str, value: Any, arg: Any, expected: str) -> None:
    assert verdict(op, value, {"a": arg}) == expected


@pytest.mark.parametrize("op", ["eq", "neq", "in", "not_in", "gt", "regex", "contains", "len_eq"])
def test_a_path_that_does_not_resolve_is_false_for_every_op_but_exists(op: str) -> None:
    value: Any = {"in": ["x"], "not_in": ["x"], "gt": 1, "len_eq": 1, "regex": "x"}.get(op, "x")
    assert verdict(op, value, {"b": 1}) == NOT
    assert verdict(op, value, {}) == NOT
    assert verdict(op, value, None) == NOT


def test_exists() -> None:
    assert verdict("exists", None, {"a": None}, has_value=False) == HELD
    assert verdict("exists", None, {}, has_value=False) == NOT
    assert verdict("exists", True, {"a": 0}) == HELD
    assert verdict("exists", False, {"a": 0}) == NOT
    assert verdict("exists", False, {}) == HELD
    # a step into a value that cannot have children does not resolve, for exists
    assert verdict("exists", True, {"a": "text"}, path="args.a.b") == NOT


def test_nested_and_index_paths() -> None:
    args = {"a": {"b": [{"c": 1}, {"c": 2}], "0": "zero"}}
    assert verdict("eq", 2, args, path="args.a.b.1.c") == HELD
    assert verdict("eq", 1, args, path="args.a.b.0.c") == HELD
    assert verdict("eq", 1, args, path="args.a.b.5.c") == NOT  # out of range: does not resolve
    assert (
        verdict("eq", "zero", args, path="args.a.0") == HELD
    )  # a decimal step on an object reads the key
    assert verdict("eq", 1, args, path="args.a.b.x") == UNKNOWN  # a name step on an array
    assert verdict("eq", 1, {"a": "text"}, path="args.a.b") == UNKNOWN  # a step into a string


def test_star_paths() -> None:
    tasks = {"tasks": [{"p": 1}, {"p": 9}, {"q": 0}]}
    assert verdict("gt", 5, tasks, path="args.tasks.*.p") == HELD
    assert verdict("gt", 10, tasks, path="args.tasks.*.p") == NOT
    assert verdict("gt", 5, {"tasks": []}, path="args.tasks.*.p") == NOT
    assert verdict("gt", 5, {"tasks": [{"p": 9}, {"p": "1"}]}, path="args.tasks.*.p") == UNKNOWN
    assert (
        verdict("gt", 5, {"tasks": {"p": 9}}, path="args.tasks.*.p") == UNKNOWN
    )  # '*' over an object
    assert verdict("eq", "a", {"tags": [["x", "a"], ["b"]]}, path="args.tags.*.*") == HELD
    assert verdict("exists", True, tasks, path="args.tasks.*.q") == HELD
    assert verdict("exists", False, tasks, path="args.tasks.*.zz") == HELD


def test_identity_tool_and_session_paths() -> None:
    assert verdict("starts_with", "ci-", {}, path="identity", identity="ci-runner") == HELD
    assert verdict("starts_with", "ci-", {}, path="identity", identity="alice") == NOT
    assert verdict("eq", "t", {}, path="tool") == HELD
    assert verdict("eq", "s1", {}, path="session", session="s1") == HELD
    assert verdict("exists", True, {}, path="session") == NOT
    assert verdict("eq", "s1", {}, path="session") == NOT


def test_args_root_path() -> None:
    assert verdict("len_gt", 1, {"a": 1, "b": 2}, path="args") == HELD
    assert verdict("len_gt", 5, {"a": 1}, path="args") == NOT


def test_indeterminate_reason_names_path_found_and_needed() -> None:
    engine = PolicyEngine(
        policy(
            {
                "pay": {
                    "deny_if": [
                        {"conditions": [{"path": "args.amount", "op": "gt", "value": 10000}]}
                    ]
                }
            }
        )
    )
    d = engine.decide("a", "pay", {"amount": "20000"})
    assert d.effect is Effect.DENY and d.rule == "/tools/pay/deny_if/0/conditions/0"
    assert "args.amount" in d.reason and "a string" in d.reason and "a number" in d.reason


def test_short_circuit_skips_later_conditions() -> None:
    conditions = [
        {"path": "args.kind", "op": "eq", "value": "money"},
        {"path": "args.amount", "op": "gt", "value": 100},
    ]
    engine = PolicyEngine(policy({"t": {"deny_if": [{"conditions": conditions}]}}))
    # the first condition is false, so the bad amount is never looked at
    assert engine.decide("a", "t", {"kind": "time", "amount": "lots"}).effect is Effect.ALLOW
    d = engine.decide("a", "t", {"kind": "money", "amount": "lots"})
    assert d.rule == "/tools/t/deny_if/0/conditions/1"


@pytest.mark.parametrize("rules", ["require", "deny_if", "approve_if"])
def test_indeterminate_denies_in_every_rule_list(rules: str) -> None:
    rule = {"conditions": [{"path": "args.n", "op": "lt", "value": 5}]}
    engine = PolicyEngine(policy({"t": {rules: [rule]}}))
    d = engine.decide("a", "t", {"n": None})
    assert d.effect is Effect.DENY
    assert d.rule == f"/tools/t/{rules}/0/conditions/0"


def test_hostile_python_values_are_indeterminate_not_errors() -> None:
    class Sneaky(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    # A subclass is not JSON (docs/decisions.md): not judged by its methods, nor by its
    # characters, since the tool may read it through those methods.
    assert verdict("eq", "admin", {"a": Sneaky("guest")}) == UNKNOWN
    assert verdict("eq", "guest", {"a": Sneaky("guest")}) == UNKNOWN
    assert verdict("eq", "x", {"a": {1, 2}}) == UNKNOWN
    assert verdict("in", [1], {"a": b"1"}) == UNKNOWN
    assert verdict("eq", [1], {"a": (1,)}) == UNKNOWN
