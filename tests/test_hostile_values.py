"""Caller values are judged by their data, never through their own methods (issue 15).

A Python caller can pass objects whose methods lie: an `int` subclass whose `>` says
False, a `list` subclass whose `len()` says 0, a `dict` subclass whose `get` finds
nothing, an object whose `__class__` property claims `dict`. Each of these got a wrong
ALLOW before. The rule now (`_json_values`, docs/decisions.md "What is not JSON"): a
value whose type is not exactly a JSON type is not JSON, and every condition, path step,
cost or equality that reads one is indeterminate: DENY at that place. Every test runs
both `decide()` (the generated code) and `explain()` (`ToolProgram.run`).

`approved` is read the same way: only the boolean True approves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import policy
from policylayer_core import Decision, Effect, PolicyEngine

# --- values whose methods lie ------------------------------------------------------------------


class LyingInt(int):
    """Claims to be smaller than, and different from, everything."""

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return False

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class LyingFloat(float):
    """Claims to be smaller than, and different from, everything."""

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return False

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = float.__hash__


class LyingStr(str):
    """Claims to be one character long and to equal everything."""

    def __len__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


class LyingList(list[Any]):
    """Claims to be empty, whatever it holds."""

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __getitem__(self, index: Any) -> Any:
        raise IndexError(index)

    def __contains__(self, value: object) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


class LyingDict(dict[Any, Any]):
    """Claims to be empty, whatever it holds."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default

    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __contains__(self, key: object) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def keys(self) -> Any:
        return [].__iter__()

    def items(self) -> Any:
        return [].__iter__()

    def values(self) -> Any:
        return [].__iter__()


def claims(kind: type) -> Any:
    """An object whose `__class__` property says `kind` (isinstance believes it), and
    whose methods say it is empty, small and unequal to everything."""

    class Claims:
        __class__ = property(lambda self: kind)  # type: ignore[assignment]

        def get(self, key: Any, default: Any = None) -> Any:
            return default

        def __len__(self) -> int:
            return 0

        def __iter__(self) -> Iterator[Any]:
            return iter(())

        def __contains__(self, value: object) -> bool:
            return False

        def __getitem__(self, key: Any) -> Any:
            raise KeyError(key)

        def __gt__(self, other: object) -> bool:
            return False

        def __ge__(self, other: object) -> bool:
            return False

        def __lt__(self, other: object) -> bool:
            return True

        def __le__(self, other: object) -> bool:
            return True

        def __eq__(self, other: object) -> bool:
            return kind is bool  # a bool-like: equal to everything

        def __bool__(self) -> bool:
            return True

        __hash__ = object.__hash__

    return Claims()


class Opaque:
    """A value no JSON operator knows."""


def engine_for(tools: dict[str, Any], **top: Any) -> PolicyEngine:
    return PolicyEngine(policy(tools, **top))


def both(engine: PolicyEngine, args: Any, tool: str = "t", **call: Any) -> tuple[Decision, ...]:
    """The decision of decide() (generated code) and of explain() (ToolProgram.run)."""
    return engine.decide("i", tool, args, **call), engine.explain("i", tool, args, **call).decision


def deny_if(condition: dict[str, Any]) -> PolicyEngine:
    return engine_for({"t": {"deny_if": [{"conditions": [condition]}]}})


COND = "/tools/t/deny_if/0/conditions/0"

# --- conditions ---------------------------------------------------------------------------------

# (condition of a deny_if, hostile arguments, the same data as plain JSON): each plain call
# is denied by the rule; each hostile one was allowed before.
WRONG_ALLOWS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "int subclass: lying >",
        {"path": "args.amount", "op": "gt", "value": 1000},
        {"amount": LyingInt(10**6)},
        {"amount": 10**6},
    ),
    (
        "int subclass: lying <= in a one-key check",
        {"path": "args.amount", "op": "lte", "value": 1000},
        {"amount": LyingInt(10**6)},
        {"amount": 5},
    ),
    (
        "int subclass: lying ==",
        {"path": "args.level", "op": "eq", "value": 5},
        {"level": LyingInt(5)},
        {"level": 5},
    ),
    (
        "int subclass: lying == in membership",
        {"path": "args.level", "op": "in", "value": [5, 6]},
        {"level": LyingInt(5)},
        {"level": 5},
    ),
    (
        "float subclass: lying >",
        {"path": "args.amount", "op": "gt", "value": 1000},
        {"amount": LyingFloat(1e6)},
        {"amount": 1e6},
    ),
    (
        "str subclass: lying len",
        {"path": "args.title", "op": "len_gt", "value": 3},
        {"title": LyingStr("a long title")},
        {"title": "a long title"},
    ),
    (
        "list subclass: lying len",
        {"path": "args.tasks", "op": "len_gt", "value": 3},
        {"tasks": LyingList([1, 2, 3, 4, 5])},
        {"tasks": [1, 2, 3, 4, 5]},
    ),
    (
        "list subclass: lying iter for contains",
        {"path": "args.tags", "op": "contains", "value": "prod"},
        {"tags": LyingList(["prod"])},
        {"tags": ["prod"]},
    ),
    (
        "list subclass: lying iter for '*'",
        {"path": "args.tasks.*.cmd", "op": "regex", "value": "rm"},
        {"tasks": LyingList([{"cmd": "rm -rf /"}])},
        {"tasks": [{"cmd": "rm -rf /"}]},
    ),
    (
        "list subclass: lying len for an index step",
        {"path": "args.tasks.0.cmd", "op": "regex", "value": "rm"},
        {"tasks": LyingList([{"cmd": "rm -rf /"}])},
        {"tasks": [{"cmd": "rm -rf /"}]},
    ),
    (
        "list subclass: lying len and iter for equality",
        {"path": "args.tags", "op": "eq", "value": []},
        {"tags": LyingList(["prod"])},
        {"tags": []},
    ),
    (
        "dict subclass nested: lying get",
        {"path": "args.opts.force", "op": "eq", "value": True},
        {"opts": LyingDict(force=True)},
        {"opts": {"force": True}},
    ),
    (
        "dict subclass nested: lying get for exists",
        {"path": "args.opts.force", "op": "exists"},
        {"opts": LyingDict(force=True)},
        {"opts": {"force": True}},
    ),
    (
        "dict subclass nested: lying len",
        {"path": "args.opts", "op": "len_gt", "value": 0},
        {"opts": LyingDict(force=True)},
        {"opts": {"force": True}},
    ),
    (
        "dict subclass nested: lying contains and [] for equality",
        {"path": "args.opts", "op": "eq", "value": {}},
        {"opts": LyingDict(force=True)},
        {"opts": {}},
    ),
    (
        "an object claiming dict",
        {"path": "args.opts.force", "op": "eq", "value": True},
        {"opts": claims(dict)},
        {"opts": {"force": True}},
    ),
    (
        "an object claiming dict, for exists",
        {"path": "args.opts.force", "op": "exists"},
        {"opts": claims(dict)},
        {"opts": {"force": True}},
    ),
    (
        "an object claiming list",
        {"path": "args.tasks.*.cmd", "op": "regex", "value": "rm"},
        {"tasks": claims(list)},
        {"tasks": [{"cmd": "rm"}]},
    ),
]


@pytest.mark.parametrize(
    ("condition", "hostile", "plain"),
    [case[1:] for case in WRONG_ALLOWS],
    ids=[case[0] for case in WRONG_ALLOWS],
)
def test_a_value_with_lying_methods_is_indeterminate_not_allowed(
    condition: dict[str, Any], hostile: dict[str, Any], plain: dict[str, Any]
) -> None:
    engine = deny_if(condition)
    for decision in both(engine, plain):
        assert decision.effect is Effect.DENY and decision.rule == "/tools/t/deny_if/0"
    for decision in both(engine, hostile):
        assert decision.effect is Effect.DENY, decision
        assert decision.rule == COND, decision
        assert "not a JSON value" in decision.reason, decision.reason


# Values that were already denied (an int or bool claimed through __class__): kept so.
@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ({"path": "args.n", "op": "gt", "value": 10}, claims(int)),
        ({"path": "args.n", "op": "lt", "value": 10}, claims(int)),
        ({"path": "args.force", "op": "eq", "value": True}, claims(bool)),
        ({"path": "args.force", "op": "neq", "value": False}, claims(bool)),
        ({"path": "args.name", "op": "starts_with", "value": "a"}, claims(str)),
    ],
    ids=["int gt", "int lt", "bool eq", "bool neq", "str starts_with"],
)
def test_an_object_claiming_a_scalar_class_is_indeterminate(
    condition: dict[str, Any], value: Any
) -> None:
    engine = deny_if(condition)
    for decision in both(engine, {condition["path"].split(".")[1]: value}):
        assert (decision.effect, decision.rule) == (Effect.DENY, COND), decision


@pytest.mark.parametrize(
    "rules",
    [
        {"require": [{"path": "args.amount", "op": "lte", "value": 1000}]},
        {"approve_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 1000}]}]},
    ],
    ids=["require", "approve_if"],
)
def test_a_lying_number_satisfies_no_require_and_skips_no_approval(rules: dict[str, Any]) -> None:
    engine = engine_for({"t": rules})
    rule_list = next(iter(rules))
    for decision in both(engine, {"amount": LyingInt(10**6)}):
        assert decision.effect is Effect.DENY, decision
        assert decision.rule.startswith(f"/tools/t/{rule_list}/0"), decision


def test_a_nested_subclass_is_not_json_even_when_its_methods_are_honest() -> None:
    # An IntEnum, a StrEnum or an OrderedDict is a subclass too: not judged by what its
    # methods answer nor by its storage (the tool may read it either way). Denied with
    # a reason that names the type.
    class Level(int):
        pass

    engine = deny_if({"path": "args.level", "op": "gt", "value": 5})
    for decision in both(engine, {"level": Level(1)}):
        assert (decision.effect, decision.rule) == (Effect.DENY, COND)
        assert "a Python Level (a subclass of int), which is not a JSON value" in decision.reason


# --- costs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "hostile"),
    [
        ("args.job.tasks", {"job": LyingDict(tasks=list(range(50)))}),
        ("args.job.tasks", {"job": claims(dict)}),
        ("args.batches.0", {"batches": LyingList([list(range(50))])}),
        ("args.job.size", {"job": {"size": LyingInt(50)}}),
    ],
)
def test_a_cost_read_through_a_lying_value_is_indeterminate(cost: str, hostile: Any) -> None:
    # Before, the lying value cost 1 token (the path did not resolve) or nothing: a
    # call of 50 tokens went through a bucket of 10.
    engine = engine_for({"t": {"limits": [{"window": "minute", "max": 10, "cost": cost}]}})
    for decision in both(engine, hostile):
        assert decision.effect is Effect.DENY, decision
        assert decision.rule == "/tools/t/limits/0", decision


# --- the arguments object itself ----------------------------------------------------------------


def test_a_dict_subclass_as_the_arguments_is_judged_by_its_storage_even_if_it_lies() -> None:
    # dict.copy reads a subclass that redefines __iter__ through its keys() and [], so
    # the old copy held what the methods claimed: nothing, and the deny_if never held.
    engine = deny_if({"path": "args.cmd", "op": "regex", "value": "rm"})
    for decision in both(engine, LyingDict(cmd="rm -rf /")):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t/deny_if/0"), decision
    for decision in both(engine, LyingDict(cmd="ls")):
        assert decision.effect is Effect.ALLOW, decision


def test_an_object_claiming_dict_as_the_arguments_is_not_an_object() -> None:
    engine = engine_for({"t": {"deny_if": [{"conditions": [{"path": "args.a", "op": "exists"}]}]}})
    for decision in both(engine, claims(dict)):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t"), decision
    static = engine_for({"t": {}})
    for decision in both(static, claims(dict)):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t"), decision


class ShiftyKey(str):
    """A key whose hash changes from call to call and that equals every other key."""

    hashes: Iterator[int]

    def __hash__(self) -> int:
        return next(ShiftyKey.hashes)

    def __eq__(self, other: object) -> bool:
        return True


def test_arguments_whose_keys_merge_when_copied_are_denied_not_guessed() -> None:
    ShiftyKey.hashes = iter([1, 2, *([7] * 100)])
    args = LyingDict()
    dict.__setitem__(args, ShiftyKey("a"), 1)  # stored under hash 1
    dict.__setitem__(args, ShiftyKey("b"), 2)  # stored under hash 2
    engine = deny_if({"path": "args.a", "op": "exists"})
    decision = engine.decide("i", "t", args)
    assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t"), decision
    assert "keys that do not compare consistently" in decision.reason
    assert engine.internal_failures == 0


# --- arguments.non_json: "ignore" ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [LyingList(["prod"]), ("prod",), frozenset({"prod"}), claims(list)],
    ids=["list subclass", "tuple", "frozenset", "claims list"],
)
def test_non_json_ignore_lets_values_through_the_walk_but_conditions_are_indeterminate(
    value: Any,
) -> None:
    # docs/decisions.md: under "ignore" the size walk measures such values as well as
    # it can, and conditions on them are indeterminate.
    engine = engine_for(
        {
            "t": {
                "deny_if": [
                    {"conditions": [{"path": "args.tags", "op": "contains", "value": "prod"}]}
                ]
            }
        },
        arguments={"max_items": 10, "non_json": "ignore"},
    )
    for decision in both(engine, {"tags": value, "other": ("kept",)}):
        assert (decision.effect, decision.rule) == (Effect.DENY, COND), decision
    # a value that is not read by any condition passes under "ignore"
    for decision in both(engine, {"tags": ["dev"], "other": LyingList([1])}):
        assert decision.effect is Effect.ALLOW, decision
    # and the walk still measures what it holds, through the base class
    for decision in both(engine, {"tags": ["dev"], "other": LyingList(range(11))}):
        assert decision.rule == "/arguments/max_items", decision


def test_non_json_deny_refuses_a_lying_value_before_any_rule() -> None:
    engine = engine_for(
        {"t": {"deny_if": [{"conditions": [{"path": "args.n", "op": "gt", "value": 5}]}]}},
        arguments={"non_json": "deny"},
    )
    for decision in both(engine, {"n": LyingInt(10)}):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/arguments/non_json"), decision


# --- approved -----------------------------------------------------------------------------------

APPROVALS = {
    "always": {"action": "approve"},
    "when_big": {
        "approve_if": [{"conditions": [{"path": "args.n", "op": "gt", "value": 5}]}],
        "limits": [{"window": "minute", "max": 100}],
    },
}
MISUSES: list[tuple[Any, str]] = [
    ("false", "a string"),
    ("0", "a string"),
    ("", "a string"),
    ([False], "an array"),
    ([], "an array"),
    (1, "a number"),
    (0, "a number"),
    (1.0, "a number"),
    (None, "null"),
    ({"approved": True}, "an object"),
    (Opaque(), "a Python Opaque, which is not a JSON value"),
    (claims(bool), "a Python Claims, which is not a JSON value"),
]


@pytest.mark.parametrize("tool", sorted(APPROVALS))
@pytest.mark.parametrize(
    ("approved", "named"),
    MISUSES,
    ids=[
        "'false'",
        "'0'",
        "''",
        "[False]",
        "[]",
        "1",
        "0",
        "1.0",
        "None",
        "dict",
        "opaque",
        "claims",
    ],
)
def test_approved_that_is_not_a_boolean_never_approves(
    tool: str, approved: Any, named: str
) -> None:
    engine = engine_for(APPROVALS)
    for decision in both(engine, {"n": 9}, tool=tool, approved=approved):
        assert (decision.effect, decision.rule) == (Effect.DENY, ""), decision
        assert decision.reason.startswith(
            f"approved must be the boolean True (a person approved this call) or False, but "
            f"it is {named}, so the call to '{tool}' is denied at its approval step"
        ), decision.reason


@pytest.mark.parametrize("tool", sorted(APPROVALS))
def test_true_approves_and_false_asks(tool: str) -> None:
    engine = engine_for(APPROVALS)
    for decision in both(engine, {"n": 9}, tool=tool, approved=True):
        assert decision.effect is Effect.ALLOW, decision
    for decision in both(engine, {"n": 9}, tool=tool, approved=False):
        assert decision.effect is Effect.APPROVAL_REQUIRED, decision
    for decision in both(engine, {"n": 9}, tool=tool):
        assert decision.effect is Effect.APPROVAL_REQUIRED, decision


def test_approved_is_read_only_where_a_tool_asks_for_approval() -> None:
    # A tool with no approval step never reads `approved`; a call that a deny_if
    # decides first is decided there.
    engine = engine_for(
        {
            "plain": {"limits": [{"window": "minute", "max": 100}]},
            "guarded": {
                "action": "approve",
                "deny_if": [{"conditions": [{"path": "args.n", "op": "gt", "value": 5}]}],
            },
        }
    )
    for decision in both(engine, {}, tool="plain", approved="false"):
        assert decision.effect is Effect.ALLOW, decision
    for decision in both(engine, {"n": 9}, tool="guarded", approved="false"):
        assert decision.rule == "/tools/guarded/deny_if/0", decision


def test_explain_shows_the_misused_approval() -> None:
    engine = engine_for(APPROVALS)
    steps = engine.explain("i", "always", {}, approved="yes").steps  # type: ignore[arg-type]
    assert steps[-1].outcome == "approved is not a boolean: deny"


# --- properties: a value that is not JSON is judged as any non-JSON value is --------------------

PROPERTY_POLICY = policy(
    {
        "t": {
            "require": [{"path": "args.a.b", "op": "exists", "value": False}],
            "deny_if": [
                {"conditions": [{"path": "args.n", "op": "gt", "value": 5}]},
                {"conditions": [{"path": "args.n", "op": "eq", "value": 3}]},
                {"conditions": [{"path": "args.s", "op": "len_gt", "value": 3}]},
                {"conditions": [{"path": "args.s", "op": "in", "value": ["x", 2, [1]]}]},
                {"conditions": [{"path": "args.l", "op": "contains", "value": 1}]},
                {"conditions": [{"path": "args.l.*.k", "op": "regex", "value": "x"}]},
                {"conditions": [{"path": "args.l.1", "op": "eq", "value": {"k": "y"}}]},
                {"conditions": [{"path": "args.d.k", "op": "starts_with", "value": "y"}]},
                {"conditions": [{"path": "args.d", "op": "len_eq", "value": 2}]},
                {"conditions": [{"path": "args.d.z", "op": "exists"}]},
            ],
            "approve_if": [{"conditions": [{"path": "args.n", "op": "lt", "value": -5}]}],
            "limits": [{"window": "second", "max": 10**6, "cost": "args.c.k"}],
        }
    }
)
IGNORING_POLICY = {
    **PROPERTY_POLICY,
    "arguments": {"max_items": 4, "max_depth": 4, "max_string_length": 4, "non_json": "ignore"},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-8, 8)
    | st.floats(-8, 8, allow_nan=False)
    | st.sampled_from(["x", "y", "yes", "xyz1", ""]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["k", "z", "b", "n"]), inner, max_size=3)
    ),
    max_leaves=10,
)
json_arguments = st.fixed_dictionaries(
    {}, optional={key: json_values for key in ["a", "n", "s", "l", "d", "c"]}
)


def hostile(value: Any) -> Any:
    """`value` wrapped in a lying class of its own kind (holding the same data)."""
    kind = type(value)
    if kind is int:
        return LyingInt(value)
    if kind is float:
        return LyingFloat(value)
    if kind is str:
        return LyingStr(value)
    if kind is list:
        return LyingList(value)
    if kind is dict:
        return LyingDict(value)
    return claims(bool if kind is bool else dict)


def places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside the arguments object (not the object itself)."""
    if path:
        yield path
    if type(value) is dict:
        for key, member in value.items():
            yield from places(member, (*path, key))
    elif type(value) is list:
        for index, member in enumerate(value):
            yield from places(member, (*path, index))


def replaced(value: Any, path: tuple[Any, ...], make: Callable[[Any], Any]) -> Any:
    if not path:
        return make(value)
    copy: Any = dict(value) if type(value) is dict else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], make)
    return copy


def verdicts(engine: PolicyEngine, args: Any) -> tuple[tuple[Effect, str], ...]:
    return tuple((d.effect, d.rule) for d in both(engine, args))


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROPERTY_ENGINE = PolicyEngine(PROPERTY_POLICY)
IGNORING_ENGINE = PolicyEngine(IGNORING_POLICY)


@PROPERTY_SETTINGS
@given(args=json_arguments, data=st.data())
def test_a_lying_value_is_judged_exactly_as_an_opaque_one(args: dict[str, Any], data: Any) -> None:
    """Whatever its methods say, a value of a non-JSON type gives the decision (effect
    and rule) that an object no operator knows gives, on both paths."""
    spots = list(places(args))
    if not spots:
        return
    spot = data.draw(st.sampled_from(spots))
    lying = verdicts(PROPERTY_ENGINE, replaced(args, spot, hostile))
    opaque = verdicts(PROPERTY_ENGINE, replaced(args, spot, lambda _: Opaque()))
    assert lying == opaque, (args, spot)
    assert lying[0] == lying[1]  # decide() and explain() agree
    assert PROPERTY_ENGINE.internal_failures == 0


@PROPERTY_SETTINGS
@given(
    args=json_arguments, data=st.data(), engine=st.sampled_from([PROPERTY_ENGINE, IGNORING_ENGINE])
)
def test_a_lying_value_is_never_allowed_where_its_data_is_not(
    args: dict[str, Any], data: Any, engine: PolicyEngine
) -> None:
    """Wrapping any part of the arguments in a lying class never turns a verdict into
    an ALLOW: what it holds is the plain call's data, which the policy judged."""
    spots = list(places(args))
    if not spots:
        return
    spot = data.draw(st.sampled_from(spots))
    lying = verdicts(engine, replaced(args, spot, hostile))
    plain = verdicts(engine, args)
    for (effect, _), (plain_effect, _) in zip(lying, plain, strict=True):
        if effect is Effect.ALLOW:
            assert plain_effect is Effect.ALLOW, (args, spot, lying, plain)
