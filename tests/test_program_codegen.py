"""The generated tool programs decide exactly as the general path does.

`decide()` runs the function `_program_codegen` writes for each tool; `explain()` and
every call that function is unsure about run `ToolProgram.run`. Two engines over the
same policy, one with generation switched off, must give equal decisions (effect,
rule, reason, retry_after) for any sequence of calls, state included.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policylayer_core.compiler as compiler_module
from conftest import FakeClock, policy
from policylayer_core import Decision, PolicyEngine
from policylayer_core._program_codegen import StoreMethods, _source, general_run
from test_hostile_values import LyingDict, LyingInt, LyingList, claims

EXAMPLES = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "150"))

DOC = policy(
    {
        "batch": {
            "schema": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
            },
            "require": [{"path": "args.p", "op": "starts_with", "value": "/srv/"}],
            "deny_if": [
                {"conditions": [{"path": "args.a", "op": "eq", "value": "x"}]},
                {"conditions": [{"path": "args.p", "op": "regex", "value": "\\.\\."}]},
                {
                    "conditions": [
                        {"path": "args.n", "op": "gt", "value": 5},
                        {"path": "args.a", "op": "in", "value": ["y", "z"]},
                    ]
                },
                {"conditions": [{"path": "args.tags", "op": "contains", "value": "bad"}]},
            ],
            "approve_if": [{"conditions": [{"path": "args.items", "op": "len_gt", "value": 3}]}],
            "limits": [{"counter": "w", "window": "minute", "max": 5, "cost": "args.items"}],
        },
        "checks": {
            "deny_if": [
                {"conditions": [{"path": "args.a", "op": "neq", "value": "ok"}]},
                {"conditions": [{"path": "args.b", "op": "not_in", "value": ["p", "q"]}]},
                {"conditions": [{"path": "args.n", "op": "lte", "value": -1.5}]},
                {"conditions": [{"path": "args.p", "op": "ends_with", "value": ".."}]},
                {"conditions": [{"path": "args.items", "op": "len_eq", "value": 2}]},
                {"conditions": [{"path": "args.n", "op": "gte", "value": 100}]},
                {"conditions": [{"path": "args.tags", "op": "exists"}]},
            ],
            "require": [{"path": "args.n", "op": "lt", "value": 1000}],
            "limits": [
                {"counter": "g", "window": "minute", "max": 4, "cost": 2, "scope": "global"}
            ],
        },
        "approved_only": {
            "action": "approve",
            "limits": [{"counter": "s", "window": "second", "max": 2, "scope": "session"}],
        },
        "never": {"deny_if": [{"conditions": []}]},
        "plain": {},
        "shared": {
            "limits": [{"counter": "calls", "window": "minute", "max": 12, "cost": "args.items"}]
        },
    },
    all_tools={"limits": [{"counter": "calls", "window": "minute", "max": 12}]},
)

TOOLS = ["batch", "checks", "approved_only", "never", "plain", "shared", "other"]
KEYS = ["a", "b", "n", "p", "items", "tags"]


class Sly(str):
    """A str subclass that claims to equal everything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 1100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["x", "y", "z", "ok", "p", "q", "/srv/a", "/srv/../b", "bad", "a..", ""]),
)
odd_values = st.sampled_from(
    [
        b"bytes",
        {"set"},
        ("tuple",),
        Sly("x"),
        10**30,
        math.nan,
        LyingInt(6),
        LyingList([1, 2, 3, 4]),
        LyingDict(k=1),
        claims(dict),
    ]
)
# `approved` as a careless integration may pass it: only True approves.
approvals = st.sampled_from([False, True, False, True, "false", 1, None, [False]])
values = st.recursive(
    st.one_of(json_scalars, odd_values),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mostly(*likely: Any) -> st.SearchStrategy[Any]:
    """Values a rule of DOC tests for, mostly, and anything else sometimes."""
    chosen = st.sampled_from(likely)
    return st.one_of(chosen, chosen, chosen, values)


# Arguments shaped to get past the earlier rules, so the later ones are reached too.
ruled_arguments = st.fixed_dictionaries(
    {"p": _mostly("/srv/a", "/srv/../b", "/srv/x..", "/home")},
    optional={
        "a": _mostly("ok", "x", "y", "z", "w"),
        "b": _mostly("p", "q", "r"),
        "n": _mostly(-2, -1, 0, 1, 5, 6, 99, 100, 999, 1000, -1.5, 2.5),
        "items": st.one_of(st.lists(st.integers(0, 3), max_size=6), st.text(max_size=6), values),
        "tags": _mostly(["bad"], ["good"], "bad"),
    },
)
arguments = st.one_of(
    ruled_arguments,
    ruled_arguments,
    ruled_arguments,
    st.dictionaries(st.sampled_from(KEYS), values, max_size=5),
    st.sampled_from([None, [], "text", 3]),
)
calls = st.lists(
    st.tuples(
        st.sampled_from(TOOLS),
        arguments,
        st.sampled_from(["alice", "bob"]),
        st.sampled_from([None, "s1", "s2"]),
        approvals,
        st.sampled_from([0.0, 0.0, 0.5, 7.0, 61.0]),
    ),
    min_size=1,
    max_size=40,
)


class _NoGeneration:
    """A Specialiser that writes nothing: every call takes `ToolProgram.run`."""

    def __init__(self, store: Any, regex_limits: Any) -> None:
        pass

    def __call__(self, program: Any) -> tuple[Any, tuple[Decision, ...]]:
        return general_run, ()


def _engines(monkeypatch: pytest.MonkeyPatch) -> tuple[PolicyEngine, PolicyEngine, FakeClock]:
    clock = FakeClock()
    generated = PolicyEngine.from_dict(DOC, clock=clock)
    with monkeypatch.context() as patch:
        patch.setattr(compiler_module, "Specialiser", _NoGeneration)
        general = PolicyEngine.from_dict(DOC, clock=clock)
    return generated, general, clock


def _fields(decision: Decision) -> tuple[Any, ...]:
    return (
        decision.effect,
        decision.rule,
        decision.reason,
        decision.retry_after,
        decision.allowed,
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=calls)
def test_generated_programs_decide_as_the_general_path(
    monkeypatch: pytest.MonkeyPatch, sequence: list[Any]
) -> None:
    generated, general, clock = _engines(monkeypatch)
    for tool, args, identity, session, approved, advance in sequence:
        clock.advance(advance)
        fast = generated.decide(identity, tool, args, session=session, approved=approved)
        slow = general.decide(identity, tool, args, session=session, approved=approved)
        assert _fields(fast) == _fields(slow), (tool, args)
        if fast.effect.value == "allow" and advance == 7.0:
            fast.refund()
            slow.refund()


_ABSENT = object()
GRID: dict[str, list[Any]] = {
    "a": [_ABSENT, "ok", "x", "y", 1, Sly("x")],
    "p": [_ABSENT, "/srv/a", "/srv/../b", "/srv/x..", 3],
    "n": [_ABSENT, -2, 6, 100, -1.5, True, 10**30, LyingInt(6)],
    "items": [
        _ABSENT,
        [],
        [1, 2],
        [1, 2, 3],
        [1, 2, 3, 4],
        "abcd",
        {"k": 1},
        2.0,
        LyingList([1] * 4),
    ],
    "tags": [_ABSENT, ["bad"], "bad"],
    "b": [_ABSENT, "p", "r"],
}


def test_every_combination_of_representative_arguments_decides_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each key at each of its representative values (absent, the boundary values of
    DOC's rules, other JSON types, non-JSON values), in every combination: buckets
    refill between calls, so this compares the stateless steps exhaustively."""
    generated, general, clock = _engines(monkeypatch)
    keys = list(GRID)
    compared = 0
    for combination in itertools.product(*GRID.values()):
        args = {k: v for k, v in zip(keys, combination, strict=True) if v is not _ABSENT}
        for tool in TOOLS:
            for approved in (False, True, "false"):
                clock.advance(3600)
                fast = generated.decide("alice", tool, args, session="s", approved=approved)
                slow = general.decide("alice", tool, args, session="s", approved=approved)
                assert _fields(fast) == _fields(slow), (tool, args, approved)
                compared += 1
    assert compared == math.prod(len(v) for v in GRID.values()) * len(TOOLS) * 3


def test_every_tool_with_rules_gets_generated_code() -> None:
    engine = PolicyEngine.from_dict(DOC)
    policy_tables = engine._state.single
    assert policy_tables is not None
    for tool in ("batch", "checks", "approved_only", "never", "plain"):
        route = policy_tables.route(tool)
        assert route.program is not None
        assert route.run is not general_run, tool
    # A bucket that all_tools and the tool share, charged the larger of two costs, is
    # left to the general path.
    shared = policy_tables.route("shared")
    assert (
        shared.program is not None and _source(shared.program, StoreMethods(engine.store)) is None
    )


def test_tools_that_differ_only_in_name_share_one_generated_function(clock: FakeClock) -> None:
    # A function per tool would put a cold closure and its cells on every call's path
    # in a policy of thousands of tools; the denials must still name each tool's rule.
    doc = {
        "version": "1",
        "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "max": 2, "window": "minute"}]},
        "tools": {
            f"tool_{i}": {
                "deny_if": [{"conditions": [{"path": "args.mode", "op": "eq", "value": "x"}]}]
            }
            for i in range(20)
        },
    }
    engine = PolicyEngine.from_dict(doc, clock=clock)
    tables = engine._state.single
    assert tables is not None
    runs = {id(tables.route(f"tool_{i}").run) for i in range(20)}
    assert len(runs) == 1 and tables.route("tool_0").run is not general_run
    assert engine.decide("a", "tool_3", {"mode": "x"}).rule == "/tools/tool_3/deny_if/0"
    assert engine.decide("a", "tool_4", {}).rule == "/tools/tool_4"
    assert engine.decide("a", "tool_9", {}).rule == "/tools/tool_9"
    limited = engine.decide("a", "tool_5", {})
    assert limited.effect.value == "rate_limited" and limited.rule == "/all_tools/limits/0"


def test_generated_takes_and_the_store_agree_after_sweeps(clock: FakeClock) -> None:
    # Generated takes hold the store's bucket tables: a sweep must empty a table in
    # place, or the generated code would go on counting in a table the store (its
    # sweeps, refunds and size) no longer sees.
    doc = {
        "version": "1",
        "default": "deny",
        "tools": {"t": {"limits": [{"counter": "c", "max": 2, "window": "minute"}]}},
    }
    engine = PolicyEngine.from_dict(doc, clock=clock)
    assert engine.decide("alice", "t", {}).allowed
    clock.advance(120)  # alice's bucket is full again; the next take sweeps it away
    assert engine.decide("bob", "t", {}).allowed
    assert len(engine.store) == 1
    first = engine.decide("alice", "t", {})
    assert first.allowed and engine.decide("alice", "t", {}).allowed
    assert len(engine.store) == 2
    assert engine.decide("alice", "t", {}).effect.value == "rate_limited"
    first.refund()
    assert engine.decide("alice", "t", {}).allowed


def test_a_generated_allow_refunds_once_across_threads(clock: FakeClock) -> None:
    doc = {
        "version": "1",
        "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "max": 10, "window": "hour"}]},
        "tools": {
            "t": {"limits": [{"counter": "w", "max": 10, "window": "hour", "cost": "args.n"}]}
        },
    }
    engine = PolicyEngine.from_dict(doc, clock=clock)
    tables = engine._state.single
    assert tables is not None and tables.route("t").run is not general_run
    first = engine.decide("a", "t", {"n": [1, 2, 3]})
    assert first.allowed and engine.decide("a", "t", {"n": [1] * 7}).allowed
    assert engine.decide("a", "t", {"n": [1]}).effect.value == "rate_limited"
    start = threading.Barrier(8)

    def refund() -> None:
        start.wait()
        first.refund()

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert engine.decide("a", "t", {"n": [1, 2, 3]}).allowed  # the 3 tokens came back
    assert engine.decide("a", "t", {"n": [1]}).effect.value == "rate_limited"  # only once


@pytest.mark.parametrize("scope", ["global", "grant", "session"])
def test_a_generated_allow_refunds_once_whatever_its_scope_key(
    clock: FakeClock, scope: str
) -> None:
    # A global bucket's key is None: a refund must still happen, and only once.
    limit = {"counter": "c", "max": 2, "window": "hour", "scope": scope}
    doc = {"version": "1", "default": "deny", "tools": {"t": {"limits": [limit]}}}
    engine = PolicyEngine.from_dict(doc, clock=clock)
    first = engine.decide("a", "t", {}, session="s")
    assert first.allowed and engine.decide("a", "t", {}, session="s").allowed
    assert engine.decide("a", "t", {}, session="s").effect.value == "rate_limited"
    first.refund()
    first.refund()
    assert engine.decide("a", "t", {}, session="s").allowed
    assert engine.decide("a", "t", {}, session="s").effect.value == "rate_limited"


def test_the_simplest_conditions_are_written_inline() -> None:
    engine = PolicyEngine.from_dict(DOC)
    tables = engine._state.single
    assert tables is not None
    program = tables.route("batch").program
    assert program is not None
    written = _source(program, StoreMethods(engine.store))
    assert written is not None
    source = written[0]
    assert "x.startswith(" in source  # require starts_with
    assert "len(x) >" in source  # approve_if len_gt
    # only True approves: any other value but False goes to the general path's denial
    assert "if approved is False:" in source and "elif approved is not True:" in source
    assert "not approved" not in source
    # two conditions in one rule and `contains` call their compiled closures; a regex
    # calls its bounded matcher inline
    assert source.count("(identity, tool, args, session)") == 2


def test_a_generated_allow_carries_its_receipt(clock: FakeClock) -> None:
    engine = PolicyEngine.from_dict(DOC, clock=clock)
    for _ in range(2):
        assert engine.decide("alice", "checks", {"a": "ok", "n": 1}).allowed
    third = engine.decide("alice", "checks", {"a": "ok", "n": 1})
    assert third.effect.value == "rate_limited"
    assert third.rule == "/tools/checks/limits/0"
    engine.decide("alice", "checks", {"a": "ok", "n": 1})
    clock.advance(30)
    allowed = engine.decide("alice", "checks", {"a": "ok", "n": 1})
    assert allowed.allowed
    # made by generated code, yet a Decision like any other to whoever reads it
    tables = engine._state.single
    assert tables is not None and tables.route("checks").program is not None
    plain = tables.route("checks").program.allow  # type: ignore[union-attr]
    assert isinstance(allowed, Decision) and allowed == plain and hash(allowed) == hash(plain)
    assert repr(allowed) == repr(plain)
    allowed.refund()
    assert engine.decide("alice", "checks", {"a": "ok", "n": 1}).allowed
