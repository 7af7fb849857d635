"""ArgumentLimits: the `arguments` section of a policy (issue 9, hostile arguments).

Every limit at its bound and one over, arguments far larger than any limit, every kind of
value that is not JSON, the load errors of a bad section, and a property: for generated
values, `check` agrees with a plain recursive reference implementation of the limits.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policylayer_core import PolicyError, PolicyIssue, load_policy
from policylayer_core.argument_limits import INT_MAX, INT_MIN, ArgumentLimits
from policylayer_core.model import DEFAULT_MAX_REGEX_INPUT, Arguments, Policy

EXAMPLE_COUNT = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLE_COUNT, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

LIMIT_KEYS = ("max_depth", "max_string_length", "max_items", "max_total_items")


def nested(depth: int, *, inner: Any = None, kind: str = "object") -> Any:
    """`depth` levels of arrays or objects (the outermost is level 1), built without recursion."""
    value = inner
    for _ in range(depth):
        value = {"a": value} if kind == "object" else [value]
    return value


def failed(limits: ArgumentLimits, args: Any) -> str:
    """The key of the limit that `args` break ("max_depth", "non_json", ...), "" for none.

    "section" when the call is denied at the section itself: a value that is not JSON
    while `non_json` is not written, or a reference cycle under "ignore".
    """
    found = limits.check(args)
    if found is None:
        return ""
    pointer, reason = found
    assert pointer.startswith(limits.pointer), found
    assert reason.endswith(".") and (reason[0].isupper() or reason.startswith("args")), reason
    assert "break a limit" not in reason, "the explanation must find what the fast walk found"
    return pointer[len(limits.pointer) :].lstrip("/") or "section"


def denial(limits: ArgumentLimits, args: Any) -> tuple[str, str]:
    found = limits.check(args)
    assert found is not None, "expected a denial"
    return found


def reason_of(limits: ArgumentLimits, args: Any) -> str:
    return denial(limits, args)[1]


# -- defaults and construction -----------------------------------------------------------------


def test_no_section_means_no_walk_and_the_default_regex_bound() -> None:
    limits = ArgumentLimits.from_model(None)
    assert limits == ArgumentLimits()
    assert not limits.enforced
    assert limits.max_regex_input == DEFAULT_MAX_REGEX_INPUT == 10_000
    assert limits.pointer == "/arguments"
    # Nothing is walked, so nothing is denied, however odd the arguments.
    assert limits.check({"a": {1, 2}, "b": math.nan, "c": "x" * 1_000_000}) is None


@pytest.mark.parametrize(
    ("section", "enforced"),
    [
        ({}, False),
        ({"max_regex_input": 500}, False),
        ({"non_json": "ignore"}, False),
        ({"non_json": "deny"}, True),
        ({"max_depth": 8}, True),
        ({"max_string_length": 8}, True),
        ({"max_items": 8}, True),
        ({"max_total_items": 8, "non_json": "ignore"}, True),
    ],
)
def test_which_sections_walk_the_arguments(section: dict[str, Any], enforced: bool) -> None:
    limits = ArgumentLimits.from_model(Arguments.model_validate(section))
    assert limits.enforced is enforced
    assert limits.max_regex_input == section.get("max_regex_input", 10_000)


def test_from_model_carries_every_key_and_the_pointer() -> None:
    loaded = load_policy(
        {
            "version": "1",
            "policies": {
                "p": {
                    "version": "1",
                    "default": "allow",
                    "arguments": {
                        "max_depth": 4,
                        "max_string_length": 5,
                        "max_items": 6,
                        "max_total_items": 7,
                        "max_regex_input": 8,
                        "non_json": "ignore",
                        "x-why": "ignored like every x- key",
                    },
                }
            },
            "grants": {"*": "p"},
        }
    )
    limits = ArgumentLimits.from_model(
        loaded.policies["p"].arguments, pointer="/policies/p/arguments"
    )
    assert limits == ArgumentLimits(4, 5, 6, 7, 8, "ignore", "/policies/p/arguments")
    assert limits.check({"a": "x" * 6}) == (
        "/policies/p/arguments/max_string_length",
        "args.a is 6 characters long; this policy allows at most 5 "
        "(arguments.max_string_length), so the call is denied; send a shorter value.",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"max_depth": 0},
        {"max_items": -1},
        {"max_string_length": True},
        {"max_total_items": 1.0},
        {"max_regex_input": None},
        {"non_json": "block"},
    ],
)
def test_direct_construction_checks_its_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ArgumentLimits(**bad)


def test_limits_are_frozen_and_hashable() -> None:
    limits = ArgumentLimits(max_depth=3)
    with pytest.raises(FrozenInstanceError):
        limits.max_depth = 4  # type: ignore[misc]
    assert hash(limits) == hash(ArgumentLimits(max_depth=3))


# -- every limit at its bound and one over -----------------------------------------------------


@pytest.mark.parametrize("kind", ["object", "array"])
def test_max_depth_counts_the_arguments_object_as_level_one(kind: str) -> None:
    limits = ArgumentLimits(max_depth=3)
    assert failed(limits, {"x": nested(2, kind=kind)}) == ""  # 3 levels
    assert failed(limits, {"x": nested(3, kind=kind)}) == "max_depth"  # 4 levels
    assert failed(limits, {"x": nested(2, inner="scalars add no level", kind=kind)}) == ""
    assert failed(ArgumentLimits(max_depth=1), {}) == ""
    assert failed(ArgumentLimits(max_depth=1), {"x": []}) == "max_depth"
    assert limits.check({"x": {"y": [[]]}}) == (
        "/arguments/max_depth",
        "args.x.y[0] is an array nested 4 levels deep (the arguments object is level 1); "
        "this policy allows at most 3 (arguments.max_depth), so the call is denied; "
        "send flatter arguments.",
    )


def test_max_string_length_counts_code_points_of_values_and_keys() -> None:
    limits = ArgumentLimits(max_string_length=4)
    assert failed(limits, {"tags": ["abcd", "写文档!", "😀😀😀😀"]}) == ""
    assert failed(limits, {"tags": ["abcd", "abcde"]}) == "max_string_length"
    assert failed(limits, {"abcd": 1}) == ""
    assert failed(limits, {"abcde": 1}) == "max_string_length"
    assert limits.check({"a": {"abcde": 1}}) == (
        "/arguments/max_string_length",
        "A key of args.a is 5 characters long; this policy allows at most 4 "
        "(arguments.max_string_length), so the call is denied; send a shorter value.",
    )


@pytest.mark.parametrize("where", ["root", "array", "object"])
def test_max_items_bounds_each_array_and_object(where: str) -> None:
    def args(n: int) -> Any:
        if where == "root":
            return {f"k{i}": i for i in range(n)}
        if where == "array":
            return {"tasks": list(range(n))}
        return {"meta": {f"k{i}": i for i in range(n)}}

    limits = ArgumentLimits(max_items=5)
    assert failed(limits, args(5)) == ""
    assert failed(limits, args(6)) == "max_items"


def test_max_items_reason() -> None:
    assert ArgumentLimits(max_items=2).check({"tasks": [1, 2, 3]}) == (
        "/arguments/max_items",
        "args.tasks is an array of 3 elements; this policy allows at most 2 in one array or "
        "object (arguments.max_items), so the call is denied; send fewer elements.",
    )
    reason = reason_of(ArgumentLimits(max_items=2), {"a": 1, "b": 2, "c": 3})
    assert reason.startswith("args is an object of 3 members;")


def test_max_total_items_counts_every_element_and_member() -> None:
    # 2 members + 3 tasks + 3 * 2 members = 11 values.
    args = {"action": "create", "tasks": [{"title": "t", "priority": i} for i in range(3)]}
    assert failed(ArgumentLimits(max_total_items=11), args) == ""
    assert failed(ArgumentLimits(max_total_items=10), args) == "max_total_items"
    pointer, reason = denial(ArgumentLimits(max_total_items=4), args)
    assert pointer == "/arguments/max_total_items"
    assert reason == (
        "The arguments hold at least 5 values (counting every array element and object member "
        "at every depth, up to args.tasks); this policy allows at most 4 "
        "(arguments.max_total_items), so the call is denied; send smaller arguments."
    )


def test_every_limit_at_once_reports_the_first_it_meets() -> None:
    limits = ArgumentLimits(
        max_depth=3, max_string_length=10, max_items=3, max_total_items=8, non_json="deny"
    )
    assert failed(limits, {"a": "x" * 10, "b": [1, 2, 3], "c": {"d": []}}) == ""
    assert failed(limits, {"a": "x" * 11, "b": [1, 2, 3, 4]}) == "max_string_length"


# -- far over any limit --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["object", "array"])
def test_ten_thousand_levels_of_nesting(kind: str) -> None:
    deep = {"x": nested(10_000, kind=kind)}
    pointer, reason = denial(ArgumentLimits(max_depth=64), deep)
    assert pointer == "/arguments/max_depth"
    assert "nested 65 levels deep" in reason and "more steps" in reason and len(reason) < 400
    # Limits that do not bound depth walk all 10,000 levels without recursion.
    assert ArgumentLimits(max_string_length=5).check(deep) is None
    assert ArgumentLimits(max_depth=10_001).check(deep) is None
    assert failed(ArgumentLimits(max_depth=10_000), deep) == "max_depth"
    assert failed(ArgumentLimits(max_depth=20_000), {"x": nested(100_000)}) == "max_depth"


def test_a_ten_megabyte_string() -> None:
    title = "x" * 10_485_760
    args = {"tasks": [{"title": "t"}, {"title": "t"}, {"title": "t"}, {"title": title}]}
    assert ArgumentLimits(max_string_length=65_536).check(args) == (
        "/arguments/max_string_length",
        "args.tasks[3].title is 10,485,760 characters long; this policy allows at most 65,536 "
        "(arguments.max_string_length), so the call is denied; send a shorter value.",
    )
    assert ArgumentLimits(max_string_length=len(title)).check(args) is None


def test_a_million_element_array() -> None:
    args = {"ids": list(range(1_000_000))}
    assert failed(ArgumentLimits(max_items=1_000_000), args) == ""
    assert failed(ArgumentLimits(max_items=999_999), args) == "max_items"
    assert failed(ArgumentLimits(max_total_items=1_000_001), args) == ""
    assert failed(ArgumentLimits(max_total_items=1_000_000), args) == "max_total_items"
    assert failed(ArgumentLimits(max_string_length=3), {"ids": ["abc"] * 1_000_000}) == ""


def test_a_long_key_or_path_is_shortened_in_the_reason() -> None:
    key = "k" * 100_000
    limits = ArgumentLimits(max_string_length=100_000)
    reason = reason_of(limits, {key: {"v": "x" * 100_001}})
    assert reason.startswith(f"args.{'k' * 40}….v is 100,001 characters long;")
    reason = reason_of(limits, {"a b": {"k-" * 50_000: "x" * 100_001}})
    assert reason.startswith(f'args["a b"]["{"k-" * 20}…"] is 100,001 characters long;')


# -- values that are not JSON ----------------------------------------------------------------------


class HostileStr(str):
    """A string that claims to equal everything and refuses to be hashed or measured."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__  # hashable, so it can be a key; the walk never hashes it

    def __len__(self) -> int:
        raise RuntimeError("__len__ was called")

    def __iter__(self) -> Any:
        raise RuntimeError("__iter__ was called")


class Disguised(str):
    """A str subclass whose `__class__` says `str`: `isinstance` and `.__class__` believe it."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        return str

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ was called")

    __hash__ = str.__hash__


class Impostor:
    """Not a string at all, but its `__class__` says it is one."""

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return str


class SneakyList(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise RuntimeError("__len__ was called")

    def __iter__(self) -> Any:
        raise RuntimeError("__iter__ was called")


class SneakyDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items was called")

    def __len__(self) -> int:
        raise RuntimeError("__len__ was called")


def self_containing_list() -> list[Any]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return cycle


def self_containing_dict() -> dict[str, Any]:
    cycle: dict[str, Any] = {}
    cycle["again"] = {"more": cycle}
    return cycle


NOT_JSON: list[tuple[str, Any]] = [
    ("bytes", b"abc"),
    ("bytearray", bytearray(b"abc")),
    ("set", {1, 2}),
    ("frozenset", frozenset({"a"})),
    ("tuple", (1, "a")),
    ("empty tuple", ()),
    ("nan", math.nan),
    ("negative nan", -math.nan),
    ("infinity", math.inf),
    ("minus infinity", -math.inf),
    ("2**63", 2**63),
    ("-2**63 - 1", -(2**63) - 1),
    ("10**10000", 10**10_000),
    ("-(10**10000)", -(10**10_000)),
    ("object", object()),
    ("str subclass", HostileStr("admin")),
    ("disguised str subclass", Disguised("admin")),
    ("impostor", Impostor()),
    ("int subclass", type("MyInt", (int,), {})(3)),
    ("OrderedDict", collections.OrderedDict(a=1)),
    ("list subclass", SneakyList([1])),
    ("dict subclass", SneakyDict(a=1)),
    ("int key", {1: "a"}),
    ("tuple key", {(1, 2): "a"}),
    ("None key", {None: "a"}),
    ("bool key", {True: "a"}),
    ("float key", {1.5: "a"}),
    ("str subclass key", {HostileStr("k"): "a"}),
    ("disguised key", {Disguised("k"): "a"}),
]


@pytest.mark.parametrize(("name", "value"), NOT_JSON, ids=[n for n, _ in NOT_JSON])
@pytest.mark.parametrize("where", ["argument", "nested", "root"])
def test_values_that_are_not_json_are_denied(name: str, value: Any, where: str) -> None:
    args = {"a": value} if where == "argument" else {"a": [{"b": value}]}
    if where == "root":
        args = value
    written = ArgumentLimits(non_json="deny")
    assert written.enforced
    assert failed(written, args) == "non_json"
    # Not written: denied too once a size limit makes the walk run, at the section.
    pointer, reason = denial(ArgumentLimits(max_depth=50), args)
    assert pointer == "/arguments"
    assert reason.endswith(
        "(arguments.non_json, deny unless set to ignore), so the call is denied; "
        "send only JSON values."
    )


@pytest.mark.parametrize(("name", "value"), NOT_JSON, ids=[n for n, _ in NOT_JSON])
def test_non_json_ignore_measures_what_it_can_and_never_calls_methods(
    name: str, value: Any
) -> None:
    limits = ArgumentLimits(
        max_depth=5, max_string_length=5, max_items=5, max_total_items=50, non_json="ignore"
    )
    assert limits.check({"a": value}) is None
    assert limits.check(value) is None


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ((1, 2, 3, 4, 5, 6), "max_items"),
        ({1, 2, 3, 4, 5, 6}, "max_items"),
        (SneakyList([1, 2, 3, 4, 5, 6]), "max_items"),
        (SneakyDict({str(i): i for i in range(6)}), "max_items"),
        (collections.OrderedDict(a="x" * 6), "max_string_length"),
        ((("x" * 6),), "max_string_length"),
        (b"x" * 6, "max_string_length"),
        (HostileStr("x" * 6), "max_string_length"),
        ({HostileStr("k" * 6): 1}, "max_string_length"),
        ({b"k" * 6: 1}, "max_string_length"),
        (((((),),),), "max_depth"),
        (frozenset({(1, 2, 3)}), ""),
    ],
    # Explicit ids: pytest's own id maker measures the values, and HostileStr refuses len().
    ids=lambda value: value if type(value) is str else type(value).__name__,
)
def test_non_json_ignore_still_applies_the_size_limits(value: Any, limit: str) -> None:
    limits = ArgumentLimits(max_depth=3, max_string_length=5, max_items=5, non_json="ignore")
    assert failed(limits, {"a": value}) == limit


def test_json_values_at_the_edges_are_json() -> None:
    limits = ArgumentLimits(non_json="deny")
    edges = [True, False, None, 0, -0.0, INT_MAX, INT_MIN, 1.7976931348623157e308, -5e-324]
    assert limits.check({"a": edges, "b": {"": ""}}) is None
    assert failed(limits, {"a": INT_MAX + 1}) == "non_json"
    assert failed(limits, {"a": INT_MIN - 1}) == "non_json"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"abc", "args.a is a Python bytes, which is not a JSON value"),
        ((1,), "args.a is a Python tuple, which is not a JSON value"),
        (math.nan, "args.a is NaN, which JSON cannot hold"),
        (-math.inf, "args.a is an infinity, which JSON cannot hold"),
        (2**63, "args.a is an integer of 19 digits, outside the signed 64-bit range"),
        (10**10_000, "args.a is an integer of about 10,001 digits, outside the signed 64-bit"),
        (HostileStr("x"), "args.a is a Python HostileStr (a subclass of str), which is not a"),
        (Disguised("x"), "args.a is a Python Disguised (a subclass of str), which is not a"),
        (Impostor(), "args.a is a Python Impostor, which is not a JSON value"),
        ({7: "x"}, "args.a has a key that is a Python int, not a string"),
        ({HostileStr("k"): "x"}, "args.a has a key that is a Python HostileStr (a subclass"),
    ],
    ids=lambda value: value[:20] if type(value) is str else type(value).__name__,
)
def test_non_json_reasons_name_the_value_and_never_call_its_methods(
    value: Any, reason: str
) -> None:
    pointer, said = denial(ArgumentLimits(non_json="deny"), {"a": value})
    assert pointer == "/arguments/non_json"
    assert said.startswith(reason)
    assert said.endswith(
        "; this policy denies values that are not JSON (arguments.non_json), so the call "
        "is denied; send only JSON values."
    )


@pytest.mark.parametrize("make", [self_containing_list, self_containing_dict])
@pytest.mark.parametrize("non_json", ["deny", "ignore"])
def test_reference_cycles_are_denied_not_walked_forever(make: Any, non_json: str) -> None:
    args = {"a": make()}
    for limits in (
        ArgumentLimits(max_string_length=5, non_json=non_json),  # type: ignore[arg-type]
        ArgumentLimits(max_items=5, non_json=non_json),  # type: ignore[arg-type]
    ):
        pointer, reason = denial(limits, args)
        assert "reference cycle" in reason
        assert pointer == ("/arguments/non_json" if non_json == "deny" else "/arguments")
    assert failed(ArgumentLimits(max_depth=100), args) == "max_depth"
    assert failed(ArgumentLimits(max_total_items=1000), args) == "max_total_items"
    # A cycle through a tuple, which only "ignore" walks into.
    box: list[Any] = []
    box.append((box,))
    assert "reference cycle" in reason_of(ArgumentLimits(max_items=9, non_json="ignore"), box)


def test_a_branching_cycle_is_found_before_it_explodes() -> None:
    fork: list[Any] = [None, None]
    fork[0] = fork[1] = fork
    assert "reference cycle" in reason_of(ArgumentLimits(max_items=5), {"f": fork})
    many: list[Any] = []
    many.extend([many] * 100_000)
    assert "reference cycle" in reason_of(ArgumentLimits(max_string_length=5), many)


def test_shared_objects_are_walked_as_json_would_write_them() -> None:
    task = {"title": "t", "priority": 2}
    args = {"action": "create", "tasks": [task] * 5}
    assert failed(ArgumentLimits(max_total_items=17), args) == ""
    assert failed(ArgumentLimits(max_total_items=16), args) == "max_total_items"
    # Deep sharing that is not a cycle: past the cycle check, still walked and judged.
    chain: Any = "leaf"
    for _ in range(20_000):
        chain = [chain]
    assert ArgumentLimits(max_string_length=5).check({"c": chain, "d": chain}) is None


# -- load errors -----------------------------------------------------------------------------------


def issues_of(text: str) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    return caught.value.issues


def test_an_arguments_section_loads_and_x_keys_are_ignored() -> None:
    loaded = load_policy(
        '{"version": "1", "default": "deny", "arguments": {"max_depth": 32, '
        '"max_string_length": 65536, "non_json": "ignore", "x-note": "ok"}}'
    )
    section = loaded.policies[""].arguments
    assert section == Arguments(max_depth=32, max_string_length=65536, non_json="ignore")
    assert load_policy('{"version": "1", "default": "deny"}').policies[""].arguments is None


def test_bad_arguments_sections_are_load_errors_with_pointer_and_line() -> None:
    text = """{
  "version": "1",
  "default": "deny",
  "arguments": {
    "max_depth": 0,
    "max_string_length": -5,
    "max_items": "100",
    "max_total_items": 2.5,
    "max_regex_input": true,
    "non_json": "block",
    "max_lenght": 10
  }
}"""
    found = [(i.pointer, i.line, i.column, i.message) for i in issues_of(text)]
    assert [(p, line) for p, line, _, _ in found] == [
        ("/arguments/max_depth", 5),
        ("/arguments/max_string_length", 6),
        ("/arguments/max_items", 7),
        ("/arguments/max_total_items", 8),
        ("/arguments/max_regex_input", 9),
        ("/arguments/non_json", 10),
        ("/arguments/max_lenght", 11),
    ]
    messages = [m for _, _, _, m in found]
    assert messages[0] == "This value must be greater than 0, but it is 0."
    assert messages[1] == "This value must be greater than 0, but it is -5."
    assert messages[2] == 'This value must be a valid integer, but it is "100".'
    assert messages[3] == "This value must be a valid integer, but it is 2.5."
    assert messages[4] == "This value must be a valid integer, but it is true."
    assert messages[5] == (
        "This value must be 'deny' or 'ignore', but it is \"block\". Did you mean 'deny'?"
    )
    assert messages[6] == (
        "Unknown key 'max_lenght' in the arguments section. Did you mean 'max_string_length'? "
        "The keys allowed in the arguments section are: max_depth, max_items, max_regex_input, "
        "max_string_length, max_total_items, non_json. Keys that begin with 'x-' are ignored, "
        "for comments and vendor data."
    )
    assert [column for _, _, column, _ in found] == [5] * 7


def test_an_arguments_section_that_is_not_an_object() -> None:
    (issue,) = issues_of('{"version": "1", "default": "deny",\n "arguments": [32]}')
    assert (issue.pointer, issue.line) == ("/arguments", 2)
    assert issue.message == "This must be a JSON object, but it is [32]."


def test_the_section_is_per_policy_in_a_bundle() -> None:
    text = """{
  "version": "1",
  "policies": {
    "strict": {"version": "1", "default": "deny", "arguments": {"max_items": 0}}
  },
  "arguments": {"max_items": 5}
}"""
    found = [(i.pointer, i.line) for i in issues_of(text)]
    assert ("/policies/strict/arguments/max_items", 4) in found
    assert ("/arguments", 6) in found  # a bundle has no section of its own


def test_the_model_is_what_the_policy_says() -> None:
    doc = Policy.model_validate({"version": "1", "default": "deny", "arguments": {}})
    assert doc.arguments == Arguments()
    assert doc.arguments.max_regex_input == 10_000


# -- the reference implementation ------------------------------------------------------------------


STRING_LIKE = (str, bytes, bytearray)
CONTAINERS = (dict, list, tuple, set, frozenset)


def reference(limits: ArgumentLimits, args: Any) -> set[str]:
    """Every limit `args` break, by plain recursion: the meaning of each limit, spelt out."""
    deny = limits.non_json != "ignore"
    broken: set[str] = set()
    total = 0

    def too_long(text: Any) -> None:
        size = len(bytes(text) if isinstance(text, bytes | bytearray) else str.__str__(text))
        if limits.max_string_length is not None and size > limits.max_string_length:
            broken.add("max_string_length")

    def visit(value: Any, depth: int) -> None:
        nonlocal total
        kind = type(value)
        bad_float = kind is float and not math.isfinite(value)
        if bad_float or (kind is int and not INT_MIN <= value <= INT_MAX):
            if deny:
                broken.add("non_json")
            return
        if kind in (bool, int, float, type(None)):
            return
        if kind is str:
            too_long(value)
            return
        if deny and kind not in (dict, list):
            broken.add("non_json")
            return
        if issubclass(kind, STRING_LIKE):
            too_long(value)
            return
        if not issubclass(kind, CONTAINERS):
            return
        depth += 1
        if limits.max_depth is not None and depth > limits.max_depth:
            broken.add("max_depth")
            return
        members = list(dict.items(value)) if issubclass(kind, dict) else None
        elements = [v for _, v in members] if members is not None else list(_base_iter(value))
        if limits.max_items is not None and len(elements) > limits.max_items:
            broken.add("max_items")
        total += len(elements)
        for key, _ in members or []:
            if type(key) is not str and deny:
                broken.add("non_json")
            elif issubclass(type(key), STRING_LIKE):
                too_long(key)
        for element in elements:
            visit(element, depth)

    visit(args, 0)
    if limits.max_total_items is not None and total > limits.max_total_items:
        broken.add("max_total_items")
    return broken


def _base_iter(value: Any) -> Any:
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return base.__iter__(value)
    raise AssertionError(value)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=7), inner, max_size=6)
    ),
    max_leaves=40,
)
odd_scalars = (
    st.binary(max_size=8)
    | st.floats()
    | st.integers()
    | st.text(max_size=8).map(HostileStr)
    | st.builds(object)
)
python_values = st.recursive(
    json_scalars | odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.lists(inner, max_size=5).map(SneakyList)
        | st.frozensets(st.integers() | st.text(max_size=6), max_size=5)
        | st.dictionaries(st.text(max_size=6), inner, max_size=5)
        | st.dictionaries(st.text(max_size=6), inner, max_size=5).map(SneakyDict)
        | st.dictionaries(st.integers() | st.text(max_size=6).map(HostileStr), inner, max_size=3)
    ),
    max_leaves=30,
)
small_limits = st.builds(
    ArgumentLimits,
    max_depth=st.none() | st.integers(1, 6),
    max_string_length=st.none() | st.integers(1, 8),
    max_items=st.none() | st.integers(1, 6),
    max_total_items=st.none() | st.integers(1, 40),
    non_json=st.sampled_from([None, "deny", "ignore"]),
)


def assert_agrees(limits: ArgumentLimits, args: Any) -> None:
    """`check` denies exactly when the reference finds a broken limit, and names one of them."""
    found = failed(limits, args)
    if not limits.enforced:
        assert found == ""
        return
    broken = reference(limits, args)
    if found == "section":  # `non_json` not written: the denial points at the section
        found = "non_json"
    assert (found in broken) if found else (broken == set()), (found, broken)


@SETTINGS
@given(limits=small_limits, args=json_values)
def test_check_agrees_with_the_reference_on_json(limits: ArgumentLimits, args: Any) -> None:
    assert_agrees(limits, args)
    assert_agrees(limits, {"wrapped": args})


@SETTINGS
@given(limits=small_limits, args=python_values)
def test_check_agrees_with_the_reference_on_python_values(
    limits: ArgumentLimits, args: Any
) -> None:
    assert_agrees(limits, args)
    assert_agrees(limits, {"wrapped": [args]})


@SETTINGS
@given(args=json_values, limit=st.integers(1, 8))
def test_a_string_reason_points_at_a_string_of_that_length(args: Any, limit: int) -> None:
    found = ArgumentLimits(max_string_length=limit, non_json="ignore").check({"v": args})
    if found is None:
        return
    match = re.fullmatch(r"(A key of )?(.+?) is ([\d,]+) characters long; .*", found[1])
    assert match is not None, found
    value = resolve(match.group(2), {"v": args})
    size = int(match.group(3).replace(",", ""))
    assert size > limit
    if match.group(1):
        assert size in {len(k) for k in value}
    else:
        assert len(value) == size


def resolve(path: str, args: Any) -> Any:
    """Follow a reason's path (`args.tasks[3].title`, `args["a.b"]`) through `args`."""
    assert path.startswith("args"), path
    value = args
    for name, index, quoted in re.findall(
        r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]', path[4:]
    ):
        if name:
            value = value[name]
        elif index:
            value = value[int(index)]
        else:
            value = value[json.loads(quoted)]
    return value


# -- through the engine -------------------------------------------------------------


def _engine(arguments: dict[str, Any], tools: dict[str, Any] | None = None) -> Any:
    from policylayer_core import PolicyEngine  # noqa: PLC0415 - only these tests need it

    doc = {"version": "1", "default": "deny", "arguments": arguments}
    doc["tools"] = tools or {"plain": {}}
    return PolicyEngine.from_dict(doc)


def test_the_engine_denies_at_the_limit_before_the_schema_and_the_rules() -> None:
    engine = _engine(
        {"max_string_length": 4},
        {
            "t": {
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "deny_if": [{"conditions": [{"path": "args.b", "op": "eq", "value": "long"}]}],
                "on_deny": "Not this.",
            }
        },
    )
    denied = engine.decide("i", "t", {"a": "not an integer", "b": "longer"})
    assert (denied.effect.value, denied.rule) == ("deny", "/arguments/max_string_length")
    assert denied.reason.startswith("args.a is 14 characters long")  # on_deny does not replace it
    explained = engine.explain("i", "t", {"a": "not an integer"})
    assert explained.decision == denied.__class__(
        denied.effect, "t", "/arguments/max_string_length", explained.decision.reason
    )
    assert [step.pointer for step in explained.steps][-1] == "/arguments/max_string_length"
    assert engine.decide("i", "t", {"a": 1, "b": "long"}).rule == "/tools/t/deny_if/0"


def test_a_plain_allow_is_walked_when_the_section_sets_limits() -> None:
    engine = _engine({"max_items": 2})
    assert engine.decide("i", "plain", {"a": 1, "b": 2}).allowed
    denied = engine.decide("i", "plain", {"a": 1, "b": 2, "c": 3})
    assert (denied.effect.value, denied.rule) == ("deny", "/arguments/max_items")


def test_without_walking_limits_nothing_is_walked() -> None:
    engine = _engine({"max_regex_input": 50})
    huge = "x" * 10_000_000
    assert engine.decide("i", "plain", {"a": huge, "b": {1: b"bytes"}}).allowed


def test_non_json_values_are_denied_through_the_engine() -> None:
    engine = _engine({"non_json": "deny"})
    for value in ({1: "int key"}, b"bytes", {"a"}, ("t",), math.nan, math.inf, 2**64):
        denied = engine.decide("i", "plain", {"v": value})
        assert (denied.effect.value, denied.rule) == ("deny", "/arguments/non_json"), value
        assert denied.reason.endswith("send only JSON values.")


def test_a_bundle_denies_at_its_own_policy_pointer() -> None:
    from policylayer_core import PolicyEngine  # noqa: PLC0415

    doc = {
        "version": "1",
        "policies": {
            "tight": {
                "version": "1",
                "default": "allow",
                "arguments": {"max_depth": 1},
            },
            "loose": {"version": "1", "default": "allow"},
        },
        "grants": {"ci-*": "tight", "*": "loose"},
    }
    engine = PolicyEngine.from_dict(doc)
    denied = engine.decide("ci-1", "any", {"a": [1]})
    assert (denied.effect.value, denied.rule) == ("deny", "/policies/tight/arguments/max_depth")
    assert engine.decide("bob", "any", {"a": [1]}).allowed
