"""Argument schemas cost bounded work per call: no endless recursion, no quadratic checks.

A schema that applies itself to the same value without descending into it is refused when
the policy loads; recursion that descends is bounded by the depth of the arguments, and
too deep arguments deny with a reason (never an exception out of `decide()`, not even one
raised inside a compiled extension). `uniqueItems` and jsonschema's `unevaluated*`
keywords take time near-linear in the array or object, and a failing `oneOf` judges its
branches once.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from conftest import policy
from policylayer_core import Effect, PolicyEngine, PolicyError
from policylayer_core._schema_runtime import unique
from policylayer_core.schemas import check_argument_schema
from policylayer_core.validators import SchemaViolation, compile_validator

DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT201909 = "https://json-schema.org/draft/2019-09/schema"

_jsonschema_utils: Any = importlib.import_module("jsonschema._utils")


def load_error(schema: Any) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        PolicyEngine(policy({"t": {"schema": schema}}))
    return caught.value


# -- references that loop without descending into the value --------------------------------

LOOPS = [
    # The schema of issue 15: it loaded, and validating with it recursed until the stack ran
    # out, at some depths inside `referencing`'s Rust maps (a PanicException).
    ({"not": {"$ref": "#"}, "unevaluatedItems": False}, "/not/$ref"),
    ({"$ref": "#"}, "/$ref"),
    ({"allOf": [{"$ref": "#"}]}, "/allOf/0/$ref"),
    ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, "/anyOf/1/$ref"),
    ({"oneOf": [{"$ref": "#"}], "unevaluatedProperties": False}, "/oneOf/0/$ref"),
    ({"if": {"$ref": "#"}}, "/if/$ref"),
    ({"if": {"type": "object"}, "then": {"$ref": "#"}}, "/then/$ref"),
    ({"if": {"type": "object"}, "else": {"not": {"$ref": "#"}}}, "/else/not/$ref"),
    ({"dependentSchemas": {"a": {"$ref": "#"}}}, "/dependentSchemas/a/$ref"),
    # A chain of references through several definitions.
    (
        {
            "$ref": "#/$defs/a",
            "$defs": {
                "a": {"allOf": [{"$ref": "#/$defs/b"}]},
                "b": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/a"}]},
            },
        },
        "/$defs/b/anyOf/1/$ref",
    ),
    # A definition that loops, even one no call reaches, is refused.
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}}, "/$defs/a/$ref"),
    # Draft-07: definitions, and the schema form of dependencies.
    (
        {
            "$schema": DRAFT7,
            "properties": {"x": {"$ref": "#/definitions/a"}},
            "definitions": {"a": {"oneOf": [{"$ref": "#/definitions/a"}]}},
        },
        "/definitions/a/oneOf/0/$ref",
    ),
    ({"$schema": DRAFT7, "dependencies": {"a": {"$ref": "#"}}}, "/dependencies/a/$ref"),
    # Dynamic references: every anchor they may land on counts.
    (
        {"$schema": DRAFT201909, "$recursiveAnchor": True, "anyOf": [{"$recursiveRef": "#"}]},
        "/anyOf/0/$recursiveRef",
    ),
    (
        {"$id": "https://example.com/s", "$dynamicAnchor": "m", "not": {"$dynamicRef": "#m"}},
        "/not/$dynamicRef",
    ),
    # An anchor reference, and a reference into an `enum` member (applied as a schema).
    ({"$defs": {"a": {"$anchor": "here", "not": {"$ref": "#here"}}}}, "/$defs/a/not/$ref"),
    ({"$ref": "#/enum/0", "enum": [{"allOf": [{"$ref": "#"}]}]}, "/enum/0/allOf/0/$ref"),
]


@pytest.mark.parametrize(("schema", "pointer"), LOOPS)
def test_references_that_loop_without_descending_are_load_errors(
    schema: dict[str, Any], pointer: str
) -> None:
    error = load_error(schema)
    assert len(error.issues) == 1, error
    issue = error.issues[0]
    assert issue.pointer == "/tools/t/schema" + pointer
    assert "without descending into any part of the value" in issue.message
    assert "the same value forever" in issue.message
    assert "Make the loop go through a keyword that checks a part of the value" in issue.message
    assert issue.message.endswith(".")


def test_a_loop_error_names_the_loop() -> None:
    issue = load_error(LOOPS[0][0]).issues[0]
    assert issue.message.startswith(
        "The $ref '#' leads back to the schema's root without descending into any part of "
        "the value it checks (the loop: the root -> '/not' -> the root)"
    )
    issue = load_error(LOOPS[9][0]).issues[0]
    assert "The $ref '#/$defs/a' leads back to the subschema at '/$defs/a'" in issue.message
    loop = "'/$defs/a' -> '/$defs/a/allOf/0' -> '/$defs/b' -> '/$defs/b/anyOf/1' -> '/$defs/a'"
    assert f"(the loop: {loop})" in issue.message


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name"],
            "unevaluatedProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
RECURSIVE = [
    TREE,
    {"properties": {"next": {"$ref": "#"}}},
    {"items": {"$ref": "#"}},
    {"prefixItems": [{"$ref": "#"}], "unevaluatedItems": False},
    {"additionalProperties": {"$ref": "#"}, "unevaluatedProperties": False},
    {"patternProperties": {"^a": {"$ref": "#"}}},
    {"contains": {"$ref": "#"}, "unevaluatedItems": False},
    {"propertyNames": {"$ref": "#"}},
    {"anyOf": [{"type": "string"}, {"properties": {"a": {"$ref": "#"}}}]},
    {"not": {"items": {"not": {"$ref": "#"}}}},
    {"$schema": DRAFT7, "items": [{"$ref": "#"}], "additionalItems": {"$ref": "#"}},
    {"$schema": DRAFT201909, "$recursiveAnchor": True, "properties": {"a": {"$recursiveRef": "#"}}},
    {"$id": "https://example.com/s", "$dynamicAnchor": "m", "items": {"$dynamicRef": "#m"}},
]
INSTANCES = [
    {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]},
    {"name": "a", "children": [{"name": "b", "children": [{}]}]},
    {"name": "a", "children": [{"name": "b", "extra": 1}]},
    {"next": {"next": {"a": [[1], ["x"]]}}},
    {"a": {"a": {"a": "x"}}, "b": [[], [[]]]},
]


@pytest.mark.parametrize("schema", RECURSIVE)
def test_recursive_schemas_that_descend_load_and_validate(schema: dict[str, Any]) -> None:
    engine = PolicyEngine(policy({"t": {"schema": schema}}))
    reference = validator_for(schema)(schema)
    for instance in INSTANCES:
        d = engine.decide("i", "t", instance)
        assert (d.rule != "/tools/t/schema") is reference.is_valid(instance), (instance, d)


# Schemas where references may appear anywhere, in place or below a part of the value.
REFS = st.sampled_from(["#", "#/$defs/a", "#/$defs/b"])
LEAVES = st.booleans() | st.sampled_from(
    [{"type": "string"}, {"type": "object"}, {"minItems": 1}, {"required": ["a"]}]
)


def _schemas(depth: int) -> st.SearchStrategy[Any]:
    reference = REFS.map(lambda ref: {"$ref": ref})
    if depth == 0:
        return LEAVES | reference
    return LEAVES | reference | _objects(depth)


def _objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    inner = _schemas(depth - 1)
    keywords: dict[str, st.SearchStrategy[Any]] = {
        "$ref": REFS,
        "allOf": st.lists(inner, min_size=1, max_size=2),
        "anyOf": st.lists(inner, min_size=1, max_size=2),
        "oneOf": st.lists(inner, min_size=1, max_size=2),
        "not": inner,
        "if": inner,
        "then": inner,
        "else": inner,
        "dependentSchemas": st.dictionaries(st.just("a"), inner, max_size=1),
        "properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, min_size=1, max_size=2),
        "patternProperties": st.dictionaries(st.sampled_from(["^a", "b"]), inner, max_size=2),
        "additionalProperties": inner,
        "items": inner,
        "prefixItems": st.lists(inner, min_size=1, max_size=2),
        "contains": inner,
        "unevaluatedItems": inner,
        "unevaluatedProperties": inner,
    }
    entries = st.one_of([st.tuples(st.just(key), value) for key, value in keywords.items()])
    return st.lists(entries, min_size=1, max_size=3).map(dict)


@st.composite
def referring_schemas(draw: st.DrawFn) -> dict[str, Any]:
    root = draw(_objects(3))
    return {"$defs": {"a": draw(_schemas(2)), "b": draw(_schemas(1))}, **root}


SMALL_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(0, 2) | st.sampled_from(["", "a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=6,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(schema=referring_schemas(), instances=st.lists(SMALL_JSON, min_size=1, max_size=4))
def test_a_schema_that_loads_never_recurses_without_bound(
    schema: dict[str, Any], instances: list[Any]
) -> None:
    """Soundness of the load-time rule: whatever the loader accepts, jsonschema and the
    compiled validator judge small values without running out of stack."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except SchemaError:
        return
    try:
        check_argument_schema(schema)
    except Exception as refused:
        assert "leads back to" in str(refused), refused
        return
    validate = compile_validator(schema)
    reference = jsonschema.Draft202012Validator(schema)
    for instance in instances:
        try:
            expected = reference.is_valid(instance)
        except RecursionError:  # pragma: no cover - what the rule is there to prevent
            pytest.fail(f"jsonschema recursed without bound on {instance!r}")
        assert (validate(instance) is None) is expected, instance


# -- the depth of the arguments --------------------------------------------------------------

# A recursive schema left to jsonschema (unevaluatedProperties), whose references go through
# `referencing` and its Rust maps on every level.
FALLBACK_TREE = {
    "$defs": {
        "n": {
            "type": "object",
            "properties": {"c": {"$ref": "#/$defs/n"}},
            "unevaluatedProperties": False,
        }
    },
    "$ref": "#/$defs/n",
}


def _chain(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"c": value}
    return value


def _at_depth(frames: int, call: Callable[[], Any]) -> Any:
    """`call()` from `frames` more Python frames down the stack."""
    if frames == 0:
        return call()
    return _at_depth(frames - 1, call)


def test_recursion_limit_inside_the_fallback_is_a_recursion_error() -> None:
    """Called from any depth of the caller's stack, the validator returns or raises
    RecursionError: never the BaseException pyo3 raises when the limit is hit inside Rust
    code (`referencing` looking a reference up in an `rpds` map), which escaped
    `except Exception` when the stack had a dozen frames left."""
    validate = compile_validator(FALLBACK_TREE)
    instance = _chain(3)
    outcomes: set[str] = set()
    for frames in range(sys.getrecursionlimit()):
        try:
            _at_depth(frames, functools.partial(validate, instance))
            outcomes.add("judged")
        except RecursionError:
            outcomes.add("too deep")
        except BaseException as failure:  # what the test looks for
            pytest.fail(f"{frames} frames down: {type(failure).__name__}: {failure}")
    assert outcomes == {"judged", "too deep"}


def test_deep_arguments_under_recursive_schemas_deny_with_a_reason() -> None:
    for schema in (FALLBACK_TREE, {"properties": {"c": {"$ref": "#"}}}):
        engine = PolicyEngine(policy({"t": {"schema": schema}}))
        decide = functools.partial(engine.decide, "i", "t", _chain(10_000))
        for frames in range(0, 500, 7):
            d = _at_depth(frames, decide)
            assert d.effect is Effect.DENY
            assert "nested too deeply to check" in d.reason
        assert engine.decide("i", "t", _chain(20)).effect is Effect.ALLOW
        assert engine.internal_failures == 0


def test_a_failing_one_of_judges_each_branch_once_per_level() -> None:
    """Each level fails (no branch, or two, match): building the message judged the
    branches again, twice the work per level, about a minute for 20 levels."""
    schema = {"oneOf": [{"properties": {"a": {"$ref": "#"}}}, {"required": ["z"]}]}
    validate = compile_validator(schema)
    small: Any = {"z": 1}
    for _ in range(3):
        small = {"a": small}
    for instance in (small, {"z": 1}):  # no branch matches; both do
        violation = validate(instance)
        # The oneOf's own error (best_match would pick one from inside its branches).
        error = next(jsonschema.Draft202012Validator(schema).iter_errors(instance))
        assert violation == SchemaViolation((), "oneOf", error.message)
    deep: Any = {"z": 1}
    for _ in range(20):
        deep = {"a": deep}
    started = time.perf_counter()
    assert validate(deep) is not None
    assert time.perf_counter() - started < 5.0


# Recursions that judge one part of the value twice per level: through two anyOf branches,
# a `$ref` beside `properties`, two patterns matching one key, two allOf branches.
BRANCHING = [
    {
        "anyOf": [
            {"properties": {"a": {"$ref": "#"}}, "additionalProperties": False},
            {"properties": {"a": {"$ref": "#"}}, "maxProperties": 1},
        ]
    },
    {
        "$ref": "#/$defs/base",
        "properties": {"a": {"$ref": "#"}},
        "$defs": {"base": {"properties": {"a": {"$ref": "#"}}}},
    },
    {"patternProperties": {"^a": {"$ref": "#"}, "a$": {"$ref": "#"}}},
    {
        "allOf": [
            {"properties": {"a": {"$ref": "#"}}},
            {"properties": {"a": {"$ref": "#", "type": "object"}}},
        ]
    },
]


def _nested(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = {"a": inner}
    return inner


@pytest.mark.parametrize("schema", BRANCHING)
def test_recursive_branches_judge_each_part_of_the_value_once(schema: dict[str, Any]) -> None:
    """Twice the work per level made 22 levels take seconds to minutes, and 30 hours."""
    validate = compile_validator(schema)
    reference = jsonschema.Draft202012Validator(schema)
    for inner in ({}, {"a": 1, "z": 1}, {"a": [], "b": 2}, 3):
        instance = _nested(6, inner)
        assert (validate(instance) is None) is reference.is_valid(instance), instance
    started = time.perf_counter()
    for inner in ({}, {"a": 1, "z": 1}):
        validate(_nested(30, inner))
    assert time.perf_counter() - started < 5.0


NESTED = st.recursive(
    st.none() | st.integers(0, 2) | st.sampled_from(["", "a"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("abz"), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(instance=NESTED, which=st.integers(0, len(BRANCHING) - 1))
def test_recursions_that_keep_their_verdicts_agree_with_jsonschema(
    instance: Any, which: int
) -> None:
    schema = BRANCHING[which]
    expected = jsonschema.Draft202012Validator(schema).is_valid(instance)
    assert (compile_validator(schema)(instance) is None) is expected


# A recursive base extended with `unevaluatedProperties: false` (the keyword's usual use):
# jsonschema judges `base` again to collect its annotations, on every level.
EXTENDED_TREE = {
    "$defs": {
        "base": {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        },
        "node": {
            "allOf": [{"$ref": "#/$defs/base"}],
            "properties": {"name": {"type": "string"}},
            "unevaluatedProperties": False,
        },
    },
    "$ref": "#/$defs/node",
}


def _family(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "leaf"}
    for _ in range(depth):
        node = {"name": "n", "children": [node]}
    return node


def test_work_left_to_jsonschema_is_bounded() -> None:
    """Each level doubled jsonschema's work: 14 levels took 10 s, 30 would take days. A
    check may take a number of steps linear in the sizes of the schema and the value."""
    validate = compile_validator(EXTENDED_TREE)
    reference = jsonschema.Draft202012Validator(EXTENDED_TREE)
    for instance in (_family(4), {**_family(3), "extra": 1}):
        assert (validate(instance) is None) is reference.is_valid(instance)
    started = time.perf_counter()
    violation = validate(_family(30))
    assert time.perf_counter() - started < 5.0
    assert violation is not None and violation.path == ()
    assert violation.message.startswith("the value is too costly to check against the schema")
    # The engine denies with that reason, at the schema.
    engine = PolicyEngine(policy({"t": {"schema": EXTENDED_TREE}}))
    d = engine.decide("i", "t", _family(30))
    assert (d.effect, d.rule) == (Effect.DENY, "/tools/t/schema")
    assert "too costly to check against the schema" in d.reason


def test_large_values_left_to_jsonschema_are_not_refused() -> None:
    """The bound grows with the value: checks that judge each value a few times pass."""
    schema = {
        "$dynamicRef": "#list",
        "$defs": {
            "list": {
                "$dynamicAnchor": "list",
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "tags": {"items": True}},
                    "required": ["id"],
                    "unevaluatedProperties": False,
                },
            }
        },
    }
    validate = compile_validator(schema)
    instance = [{"id": n, "tags": ["a", "b"]} for n in range(5000)]
    assert validate(instance) is None
    violation = validate([*instance, {"id": 1, "x": 2}])
    assert violation is not None
    assert (violation.path, violation.keyword) == ((5000,), "unevaluatedProperties")


# -- uniqueItems -------------------------------------------------------------------------------

NAN = float("nan")  # one object: jsonschema's `is` test makes it equal to itself
ITEMS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, -0.0, 1.0, 2.5, math.inf, NAN, 2**53, float(2**53), 10**20])
    | st.floats(allow_nan=True)
    | st.sampled_from(["", "a", "1"]),
    # JSON only: tuples and keys that are not str are refused (see the tests below).
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=8,
)


UNIQUE_SCHEMAS = [
    {"uniqueItems": True},  # compiled
    # Left to jsonschema: with unevaluatedItems, and a whole schema with a dynamic reference.
    {"uniqueItems": True, "items": True, "unevaluatedItems": False},
    {"$dynamicRef": "#u", "$defs": {"u": {"$dynamicAnchor": "u", "uniqueItems": True}}},
]


def pairwise_unique(items: list[Any]) -> bool:
    """The plain quadratic reference: no two items are equal under jsonschema's `equal`."""
    plain = [_jsonschema_utils.unbool(item) for item in items]
    return not any(
        _jsonschema_utils.equal(plain[i], plain[j])
        for i in range(len(plain))
        for j in range(i + 1, len(plain))
    )


@settings(max_examples=400, deadline=None)
@given(items=st.lists(ITEMS, max_size=6), copies=st.lists(st.integers(0, 5), max_size=3))
def test_unique_agrees_with_jsonschema(items: list[Any], copies: list[int]) -> None:
    # Repeat some items (the same objects), so that duplicates are common.
    items = items + [items[i] for i in copies if i < len(items)]
    assert unique(items) is _jsonschema_utils.uniq(items)
    # Where the items do not sort, jsonschema compares every pair: the key set must agree.
    unsortable = [{}, *items]
    assert unique(unsortable) is pairwise_unique(unsortable)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(ITEMS, max_size=6))
def test_unique_items_agrees_with_jsonschema_in_every_validator(items: list[Any]) -> None:
    doubled = items + items[: len(items) // 2]
    for schema in UNIQUE_SCHEMAS:
        validate = compile_validator(schema)
        for instance in (items, doubled):
            expected = jsonschema.Draft202012Validator(schema).is_valid(instance)
            assert (validate(instance) is None) is expected


class Liar(str):
    """A str that claims to equal everything, sorts first and hashes alike."""

    calls: list[str] = []  # noqa: RUF012 - shared on purpose

    def __eq__(self, other: object) -> bool:
        Liar.calls.append("__eq__")
        return True

    def __lt__(self, other: object) -> bool:
        Liar.calls.append("__lt__")
        return True

    def __hash__(self) -> int:
        Liar.calls.append("__hash__")
        return 0


class LyingList(list[Any]):
    def __iter__(self) -> Any:
        Liar.calls.append("list.__iter__")
        return iter([])

    def __len__(self) -> int:
        Liar.calls.append("list.__len__")
        return 0


class LyingDict(dict[Any, Any]):
    def items(self) -> Any:
        Liar.calls.append("dict.items")
        return [].__iter__()

    def __iter__(self) -> Any:
        Liar.calls.append("dict.__iter__")
        return iter([])


class Number(int):
    def __eq__(self, other: object) -> bool:
        Liar.calls.append("int.__eq__")
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize(
    "items",
    [
        [Liar("a"), Liar("b")],
        [Liar("a"), "a"],
        [{"k": Liar("a")}, {"k": Liar("b")}],
        [{"k": Liar("a")}, {"k": "a"}],
        [LyingList([1, 2]), [1, 2]],
        [LyingList([1, 2]), [1]],
        [LyingDict(a=1), {"a": 1}],
        [LyingDict(a=1), {"a": 2}],
        [{Liar("a"): 1}, {"a": 1}],
        [Number(1), 2],
        [Number(1), 1.0],
        [(Liar("x"),), ("x",)],
    ],
)
def test_unique_items_refuses_subclasses_without_calling_them(items: list[Any]) -> None:
    # Not judged by their data either: the tool may read them through the lying methods.
    Liar.calls.clear()
    for schema in UNIQUE_SCHEMAS:
        violation = compile_validator(schema)(items)
        assert violation is not None
        assert "which is not a JSON" in violation.message
    assert Liar.calls == []


@pytest.mark.parametrize("odd", [{1, 2}, b"ab", object(), {(1,): "a"}, {frozenset(): 1}])
def test_unique_items_refuses_values_that_are_not_json(odd: Any) -> None:
    Liar.calls.clear()
    for schema in UNIQUE_SCHEMAS:
        violation = compile_validator({"properties": {"tags": schema}})({"tags": ["a", odd]})
        assert violation is not None
        assert violation.path == ("tags", 1)
        assert violation.keyword in {"uniqueItems", "type"}  # "type": before jsonschema runs
        assert "which is not a JSON" in violation.message
        assert "so it cannot be checked against the schema" in violation.message
    assert Liar.calls == []


@pytest.mark.parametrize(
    "schema",
    [
        {"uniqueItems": True},
        # Left to jsonschema: its uniqueItems, and its unevaluatedItems next to `items`.
        {"uniqueItems": True, "items": {"type": "object"}, "unevaluatedItems": False},
        {"$dynamicRef": "#u", "$defs": {"u": {"$dynamicAnchor": "u", "uniqueItems": True}}},
    ],
)
def test_unique_items_on_many_objects_takes_near_linear_time(schema: dict[str, Any]) -> None:
    """8,000 small objects took minutes (every pair compared), now a set of keys."""
    validate = compile_validator(schema)
    objects = [{"id": n, "tags": ["a", n % 7], "on": n % 2 == 0} for n in range(8000)]
    started = time.perf_counter()
    assert validate(objects) is None
    violation = validate([*objects, {"on": True, "tags": ["a", 3], "id": 10}])
    assert violation is not None
    assert (violation.path, violation.keyword) == ((), "uniqueItems")
    assert violation.message.endswith("}] has non-unique elements")
    assert time.perf_counter() - started < 5.0  # minutes before


def test_unevaluated_keywords_take_near_linear_time() -> None:
    """jsonschema tests each item or key against a list of the evaluated ones."""
    items = compile_validator({"items": {"type": "integer"}, "unevaluatedItems": False})
    properties = compile_validator(
        {"additionalProperties": {"type": "integer"}, "unevaluatedProperties": False}
    )
    for check, instance in (
        (items, list(range(50_000))),
        (properties, {str(index): index for index in range(50_000)}),
    ):
        started = time.perf_counter()
        assert check(instance) is None
        assert time.perf_counter() - started < 5.0  # 20 s and 30 s before
