"""lint: the warnings of `policylayer check`, each with a case that warns and one that does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import EXAMPLES, policy
from policylayer_core import load_policy
from policylayer_core.lint import LintWarning, catastrophic_regex, glob_covered, lint


def warnings(doc: dict[str, Any], names: list[str] | None = None) -> list[tuple[str, str]]:
    return [(w.code, w.pointer) for w in lint(load_policy(doc), names)]


def rule(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"conditions": list(conditions)}


COND = {"path": "args.a", "op": "eq", "value": 1}
LIMIT = {"window": "minute", "max": 5}


# -- shadowed glob keys -------------------------------------------------------------------


def test_a_glob_taken_by_an_exact_key() -> None:
    doc = policy({"qflow_task_get": {}, "qflow_task_[g]et": {}})
    assert warnings(doc) == [("shadowed-key", "/tools/qflow_task_[g]et")]


def test_a_glob_taken_by_several_exact_keys_together() -> None:
    assert warnings(policy({"ab": {}, "ac": {}, "a[bc]": {}})) == [("shadowed-key", "/tools/a[bc]")]
    assert warnings(policy({"ab": {}, "a[bc]": {}})) == []  # 'ac' is its own


def test_a_less_literal_glob_inside_a_more_literal_one() -> None:
    # '[a]b*' has one literal character, 'ab*' two: every name of the first goes to the second.
    doc = policy({"[a]b*": {}, "ab*": {}})
    found = lint(load_policy(doc))
    assert [(w.code, w.pointer) for w in found] == [("shadowed-key", "/tools/[a]b*")]
    assert "taken first by 'ab*'" in found[0].message


def test_a_tie_goes_to_the_first_glob() -> None:
    assert warnings(policy({"a?": {}, "a[bc]": {}})) == [("shadowed-key", "/tools/a[bc]")]
    assert warnings(policy({"a[bc]": {}, "a?": {}})) == []  # 'a?' still matches 'ad'


def test_globs_that_overlap_without_being_covered_are_fine() -> None:
    doc = policy({"qflow_*": {}, "qflow_task_*": {}, "qflow_spec_*": {}, "qflow_spec_apply": {}})
    assert warnings(doc) == []
    assert warnings(policy({"?*": {}, "*": {}})) == []  # '*' still matches the empty name
    assert warnings(policy({"*": {}, "?*": {}})) == [("shadowed-key", "/tools/?*")]  # a tie


def test_shadowed_grant_globs() -> None:
    bundle = {
        "version": "1",
        "policies": {"p": policy()},
        "grants": {"ci-*": "p", "ci-[a]*": "p", "bob": "p"},
    }
    # a class is not a literal character: 'ci-[a]*' ties with 'ci-*', which comes first
    assert warnings(bundle) == [("shadowed-key", "/grants/ci-[a]*")]
    bundle["grants"] = {"ci-*": "p", "ci-*-*": "p", "c[i]-*": "p"}
    assert warnings(bundle) == [("shadowed-key", "/grants/c[i]-*")]


@pytest.mark.parametrize(
    ("pattern", "others", "covered"),
    [
        ("a*", ["a*"], True),
        ("a*", ["b*"], False),
        ("[ab]x", ["ax", "bx"], True),
        ("[!a]x", ["bx"], False),
        ("x?", ["x[!a]", "xa"], True),
        ("*", ["*a", "*[!a]"], False),  # the empty name
        ("[a-c]", ["a", "[b-c]"], True),
        ("[a-c]", ["a", "b"], False),
        ("a[*", ["a[*"], True),  # an unclosed '[' is a literal character
    ],
)
def test_glob_covered(pattern: str, others: list[str], covered: bool) -> None:
    assert glob_covered(pattern, others) is covered


# -- unreachable rules ----------------------------------------------------------------------


def test_rules_after_an_always_holding_deny_if() -> None:
    always = {"conditions": [], "on_deny": "Requires human approval."}
    doc = policy(
        {
            "t": {
                "deny_if": [rule(COND), always, rule(COND)],
                "approve_if": [rule(COND)],
                "limits": [LIMIT],
            }
        }
    )
    assert warnings(doc) == [
        ("unreachable-rule", "/tools/t/deny_if/2"),
        ("unreachable-rule", "/tools/t/approve_if/0"),
        ("unreachable-rule", "/tools/t/limits/0"),
    ]
    assert warnings(policy({"t": {"deny_if": [always], "require": [COND]}})) == []


def test_an_always_holding_deny_if_in_all_tools() -> None:
    doc = policy({"t": {"deny_if": [rule(COND)]}}, all_tools={"deny_if": [rule()]})
    assert warnings(doc) == [("unreachable-rule", "/tools/t/deny_if/0")]


def test_approval_rules_after_an_always_holding_approval() -> None:
    doc = policy({"t": {"approve_if": [rule(), rule(COND)], "limits": [LIMIT]}})
    # limits still run once a person approves, so only the second approve_if is dead
    assert warnings(doc) == [("unreachable-rule", "/tools/t/approve_if/1")]
    doc = policy({"t": {"action": "approve", "approve_if": [rule(COND)]}})
    found = lint(load_policy(doc))
    assert [(w.code, w.pointer) for w in found] == [("unreachable-rule", "/tools/t/approve_if/0")]
    assert "change the action to 'allow'" in found[0].message


def test_rules_under_action_deny() -> None:
    doc = policy({"t": {"action": "deny", "deny_if": [rule(COND)], "schema": {}}})
    found = lint(load_policy(doc))
    assert [(w.code, w.pointer) for w in found] == [("unreachable-rule", "/tools/t/action")]
    assert "deny_if, schema never take effect" in found[0].message
    assert warnings(policy({"t": {"action": "deny", "on_deny": "No."}})) == []


# -- the server's tools ------------------------------------------------------------------


def test_hide_entries_and_tool_keys_that_match_no_listed_tool() -> None:
    doc = policy(
        {"qflow_task_get": {}, "qflow_tsak_*": {}}, hide=["qflow_task_delet", "qflow_task_d*"]
    )
    names = ["qflow_task_get", "qflow_task_delete"]
    assert warnings(doc, names) == [
        ("unused-hide", "/hide/0"),
        ("unknown-tool", "/tools/qflow_tsak_*"),
    ]
    assert warnings(doc) == []  # without the server's list, nothing is known


# -- regexes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+",
        "(.*)*",
        r"(\w+\s?)+$",
        "(a*b*)*",
        r"(\d+,\d+)+",
        "(x+x+)+y",
        "((a+)|b)+",
        r"(\s?\w+)+",
        "(?:[a-z]+-?)+$",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
    ],
)
def test_catastrophic_regexes(pattern: str) -> None:
    assert catastrophic_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(\d+,)+",  # each pass ends with a comma, which no digit matches
        "^[a-z]+$",
        "(ab)+",
        "(ab+)+",
        "(a+)?",
        "(?>a+)+",  # an atomic group never backtracks into itself
        "(a++)+",
        "(a{2})+",
        "(a|b)+",
        r"(^|/)\.\.(/|$)",
        "([a-z]+-)+[a-z]+",
    ],
)
def test_regexes_that_are_fine(pattern: str) -> None:
    assert not catastrophic_regex(pattern)


def test_slow_regex_warnings_point_at_the_value() -> None:
    slow = {"path": "args.q", "op": "regex", "value": "(a+)+$"}
    doc = policy(
        {"t": {"require": [slow], "deny_if": [rule(COND, slow)]}},
        all_tools={"approve_if": [rule(slow)]},
    )
    assert warnings(doc) == [
        ("slow-regex", "/all_tools/approve_if/0/conditions/0/value"),
        ("slow-regex", "/tools/t/require/0/value"),
        ("slow-regex", "/tools/t/deny_if/0/conditions/1/value"),
    ]
    assert warnings(policy({"t": {"require": [{**slow, "op": "eq"}]}})) == []


# -- costs -------------------------------------------------------------------------------------


def test_a_literal_cost_above_the_burst() -> None:
    assert warnings(policy({"t": {"limits": [{**LIMIT, "cost": 6}]}})) == [
        ("cost-above-burst", "/tools/t/limits/0/cost")
    ]
    assert warnings(policy({"t": {"limits": [{**LIMIT, "cost": 6, "burst": 6}]}})) == []
    assert warnings(policy({"t": {"limits": [{**LIMIT, "cost": "args.tasks"}]}})) == []
    assert warnings(policy({}, all_tools={"limits": [{**LIMIT, "burst": 2, "cost": 3}]})) == [
        ("cost-above-burst", "/all_tools/limits/0/cost")
    ]


# -- positions and the shape of a warning ------------------------------------------------------


def test_warnings_carry_line_and_column_and_are_sorted() -> None:
    text = json.dumps(
        policy({"b": {"limits": [{**LIMIT, "cost": 9}]}, "ab": {}, "a[b]": {}}), indent=2
    )
    found = lint(load_policy(text))
    lines = text.splitlines()
    cost = next(i for i, line in enumerate(lines, 1) if '"cost"' in line)
    glob = next(i for i, line in enumerate(lines, 1) if '"a[b]"' in line)
    assert [(w.line, w.pointer) for w in found] == [
        (cost, "/tools/b/limits/0/cost"),
        (glob, "/tools/a[b]"),
    ]
    first = found[0]
    assert first.format("p.json") == (
        f"p.json:{cost}:{first.column}: /tools/b/limits/0/cost: warning: Every call costs 9 "
        "tokens, more than the 5 this bucket can ever hold, so every call is denied. Lower the "
        "cost or raise 'burst'."
    )
    assert LintWarning("c", "", "m").format() == "(document root): warning: m"


def test_the_example_policy_is_clean(qflow_tools: list[dict[str, Any]]) -> None:
    names = [t["name"] for t in qflow_tools]
    assert lint(load_policy(EXAMPLES / "qflow-policy.json"), names) == []


def test_bundles_are_linted_per_policy() -> None:
    bundle = {
        "version": "1",
        "policies": {"p": policy({"t": {"limits": [{**LIMIT, "cost": 6}]}})},
        "grants": {"*": "p"},
    }
    assert warnings(bundle) == [("cost-above-burst", "/policies/p/tools/t/limits/0/cost")]
