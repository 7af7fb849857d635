"""The pytest plugin: *.policytest.json files collected in a temporary project (pytester)."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from policylayer_core import Effect, PolicyEngine
from policylayer_core.pytest_plugin import assert_decision

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# With the package installed, the entry point loads the plugin; from a bare checkout, load it
# by name. Either way `-p no:policylayer` (the entry point's name) must switch it off.
INSTALLED = any(ep.name == "policylayer" for ep in entry_points(group="pytest11"))
PLUGIN = [] if INSTALLED else ["-p", "policylayer_core.pytest_plugin"]

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["delete"],
    "tools": {"write": {"limits": [{"max": 2, "window": "second"}]}},
}
WRITE = {"identity": "alice", "tool": "write", "args": {"path": "/a"}}
CASES = {
    "policy": "policy.json",
    "cases": [
        {"name": "hidden delete", "identity": "a", "tool": "delete", "expect": {"effect": "deny"}},
        {
            "name": "two writes a second",
            "steps": [
                {"repeat": 2, "call": WRITE, "expect": {"effect": "allow"}},
                {**WRITE, "expect": {"effect": "rate_limited", "retry_after": 0.5}},
                {"advance": 0.5},
                {**WRITE, "expect": {"effect": "allow"}},
            ],
        },
        {
            "name": "delete is allowed (wrong)",
            **WRITE,
            "tool": "delete",
            "expect": {"effect": "allow"},
        },
    ],
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".json", policy=json.dumps(POLICY))
    pytester.path.joinpath("policy.policytest.json").write_text(json.dumps(CASES, indent=2))
    pytester.path.joinpath("other.json").write_text(json.dumps({"cases": []}))
    return pytester


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"policylayer": "policylayer_core.pytest_plugin"}


def test_each_case_is_an_item_with_a_readable_id(project: pytest.Pytester) -> None:
    result = project.runpytest(*PLUGIN, "--collect-only", "-q")
    assert result.ret == 0
    assert result.outlines[:3] == [
        "policy.policytest.json::hidden delete",
        "policy.policytest.json::two writes a second",
        "policy.policytest.json::delete is allowed (wrong)",
    ]


def test_passing_and_failing_cases(project: pytest.Pytester) -> None:
    result = project.runpytest(*PLUGIN, "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "policy.policytest.json::hidden delete PASSED*",
            "policy.policytest.json::two writes a second PASSED*",
            "policy.policytest.json::delete is allowed (wrong) FAILED*",
            "*_ delete is allowed (wrong) (policy.policytest.json) _*",
            "Expected effect allow but got effect deny, rule /hide/0 (line 54, /cases/2).",
            "  at:       line 54, /cases/2",
            '  call:     alice -> delete {"path": "/a"}',
            "  expected: effect allow",
            "  actual:   effect deny, rule /hide/0",
            "  reason:   The tool 'delete' is not available: the policy hides it.",
            "  differs:  effect",
            "  explain trace of the actual decision (run on the same engine just before the call):",
            "    1. /hide/0: hidden ('delete' matches 'delete')",
            "FAILED policy.policytest.json::delete is allowed (wrong) - Expected effect*",
        ]
    )


def test_one_case_can_be_selected_by_its_id(project: pytest.Pytester) -> None:
    result = project.runpytest(*PLUGIN, "policy.policytest.json::hidden delete")
    result.assert_outcomes(passed=1)


def test_a_malformed_case_file_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", policy=json.dumps(POLICY))
    broken = {"policy": "policy.json", "cases": [{"name": "x", "tool": "t", "expect": {}}]}
    pytester.path.joinpath("broken.policytest.json").write_text(json.dumps(broken, indent=2))
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "The case file *broken.policytest.json has 2 problems:",
            "  *broken.policytest.json:4:5: /cases/0: The required key 'identity' is missing here;"
            " add it.",
            "  *broken.policytest.json:7:7: /cases/0/expect: The required key 'effect' is missing"
            " here; add it.",
        ]
    )


def test_a_policy_that_does_not_load_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", policy=json.dumps({"version": "1", "default": "maybe"}))
    pytester.path.joinpath("p.policytest.json").write_text(json.dumps(CASES))
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["The policy *policy.json has 1 problem:"])


def test_the_plugin_can_be_switched_off(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:policylayer")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_other_json_files_and_python_tests_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", policy=json.dumps(POLICY), policytest=json.dumps(CASES))
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN, "-q")
    result.assert_outcomes(passed=1)


def test_the_fixtures_and_assert_decision(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", policy=json.dumps(POLICY))
    pytester.makepyfile(
        test_hand="""
        import pytest
        from policylayer_core.pytest_plugin import assert_decision

        def test_limits(policy_engine_factory, policy_clock):
            engine = policy_engine_factory("policy.json")
            assert_decision(engine, "alice", "write", {}, effect="allow")
            assert_decision(engine, "alice", "write", {}, effect="allow")
            assert_decision(engine, "alice", "write", {}, effect="rate_limited", retry_after=0.5)
            policy_clock.advance(0.5)
            assert_decision(engine, "alice", "write", {}, effect="allow", rule="/tools/write")

        def test_wrong(policy_engine_factory):
            engine = policy_engine_factory("policy.json")
            assert_decision(engine, "alice", "delete", effect="allow")
        """
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            '>       assert_decision(engine, "alice", "delete", effect="allow")',
            "E       AssertionError: The decision is not the expected one:",
            "E         at:       assert_decision()",
            "E         call:     alice -> delete",
            "E         expected: effect allow",
            "E         actual:   effect deny, rule /hide/0",
            "*1. /hide/0: hidden ('delete' matches 'delete')",
        ]
    )


def test_assert_decision_in_this_process() -> None:
    engine = PolicyEngine(POLICY)
    assert assert_decision(engine, "a", "write", effect=Effect.ALLOW).allowed
    with pytest.raises(AssertionError, match="differs:  effect, rule"):
        assert_decision(engine, "a", "write", effect="deny", rule="/hide/0")
