"""Argument schemas judge caller values by their exact type, never through their methods.

The conditions already treat a value whose type is not exactly a JSON type as not JSON
(tests/test_hostile_values.py, docs/decisions.md "What is not JSON"). The schema checks
did not: they tested types with `isinstance` (which believes a `__class__` property) and
asked the values themselves for their length, members, order and equality, so a `list`
subclass whose `len()` says 0 passed `maxItems`, and a `str` subclass equal to everything
passed `enum`. Now a schema check that meets such a value makes the arguments invalid,
with a reason at the value's place, in the generated validators and in the jsonschema
checks behind them alike; no method of the value runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from conftest import policy
from policylayer_core import Decision, Effect, PolicyEngine
from policylayer_core.validators import compile_validator
from test_validators import JSON, documents

# --- values whose methods lie (each in the way that passes the check it meets) ------------------

CALLS: list[str] = []  # every lying method records itself: none may ever run


class Short(list[Any]):
    """Claims to be empty, whatever it holds."""

    def __len__(self) -> int:
        CALLS.append("Short.__len__")
        return 0

    def __iter__(self) -> Iterator[Any]:
        CALLS.append("Short.__iter__")
        return iter(())

    def __getitem__(self, index: Any) -> Any:
        CALLS.append("Short.__getitem__")
        raise IndexError(index)


class Long(list[Any]):
    """Claims to hold a million items."""

    def __len__(self) -> int:
        CALLS.append("Long.__len__")
        return 10**6


class ShortStr(str):
    __slots__ = ()

    def __len__(self) -> int:
        CALLS.append("ShortStr.__len__")
        return 0


class LongStr(str):
    __slots__ = ()

    def __len__(self) -> int:
        CALLS.append("LongStr.__len__")
        return 10**6


class Equal(str):
    """Equal to everything, hashed like 'create'."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        CALLS.append("Equal.__eq__")
        return True

    def __ne__(self, other: object) -> bool:
        CALLS.append("Equal.__ne__")
        return False

    def __lt__(self, other: object) -> bool:
        CALLS.append("Equal.__lt__")
        return False

    def __hash__(self) -> int:
        CALLS.append("Equal.__hash__")
        return hash("create")


class Key(str):
    """A property name that claims to be 'a'."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        CALLS.append("Key.__eq__")
        return True

    def __hash__(self) -> int:
        CALLS.append("Key.__hash__")
        return hash("a")


def _within(name: str) -> Any:
    def method(self: Any, *other: Any) -> Any:
        CALLS.append(name)
        return {"__eq__": True, "__ne__": False, "__mod__": 0, "__rmod__": 0}.get(name, False)

    return method


class Middling(int):
    """Neither below nor above any bound, equal to everything, a multiple of anything."""

    __slots__ = ()
    __lt__ = __le__ = _within("__lt__")
    __gt__ = __ge__ = _within("__gt__")
    __eq__ = _within("__eq__")  # type: ignore[assignment]
    __ne__ = _within("__ne__")  # type: ignore[assignment]
    __mod__ = _within("__mod__")
    __rmod__ = _within("__rmod__")
    __hash__ = int.__hash__


class MiddlingFloat(float):
    __slots__ = ()
    __lt__ = __le__ = _within("__lt__")
    __gt__ = __ge__ = _within("__gt__")
    __eq__ = _within("__eq__")  # type: ignore[assignment]
    __ne__ = _within("__ne__")  # type: ignore[assignment]
    __hash__ = float.__hash__


class Keys(dict[Any, Any]):
    """Claims to hold 'a' (as 1) and nothing else, whatever it holds."""

    def __contains__(self, key: object) -> bool:
        CALLS.append("Keys.__contains__")
        return True

    def __getitem__(self, key: Any) -> Any:
        CALLS.append("Keys.__getitem__")
        return 1

    def get(self, key: Any, default: Any = None) -> Any:
        CALLS.append("Keys.get")
        return 1

    def __iter__(self) -> Iterator[Any]:
        CALLS.append("Keys.__iter__")
        return iter(("a",))

    def keys(self) -> Any:
        CALLS.append("Keys.keys")
        return {"a": 1}.keys()

    def items(self) -> Any:
        CALLS.append("Keys.items")
        return {"a": 1}.items()

    def __len__(self) -> int:
        CALLS.append("Keys.__len__")
        return 1


def claims(kind: type) -> Any:
    """An object whose `__class__` property says `kind` (`isinstance` believes it) and whose
    methods say it is empty, holds every key, equals everything and is within any bound."""

    class Claims:
        __class__ = property(lambda self: kind)  # type: ignore[assignment]

        def __len__(self) -> int:
            CALLS.append("Claims.__len__")
            return 0

        def __iter__(self) -> Iterator[Any]:
            CALLS.append("Claims.__iter__")
            return iter(())

        def __contains__(self, key: object) -> bool:
            CALLS.append("Claims.__contains__")
            return True

        def __getitem__(self, key: Any) -> Any:
            CALLS.append("Claims.__getitem__")
            return 1

        def keys(self) -> Any:
            return {}.keys()

        def items(self) -> Any:
            return {}.items()

        __lt__ = __le__ = _within("Claims.__lt__")
        __gt__ = __ge__ = _within("Claims.__gt__")
        __eq__ = _within("__eq__")  # type: ignore[assignment]
        __hash__ = object.__hash__

    return Claims()


# --- one check per keyword family, on every path to a verdict ---------------------------------

# (id, the schema of args.v, a hostile value the old checks let through, a JSON value the
# schema rejects: what the hostile one holds, or what the tool would see through it)
CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("type: claims list", {"type": "array"}, claims(list), "x"),
    ("type: claims object", {"type": "object"}, claims(dict), "x"),
    ("type: claims string", {"type": "string"}, claims(str), 5),
    ("type: claims integer", {"type": "integer"}, claims(int), "x"),
    ("maxItems: list subclass", {"type": "array", "maxItems": 2}, Short(range(10)), [0] * 10),
    ("minItems: list subclass", {"type": "array", "minItems": 1}, Long(), []),
    ("maxLength: str subclass", {"type": "string", "maxLength": 3}, ShortStr("x" * 9), "x" * 9),
    ("minLength: str subclass", {"minLength": 1}, LongStr(""), ""),
    ("maximum: int subclass", {"type": "integer", "maximum": 10}, Middling(10**6), 10**6),
    ("minimum: int subclass", {"minimum": 0}, Middling(-5), -5),
    ("exclusiveMaximum: float subclass", {"exclusiveMaximum": 1}, MiddlingFloat(9e9), 9e9),
    ("multipleOf: int subclass", {"type": "integer", "multipleOf": 5}, Middling(7), 7),
    ("enum: str subclass", {"enum": ["create", "update"]}, Equal("rewrite"), "rewrite"),
    ("enum: claims string", {"enum": ["create"]}, claims(str), "rewrite"),
    ("const: str subclass", {"const": "create"}, Equal("rewrite"), "rewrite"),
    ("const: int subclass", {"const": 1}, Middling(2), 2),
    ("const: array holding a subclass", {"const": ["create"]}, [Equal("rm")], ["rm"]),
    ("required: dict subclass", {"type": "object", "required": ["a"]}, Keys(), {}),
    (
        "properties: dict subclass",
        {"type": "object", "properties": {"a": {"maximum": 5}}},
        Keys(a=100),
        {"a": 100},
    ),
    (
        "properties: claims object",
        {"type": "object", "properties": {"a": {"maximum": 5}}},
        claims(dict),
        {"a": 100},
    ),
    (
        "uniqueItems: items of a str subclass",
        {"type": "array", "uniqueItems": True},
        [Equal("a"), Equal("b")],
        ["a", "a"],
    ),
    ("items: list subclass", {"items": {"maximum": 5}}, Short([100]), [100]),
    ("prefixItems: list subclass", {"prefixItems": [{"maximum": 5}]}, Short([100]), [100]),
    (
        "contains: list subclass",
        {"not": {"contains": {"const": "rm -rf /"}}},
        Short(["rm -rf /"]),
        ["rm -rf /"],
    ),
    (
        "patternProperties: dict subclass",
        {"type": "object", "patternProperties": {"^x": {"maximum": 5}}},
        Keys(x=100),
        {"x": 100},
    ),
    (
        "additionalProperties: dict subclass",
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
        Keys(a=1, evil=2),
        {"a": 1, "evil": 2},
    ),
    (
        "additionalProperties: a key of a str subclass",
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
        {Key("evil"): 2},
        {"evil": 2},
    ),
    (
        "additionalProperties with patterns: a key of a str subclass",
        {"properties": {"a": {}}, "patternProperties": {"^b": {}}, "additionalProperties": False},
        {Key("evil"): 2},
        {"evil": 2},
    ),
]

# Keywords the generator leaves to jsonschema (the case is checked by jsonschema on every path).
DELEGATED = {"contains: list subclass"}

ROOT_ID = "https://example.com/arguments"


def schemas(value_schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tool's schema three ways: compiled to Python; args.v's schema object handed to
    jsonschema (it carries unevaluatedProperties, which the generator does not compile);
    and the whole schema handed to jsonschema (an `$id` below the root)."""
    return {
        "generated": {"type": "object", "properties": {"v": value_schema}},
        "jsonschema for args.v": {
            "type": "object",
            "properties": {"v": {**value_schema, "unevaluatedProperties": True}},
        },
        "jsonschema for all": {
            "$id": ROOT_ID,
            "type": "object",
            "properties": {"v": {"$id": "v", **value_schema}},
        },
    }


def delegations(schema: dict[str, Any]) -> int:
    """How many jsonschema checks the compiled validator calls (-1: it is one)."""
    validate = inspect.unwrap(compile_validator(schema))
    if validate.__code__.co_filename != "<policylayer compiled schema>":
        return -1
    return sum(
        getattr(value, "__qualname__", "").startswith("_jsonschema_check.")
        for value in validate.__globals__.values()
    )


def both(engine: PolicyEngine, args: Any) -> tuple[Decision, ...]:
    """The decision of decide() (generated code) and of explain() (ToolProgram.run)."""
    return engine.decide("i", "t", args), engine.explain("i", "t", args).decision


@pytest.mark.parametrize("way", ["generated", "jsonschema for args.v", "jsonschema for all"])
@pytest.mark.parametrize(
    ("name", "value_schema", "hostile", "plain"), CASES, ids=[case[0] for case in CASES]
)
def test_a_value_that_is_not_json_fails_the_schema_check_it_meets(
    way: str, name: str, value_schema: dict[str, Any], hostile: Any, plain: Any
) -> None:
    schema = schemas(value_schema)[way]
    delegated = delegations(schema)
    if way == "generated":
        assert delegated == (1 if name in DELEGATED else 0)
    else:
        assert delegated == (1 if way == "jsonschema for args.v" else -1)
    engine = PolicyEngine(policy({"t": {"schema": schema}}))
    for decision in both(engine, {"v": plain}):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t/schema"), decision
    CALLS.clear()
    for decision in both(engine, {"v": hostile}):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t/schema"), decision
        assert "at args.v" in decision.reason, decision.reason
        assert "which is not a JSON" in decision.reason, decision.reason
        assert "so it cannot be checked against the schema" in decision.reason, decision.reason
    assert CALLS == []
    assert engine.internal_failures == 0


def test_the_reason_names_the_value_its_type_and_the_keyword() -> None:
    engine = PolicyEngine(
        policy({"t": {"schema": {"type": "object", "properties": {"tasks": {"maxItems": 2}}}}})
    )
    decision = engine.decide("i", "t", {"tasks": Short(range(10))})
    assert decision.reason == (
        "The arguments for 't' do not match its schema: at args.tasks, the value is a Python "
        "Short (a subclass of list), which is not a JSON value, so it cannot be checked "
        "against the schema ('maxItems'). Fix the arguments and call again."
    )


AP = "additionalProperties"


@pytest.mark.parametrize(
    ("schema", "instance", "path", "keyword"),
    [
        ({"enum": [[["a", 1]]]}, [["a", Middling(1)]], (0, 1), "enum"),
        ({"const": {"a": [1]}}, {"a": [MiddlingFloat(1.0)]}, ("a", 0), "const"),
        ({"uniqueItems": True}, [[1], [Middling(1)]], (1, 0), "uniqueItems"),
        ({"additionalProperties": False, "properties": {"a": {}}}, {Key("b"): 1}, (), AP),
        ({"patternProperties": {"^a": {}}}, {Key("a"): 1}, (), "patternProperties"),
        ({"additionalProperties": {"type": "string"}}, {Key("b"): "x"}, (), AP),
    ],
)
def test_the_violation_points_at_the_part_that_is_not_json(
    schema: dict[str, Any], instance: Any, path: tuple[Any, ...], keyword: str
) -> None:
    CALLS.clear()
    violation = compile_validator(schema)(instance)
    assert violation is not None
    assert violation.path == path
    assert violation.keyword == keyword
    assert "which is not a JSON" in violation.message
    assert CALLS == []


# Values jsonschema judges as numbers and arrays (its type checker believes isinstance): not
# JSON, so refused, whichever way the schema is checked.
@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "number"}, Decimal("1.5")),
        ({"type": "number"}, Fraction(1, 3)),
        ({"enum": [[1, 2]]}, (1, 2)),
        ({"const": {"a": [1]}}, {"a": (1,)}),
        ({"uniqueItems": True}, (1, 1)),
        ({"items": {"type": "string"}}, ("x", 1)),
        ({"minLength": 1}, b""),
        ({"properties": {"a": {"minLength": 1}}}, {"a": ("x",)}),
    ],
)
@pytest.mark.parametrize("fallback", [False, True])
def test_values_jsonschema_would_judge_as_json_are_refused(
    schema: dict[str, Any], instance: Any, fallback: bool
) -> None:
    if fallback:
        schema = {**schema, "unevaluatedItems": True}
    assert validator_for(schema)(schema).is_valid(instance)
    violation = compile_validator(schema)(instance)
    assert violation is not None
    assert "which is not a JSON value, so it cannot be checked against the schema" in (
        violation.message
    )


def test_a_value_that_contains_itself_is_refused_not_recursed_into() -> None:
    # uniqueItems compares whole items; jsonschema is handed the whole value. (enum and
    # const compare only as deep as the schema's value: they end whatever the instance.)
    loop: list[Any] = [1]
    loop.append(loop)
    for schema in (
        {"uniqueItems": True},
        {"uniqueItems": True, "unevaluatedItems": True},
        {"contains": {"const": 2}},
    ):
        violation = compile_validator(schema)(loop)
        assert violation is not None, schema
        assert "contains itself" in violation.message
        assert violation.path == (1,)


class Loud(int):
    """A value whose repr must never be asked for."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise AssertionError("a message called the value's __repr__")


@pytest.mark.parametrize(
    "schema",
    [
        {"maxItems": 1},
        {"type": "string"},
        {"anyOf": [{"type": "string"}, {"maxItems": 1}]},
        {"oneOf": [{"type": "string"}, {"type": "object"}]},
        {"not": {"type": "array"}},
        {"prefixItems": [{}], "items": False},
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "additionalItems": False,
         "items": [{}]},
    ],
)  # fmt: skip
def test_a_failed_check_describes_the_value_without_calling_its_methods(
    schema: dict[str, Any],
) -> None:
    # The array is JSON, and fails the check; a value inside it is not, and is not met by
    # the check: the message shows the array without calling that value's __repr__.
    violation = compile_validator(schema)([1, Loud(2)])
    assert violation is not None
    assert "a Python Loud (a subclass of int)" in violation.message


# --- the property: a value that is not JSON never makes invalid arguments valid -----------------


class LyingStr(str):
    __slots__ = ()
    __len__ = lambda self: 0  # noqa: E731
    __eq__ = lambda self, other: True  # type: ignore[assignment]  # noqa: E731
    __hash__ = str.__hash__


class LyingList(list[Any]):
    __len__ = lambda self: 0  # noqa: E731
    __iter__ = lambda self: iter(())  # noqa: E731
    __eq__ = lambda self, other: True  # type: ignore[assignment]  # noqa: E731
    __hash__ = None  # type: ignore[assignment]


class LyingDict(dict[Any, Any]):
    __len__ = lambda self: 0  # noqa: E731
    __iter__ = lambda self: iter(())  # noqa: E731
    items = lambda self: {}.items()  # noqa: E731
    keys = lambda self: {}.keys()  # noqa: E731
    __contains__ = lambda self, key: False  # noqa: E731
    __eq__ = lambda self, other: True  # type: ignore[assignment]  # noqa: E731
    __hash__ = None  # type: ignore[assignment]


def liar(value: Any) -> Any:
    """`value` as a subclass of its type whose methods lie, or an object claiming its type."""
    kind = type(value)
    if kind is str:
        return LyingStr(value)
    if kind is int:
        return Middling(value)
    if kind is float:
        return MiddlingFloat(value)
    if kind is list:
        return LyingList(value)
    if kind is dict:
        return LyingDict(value)
    return claims(kind)  # a bool or None


def places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if type(value) is list:
        for index, item in enumerate(value):
            yield from places(item, (*path, index))
    elif type(value) is dict:
        for key, item in value.items():
            yield from places(item, (*path, key))


def wrapped(value: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return liar(value)
    step, rest = path[0], path[1:]
    if type(value) is list:
        return [wrapped(item, rest) if index == step else item for index, item in enumerate(value)]
    return {key: wrapped(item, rest) if key == step else item for key, item in value.items()}


def is_valid(schema: dict[str, Any], instance: Any) -> bool:
    try:
        return compile_validator(schema)(instance) is None
    except Exception:
        return False  # the engine fails closed


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(schema=documents(), instance=JSON, data=st.data())
def test_a_lying_value_never_turns_invalid_arguments_valid(
    schema: dict[str, Any], instance: Any, data: st.DataObject
) -> None:
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError:
        assume(False)
    assume(not is_valid(schema, instance))
    path = data.draw(st.sampled_from(list(places(instance))))
    assert not is_valid(schema, wrapped(instance, path))
