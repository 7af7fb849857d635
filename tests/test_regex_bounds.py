"""Bounded regex work per call (issue 15): one budget per call, end-anchored patterns on a
linear matcher, and patterns too large for the bounded matcher refused at load.

The budget is time, so a few tests here depend on the machine's speed, always with a wide
margin: a call's work is made a hundred times the budget (so it is spent on any machine),
or one search is made a small fraction of it. None asserts how long anything took.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from conftest import FakeClock, policy
from policylayer_core import Effect, PolicyEngine, PolicyError
from policylayer_core.regex_safety import linear_reversed, linear_safe
from policylayer_core.safe_regex import (
    MAX_EXPANSION,
    CallBudget,
    RegexLimits,
    RegexRefused,
    _compile_search,
    compile_search,
    expansion_problem,
    needs_time_bound,
)

# Not provably linear either way (cubic for a backtracking matcher): each search on the
# bounded engine takes milliseconds on these strings, far less than its 0.05 s limit.
RISKY = ".*a.*b.*c"
SLOW_LINE = "a" * 100 + "b"  # no "c": every search runs to the end
BUDGET = RegexLimits().call_budget
SPENT = f"have used up the {BUDGET:g} s they may take together"


def _engine(tools: dict[str, Any]) -> PolicyEngine:
    return PolicyEngine.from_dict(policy(tools), clock=FakeClock())


def _deny_if(path: str, pattern: str) -> dict[str, Any]:
    return {"deny_if": [{"conditions": [{"path": path, "op": "regex", "value": pattern}]}]}


# -- one budget per call --------------------------------------------------------------------


def test_a_calls_regex_work_is_bounded_as_a_whole() -> None:
    # 600 strings, each well within the time limit of one search, but together seconds of
    # work: the call's budget runs out, and the condition is indeterminate.
    engine = _engine({"t": _deny_if("args.lines.*", RISKY)})
    args = {"lines": [SLOW_LINE] * 600}
    for decision in (engine.decide("i", "t", args), engine.explain("i", "t", args).decision):
        assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t/deny_if/0/conditions/0")
        assert decision.reason == (
            "The argument args.lines.* could not be matched against the pattern: this call's "
            "searches on patterns that are not provably linear have used up the 0.1 s they "
            "may take together; the call is denied because the pattern cannot be judged safely."
        )
    # A call with little to search is decided as before.
    assert engine.decide("i", "t", {"lines": [SLOW_LINE] * 2}).effect is Effect.ALLOW


# 600 property names, each taking the risky pattern milliseconds to search.
NAMES = {f"{SLOW_LINE}{i}": i for i in range(600)}


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"items": {"not": {"pattern": RISKY}}}, [SLOW_LINE] * 600),
        ({"patternProperties": {RISKY: {"type": "string"}}}, NAMES),
        ({"patternProperties": {RISKY: {}}, "additionalProperties": {"type": "integer"}}, NAMES),
        ({"patternProperties": {RISKY: {}}, "unevaluatedProperties": {"type": "integer"}}, NAMES),
        ({"propertyNames": {"not": {"pattern": RISKY}}}, NAMES),
    ],
    ids=["pattern", "patternProperties", "additionalProperties", "unevaluated", "propertyNames"],
)
def test_a_schemas_regex_work_is_bounded_as_a_whole(schema: dict[str, Any], instance: Any) -> None:
    engine = _engine({"t": {"schema": {"properties": {"x": schema}}}})
    decision = engine.decide("i", "t", {"x": instance})
    assert (decision.effect, decision.rule) == (Effect.DENY, "/tools/t/schema")
    assert SPENT in decision.reason, decision.reason
    assert engine.decide("i", "t", {"x": {}}).effect is Effect.ALLOW


def test_each_call_has_its_own_budget_whatever_its_arguments() -> None:
    # The same arguments object, passed again and again: each call starts afresh (one
    # search is a small part of the budget; forty of them together are more than all of it).
    engine = _engine({"t": _deny_if("args.line", RISKY)})
    args = {"line": SLOW_LINE}
    for _ in range(40):
        assert engine.decide("i", "t", args).effect is Effect.ALLOW


def test_only_tools_with_bounded_patterns_open_a_budget() -> None:
    """Decided when the policy compiles: linear patterns, wherever they are, cost a call
    nothing; a pattern on the bounded engine in a rule or a schema sets the budget."""
    engine = _engine(
        {
            "linear": {
                **_deny_if("args.q", r"\s+$"),
                "schema": {"properties": {"q": {"pattern": "^[a-z]+$"}}},
            },
            "rule": _deny_if("args.q", RISKY),
            "schema": {"schema": {"patternProperties": {RISKY: {}}}},
            "plain": {},
        }
    )
    tables = engine._state.single
    assert tables is not None

    def budget(tool: str) -> object:
        program = tables.route(tool).program
        assert program is not None
        return program.regex_budget

    assert budget("linear") is None
    assert budget("plain") is None
    assert isinstance(budget("rule"), CallBudget)
    assert isinstance(budget("schema"), CallBudget)


def test_a_spent_budget_refuses_before_searching() -> None:
    search = compile_search(RISKY)
    with pytest.raises(RegexRefused) as refused:
        CallBudget(0.0).run(search, "abc")
    assert refused.value.reason == (
        "The string could not be matched against the pattern: this call's searches on patterns "
        "that are not provably linear have used up the 0 s they may take together, so the "
        "pattern cannot be judged safely."
    )
    # Linear patterns never touch the budget.
    assert CallBudget(0.0).run(compile_search(r"\s+$"), "a ") is True
    assert CallBudget(0.0).run(compile_search("^a+$"), "aaa") is True


def test_a_nested_call_shares_the_open_budget() -> None:
    search = compile_search(RISKY)

    def nested() -> bool:
        return CallBudget(30.0).run(search, "abc")

    with pytest.raises(RegexRefused, match="used up the 0 s"):
        CallBudget(0.0).run(nested)
    # Once a call is over (even by an exception), the next one has its own budget.
    assert CallBudget(30.0).run(search, "abc") is True
    # Outside any call, a search has only its own time limit.
    assert search("abc") is True


def test_budgets_are_per_thread() -> None:
    search = compile_search(RISKY)
    answers: list[bool] = []
    other = threading.Thread(target=lambda: answers.append(search("abc")))

    def spent_here_then_ask_another_thread() -> None:
        other.start()
        other.join()
        search("abc")

    with pytest.raises(RegexRefused):
        CallBudget(0.0).run(spent_here_then_ask_another_thread)
    assert answers == [True]


# -- end-anchored patterns run linear --------------------------------------------------


@pytest.mark.parametrize("pattern", [r"\s+$", "a+$", r"[a-z]+\d$", r"\w+@", r"(?i)\s+\Z"])
def test_end_anchored_repeats_are_not_refused(pattern: str) -> None:
    # `re.search` takes quadratic time on these (0.1-0.5 s on 10,000 characters), the old
    # bounded matcher ran out of time from about 1,000; mirrored, they take linear time.
    assert not linear_safe(pattern)
    assert linear_reversed(pattern)
    assert not needs_time_bound(pattern)
    search = compile_search(pattern)
    for body in (" ", "a", "Z"):
        for text in (body * 9_999 + "x", body * 10_000, body * 2_000 + "\n", "x" + body * 2):
            assert search(text) is (re.search(pattern, text) is not None), (pattern, text[-3:])


def test_trailing_whitespace_over_many_lines_is_decided() -> None:
    engine = _engine({"t": _deny_if("args.lines.*", r"\s+$")})
    clean = {"lines": [" " * 1_999 + "x"] * 600}
    assert engine.decide("i", "t", clean).effect is Effect.ALLOW
    dirty = {"lines": [" " * 1_999 + "x"] * 599 + ["x" + " " * 1_999]}
    assert engine.decide("i", "t", dirty).rule == "/tools/t/deny_if/0"


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",  # exponential, whichever way it runs
        "(a|aa)+$",
        "a.*b.*c$",  # two long repeats over the same characters, reversed too
        ".*a.*b",  # unanchored: reversed, each "b" starts a scan
        r"(\w+\s?)+$",
        "(?=a)a+$",  # lookarounds do not mirror in `re`
        "(?>a+)$",  # nor do atomic groups and possessive repeats
        "a++$",
        r"(a)\1$",
        "^(a|b)*c+$|x+y+",
    ],
)
def test_linear_reversed_refuses_what_it_cannot_prove(pattern: str) -> None:
    assert not linear_reversed(pattern)


# -- patterns too large for the bounded matcher ---------------------------------------------

# `regex` writes counted repeats out: a million copies, which took 0.6 s and 280 MB to
# compile (`(a{10000}){10000}`: a hundred times that, and a MemoryError at load).
NESTED = "(a{1000}){1000}"


TOO_LARGE = (
    f"The regular expression {NESTED!r} is too large to run within bounds: it is not "
    "provably linear, so it runs on the time-bounded matcher, which writes each repeat out "
    "in full ('a{3}' as 'aaa', 'a+' as 'aa*'; nested repeats multiply), and written out it "
    "would be 12,020,016 characters long, over the 1,000,000 allowed. Use smaller repeat "
    "counts and nest fewer repeats."
)


@pytest.mark.parametrize(
    ("tool", "pointer"),
    [
        (_deny_if("args.q", NESTED), "/tools/t/deny_if/0/conditions/0/value"),
        (
            {"schema": {"properties": {"q": {"pattern": NESTED}}}},
            "/tools/t/schema/properties/q/pattern",
        ),
        (
            {"schema": {"patternProperties": {NESTED: {}}}},
            f"/tools/t/schema/patternProperties/{NESTED}",
        ),
        (
            {"schema": {"propertyNames": {"pattern": NESTED}}},
            "/tools/t/schema/propertyNames/pattern",
        ),
    ],
)
def test_patterns_too_large_for_the_bounded_matcher_are_load_errors(
    tool: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(PolicyError) as error:
        _engine({"t": tool})
    (issue,) = error.value.issues
    assert (issue.pointer, issue.message) == (pointer, TOO_LARGE)


def test_patterns_joined_for_additional_properties_are_measured_together() -> None:
    # Each is within the bound; additionalProperties matches them joined with "|".
    half = "(?:a{250}){250}"
    assert expansion_problem(half) is None
    keys = {half: {}, half.replace("a", "b"): {}}
    _engine({"t": {"schema": {"patternProperties": keys}}})
    with pytest.raises(PolicyError) as error:
        _engine({"t": {"schema": {"patternProperties": keys, "additionalProperties": False}}})
    (issue,) = error.value.issues
    assert issue.pointer == "/tools/t/schema/patternProperties"
    assert issue.message.startswith(
        "'additionalProperties' matches the keys of 'patternProperties' joined with '|' as "
        "one regular expression. The regular expression '(?:a{250}){250}|(?:b{250}){250}' is "
        "too large to run within bounds"
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "(a{10000}){10000}",  # gigabytes
        "(?:" * 20 + "a+" + ")+" * 20,  # `+` doubles what it repeats: 2**20 copies
        r"(?:\w{100}){100}",  # \w is hundreds of ranges, each written out
        r"(\w+\s?)+\w{100}",
    ],
)
def test_the_measure_counts_what_the_bounded_matcher_compiles(pattern: str) -> None:
    assert needs_time_bound(pattern)
    problem = expansion_problem(pattern)
    assert problem is not None and f"over the {MAX_EXPANSION:,} allowed" in problem
    # A caller that skips the loader gets a matcher that refuses, not a MemoryError.
    with pytest.raises(RegexRefused, match="too large or nested too deeply"):
        compile_search(pattern)("a")


@pytest.mark.parametrize("pattern", ["^a{20000}$", r"\w{10000}", r"x\s{50000}$", "a{4294967294}"])
def test_large_counts_on_linear_patterns_are_fine(pattern: str) -> None:
    # `re` never writes a repeat out: only the bounded matcher is limited.
    assert not needs_time_bound(pattern)
    assert expansion_problem(pattern) is None
    _engine({"t": _deny_if("args.q", pattern)})


def test_schema_patterns_are_compiled_once_at_load() -> None:
    # propertyNames is checked by jsonschema, which gets the pattern's text at each call:
    # it is compiled when the policy loads, and held while the policy lives.
    engine = _engine({"t": {"schema": {"propertyNames": {"pattern": "^(a|ab)+$"}}}})
    _compile_search.cache_clear()
    assert engine.decide("i", "t", {"abab": 1}).effect is Effect.ALLOW
    assert engine.decide("i", "t", {"abx": 1}).effect is Effect.DENY
    assert _compile_search.cache_info().misses == 0
