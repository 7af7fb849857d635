"""`policylayer test`: case files, the runner on a virtual clock, JUnit output and coverage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import EXAMPLES
from policylayer_core import Effect, PolicyEngine, load_policy
from policylayer_core.cli import main
from policylayer_core.policytest import (
    CaseFileError,
    VirtualClock,
    assert_decision,
    case_schema,
    load_case_file,
    run_case,
)
from policylayer_core.policytest_coverage import measure_coverage

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Two per second (burst 2) for writes; reads free; a delete that is hidden.
POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["delete"],
    "tools": {
        "read": {},
        "write": {
            "deny_if": [
                {"name": "no-root", "conditions": [{"path": "args.path", "op": "eq", "value": "/"}]}
            ],
            "limits": [{"counter": "writes", "window": "second", "max": 2}],
        },
        "deploy": {"action": "approve"},
    },
}
WRITE = {"identity": "alice", "tool": "write", "args": {"path": "/tmp/x"}}


def write_files(tmp_path: Path, cases: list[Any], policy: Any = None) -> Path:
    """policy.json and policy.policytest.json in tmp_path; returns the case file."""
    (tmp_path / "policy.json").write_text(json.dumps(policy or POLICY, indent=2), "utf-8")
    case_file = tmp_path / "policy.policytest.json"
    case_file.write_text(json.dumps({"policy": "policy.json", "cases": cases}, indent=2), "utf-8")
    return case_file


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(["test", *argv])
    except SystemExit as exit_:  # argparse usage errors
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def results_of(case_file: Path) -> list[Any]:
    loaded = load_case_file(case_file)
    policy = load_policy(loaded.policy_path)
    return [run_case(case, policy) for case in loaded.cases]


# -- passing and failing cases ----------------------------------------------------------------


def test_passing_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case_file = write_files(
        tmp_path,
        [
            {"name": "read", "identity": "a", "tool": "read", "expect": {"effect": "allow"}},
            {
                "name": "hidden",
                "identity": "a",
                "tool": "delete",
                "expect": {"effect": "deny", "rule": "/hide/0", "reason_contains": "hides it"},
            },
            {
                "name": "deploy",
                "identity": "a",
                "tool": "deploy",
                "expect": {"effect": "approval_required", "rule": "/tools/deploy/action"},
            },
            {
                "name": "approved deploy",
                "identity": "a",
                "tool": "deploy",
                "approved": True,
                "expect": {"effect": "allow", "allowed": True, "retry_after": None},
            },
        ],
    )
    assert all(result.passed for result in results_of(case_file))
    assert run_cli(capsys, str(case_file)) == (0, "4 passed, 0 failed\n", "")
    # A policy file alone finds <stem>.policytest.json beside it.
    assert run_cli(capsys, str(tmp_path / "policy.json"))[:2] == (0, "4 passed, 0 failed\n")
    assert run_cli(capsys, str(tmp_path))[:2] == (0, "4 passed, 0 failed\n")


def test_a_failure_shows_expected_actual_and_the_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_file = write_files(
        tmp_path,
        [
            {"name": "fine", "identity": "a", "tool": "read", "expect": {"effect": "allow"}},
            {
                "name": "root writes are allowed (wrong)",
                **WRITE,
                "args": {"path": "/"},
                "expect": {"effect": "allow", "rule": "/tools/write", "reason_contains": "ok"},
            },
        ],
    )
    status, out, err = run_cli(capsys, str(case_file))
    assert (status, err) == (1, "")
    assert out == (
        f"FAILED {case_file}::root writes are allowed (wrong)\n"
        "  at:       line 12, /cases/1\n"
        '  call:     alice -> write {"path": "/"}\n'
        "  expected: effect allow, rule /tools/write, reason containing 'ok'\n"
        "  actual:   effect deny, rule /tools/write/deny_if/0\n"
        "  reason:   The call to 'write' is denied because args.path eq \"/\" "
        "(rule 'no-root' at /tools/write/deny_if/0).\n"
        "  differs:  effect, rule, reason\n"
        "  explain trace of the actual decision (run on the same engine just before the call):\n"
        "    1. /tools/write: matched exactly ('write')\n"
        "    2. /tools/write/deny_if/0: held: deny ('no-root': args.path eq \"/\")\n"
        "1 passed, 1 failed\n"
    )


def test_the_trace_is_taken_before_the_failing_call_takes_tokens(tmp_path: Path) -> None:
    # The 2nd write is expected to be limited but passes: its trace must say "has room",
    # which only an explanation made before the call took the last token can say.
    case_file = write_files(
        tmp_path,
        [
            {
                "name": "second write",
                "steps": [
                    {**WRITE, "expect": {"effect": "allow"}},
                    {**WRITE, "expect": {"effect": "rate_limited"}},
                ],
            }
        ],
    )
    [result] = results_of(case_file)
    assert result.failure is not None
    assert result.failure.where == "line 17, /cases/0/steps/1 (step 2 of 2)"
    assert [str(s) for s in result.failure.trace] == [
        "/tools/write: matched exactly ('write')",
        "/tools/write/deny_if/0: did not hold ('no-root': args.path eq \"/\")",
        "/tools/write/limits/0: has room (2 per second)",
        "/tools/write: allow",
    ]


# -- sequences: clock advances and refunds ---------------------------------------------------


def test_a_sequence_runs_on_one_engine_with_a_virtual_clock(tmp_path: Path) -> None:
    limited = {"effect": "rate_limited", "rule": "/tools/write/limits/0", "retry_after": 0.5}
    case_file = write_files(
        tmp_path,
        [
            {
                "name": "two a second",
                "steps": [
                    {"repeat": 2, "call": WRITE, "expect": {"effect": "allow"}},
                    {**WRITE, "expect": limited},
                    {"advance": 0.25},
                    {**WRITE, "expect": {**limited, "retry_after": 0.25}},
                    {"advance": 0.25},
                    {**WRITE, "expect": {"effect": "allow"}},
                ],
            },
            # Cases are independent: a fresh engine has a full bucket again.
            {
                "name": "fresh",
                "steps": [{"repeat": 2, "call": WRITE, "expect": {"effect": "allow"}}],
            },
        ],
    )
    assert [r.passed for r in results_of(case_file)] == [True, True]


def test_a_repeat_that_fails_says_which_call(tmp_path: Path) -> None:
    case_file = write_files(
        tmp_path,
        [{"name": "three", "steps": [{"repeat": 3, "call": WRITE, "expect": {"effect": "allow"}}]}],
    )
    [result] = results_of(case_file)
    assert result.failure is not None
    assert result.failure.where.endswith("(step 1 of 1), call 3 of 3")
    assert result.failure.actual.effect is Effect.RATE_LIMITED
    assert result.failure.trace[-1].outcome == "rate limited"


@pytest.mark.parametrize(("expected", "passes"), [(0.5, True), (0.5000009, True), (0.501, False)])
def test_retry_after_is_compared_within_a_microsecond(
    tmp_path: Path, expected: float, passes: bool
) -> None:
    steps = [
        {"repeat": 2, "call": WRITE, "expect": {"effect": "allow"}},
        {**WRITE, "expect": {"effect": "rate_limited", "retry_after": expected}},
    ]
    case_file = write_files(tmp_path, [{"name": "retry", "steps": steps}])
    [result] = results_of(case_file)
    assert result.passed is passes
    if not passes:
        assert result.failure is not None and result.failure.differs == ("retry_after",)


def test_refunds_give_tokens_back(tmp_path: Path) -> None:
    steps = [
        {**WRITE, "expect": {"effect": "allow"}},
        {**WRITE, "expect": {"effect": "allow"}},
        {"refund": "previous"},
        {"refund": "previous", "x-note": "a second refund of one decision does nothing"},
        {**WRITE, "expect": {"effect": "allow"}},
        {**WRITE, "expect": {"effect": "rate_limited"}},
        {"refund": 0},
        {**WRITE, "expect": {"effect": "allow"}},
        {**WRITE, "expect": {"effect": "rate_limited"}},
    ]
    case_file = write_files(tmp_path, [{"name": "refunds", "steps": steps}])
    [result] = results_of(case_file)
    assert result.passed, result.failure and result.failure.format()


def test_the_qflow_example_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, str(EXAMPLES / "qflow-policy.json"), "--coverage")
    assert status == 0
    assert out.endswith("20 of 20 rules reached (100.0%).\n14 passed, 0 failed\n")


# -- malformed case files -------------------------------------------------------------------

MALFORMED = """{
  "policy": "policy.json",
  "cases": [
    {"name": "a", "identity": "alice", "tool": "read", "expect": {"efect": "allow"}},
    {"name": "a", "identity": 3, "tool": "read", "expect": {"effect": "denied"}},
    {"name": "s", "steps": [{"refund": "previous"}, {"advance": -1}, {"refund": 5}]},
    {"name": "x::y", "steps": [{"repeat": 2, "call": {"tool": "r"}, "expect": {"effect": "deny"}}]},
    "oops"
  ],
  "polcy": 1
}
"""
MALFORMED_ISSUES = [
    "4:56: /cases/0/expect: The required key 'effect' is missing here; add it.",
    "4:67: /cases/0/expect/efect: Unknown key 'efect' in an expectation. Did you mean 'effect'? "
    "The keys allowed in an expectation are: allowed, effect, reason_contains, retry_after, rule. "
    "Keys that begin with 'x-' are ignored, for comments.",
    "5:6: /cases/1/name: The case name 'a' is taken by /cases/0; give every case its own name, "
    "since reports and pytest ids use it.",
    "5:19: /cases/1/identity: This value must be a string, but it is 3.",
    '5:61: /cases/1/expect/effect: This value must be one of "allow", "deny", "rate_limited", '
    '"approval_required", but it is "denied". Did you mean "deny"?',
    "6:30: /cases/2/steps/0/refund: There is no call before this step to refund; put it after "
    "a call.",
    "6:54: /cases/2/steps/1/advance: This value must be at least 0, but it is -1.",
    "6:71: /cases/2/steps/2/refund: Step 5 is not an earlier call or repeat step of this case, "
    "so it has no decision to refund; give the index of one (0 is the first step).",
    "7:6: /cases/3/name: A case name must not contain '::', which separates the parts of test ids.",
    "7:46: /cases/3/steps/0/call: The required key 'identity' is missing here; add it.",
    '8:5: /cases/4: This value must be a JSON object, but it is "oops".',
    "10:3: /polcy: Unknown key 'polcy' in a case file. Did you mean 'policy'? The keys allowed "
    "in a case file are: $schema, cases, description, policy. Keys that begin with 'x-' are "
    "ignored, for comments.",
]


def test_a_malformed_case_file_lists_every_problem_with_pointer_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_files(tmp_path, [])
    case_file = tmp_path / "bad.policytest.json"
    case_file.write_text(MALFORMED, "utf-8")
    with pytest.raises(CaseFileError) as caught:
        load_case_file(case_file)
    got = [issue.format() for issue in caught.value.issues]
    assert got == [
        f"{line.split(': ', 1)[0]}: {line.split(': ', 1)[1]}" for line in MALFORMED_ISSUES
    ]
    status, out, err = run_cli(capsys, str(case_file))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"The case file {case_file} has {len(MALFORMED_ISSUES)} problems:",
        *[f"  {case_file}:{line}" for line in MALFORMED_ISSUES],
    ]


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        (
            '{"policy": "policy.json",\n "cases": [}',
            "2:12: /cases/0: Invalid JSON: expected a value (object, array, string, number, true, "
            "false or null) but found '}'.",
        ),
        (
            '{"policy": "policy.json", "policy": "policy.json", "cases": [{"name": "r", '
            '"identity": "a", "tool": "read", "expect": {"effect": "allow"}}]}',
            "1:27: /policy: Duplicate key 'policy' in this object (first at line 1, column 2); "
            "JSON keeps only the last one, so merge or rename them.",
        ),
        (
            '{"policy": "missing.json", "cases": [{"name": "r", "identity": "a", "tool": "read", '
            '"expect": {"effect": "allow"}}]}',
            "1:2: /policy: The policy file '{dir}/missing.json' does not exist; 'policy' is a "
            "path relative to the case file.",
        ),
        (
            '{"policy": "policy.json", "cases": []}',
            "1:27: /cases: This array must hold at least one item; add one.",
        ),
        ("[]", "1:1: (document root): This value must be a JSON object, but it is []."),
        (
            '{"policy": "policy.json", "cases": [{"name": "r", "steps": [{"refund": "prev"}]}]}',
            '1:62: /cases/0/steps/0/refund: This value must be "previous" or the index of an '
            'earlier call or repeat step, but it is "prev".',
        ),
    ],
)
def test_malformed_case_files(tmp_path: Path, text: str, issue: str) -> None:
    write_files(tmp_path, [])
    case_file = tmp_path / "x.policytest.json"
    case_file.write_text(text, "utf-8")
    with pytest.raises(CaseFileError) as caught:
        load_case_file(case_file)
    assert [i.format() for i in caught.value.issues] == [issue.replace("{dir}", str(tmp_path))]
    assert str(caught.value).startswith(f"The case file {case_file} has 1 problem:\n  {case_file}:")


def test_a_case_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match=r"cannot be read \(No such file or directory\)"):
        load_case_file(tmp_path / "none.policytest.json")


def test_a_policy_that_does_not_load_fails_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_file = write_files(
        tmp_path,
        [{"name": "r", "identity": "a", "tool": "read", "expect": {"effect": "allow"}}],
        policy={"version": "1", "default": "maybe"},
    )
    status, out, err = run_cli(capsys, str(case_file))
    assert (status, out) == (1, "")
    assert err.startswith(f"The policy {tmp_path / 'policy.json'} has 1 problem:")


# -- the JSON Schema ------------------------------------------------------------------------


def test_the_schema_is_shipped_and_valid() -> None:
    shipped = resources.files("policylayer_core").joinpath("policytest.schema.json")
    assert json.loads(shipped.read_text("utf-8")) == case_schema()
    jsonschema.Draft202012Validator.check_schema(case_schema())
    example = json.loads((EXAMPLES / "qflow-policy.policytest.json").read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(case_schema())
    validator.validate(example)
    call = {"identity": "a", "tool": "t", "expect": {"effect": "allow"}}
    for wrong in [
        {"policy": "p.json", "cases": [{"name": "c", **call, "expect": {"effect": "denied"}}]},
        {"policy": "p.json", "cases": [{"name": "c", **call, "extra": 1}]},
        {"policy": "p.json", "cases": [{"name": "c", "steps": [{"advance": -1}]}]},
        {"policy": "p.json", "cases": [{"name": "c", "steps": [{"refund": "last"}]}]},
        {"policy": "p.json", "cases": [{"name": "c", "steps": [{"repeat": 2, **call}]}]},
        {"policy": "p.json", "cases": []},
        {"cases": [{"name": "c", **call}]},
    ]:
        assert not validator.is_valid(wrong), wrong
    assert validator.is_valid({"policy": "p.json", "cases": [{"name": "c", **call, "x-a": 1}]})


# -- JUnit XML ------------------------------------------------------------------------------


def test_junit_xml_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case_file = write_files(
        tmp_path,
        [
            {"name": "read", "identity": "a", "tool": "read", "expect": {"effect": "allow"}},
            {
                "name": "hidden <&>",
                "identity": "a",
                "tool": "delete",
                "expect": {"effect": "allow"},
            },
            {"name": "deploy", "identity": "a", "tool": "deploy", "expect": {"effect": "deny"}},
        ],
    )
    report = tmp_path / "out" / "junit.xml"
    report.parent.mkdir()
    status, out, _ = run_cli(capsys, str(case_file), "--junit-xml", str(report))
    assert status == 1 and out.endswith("\n1 passed, 2 failed\n")
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == (
        str(case_file),
        "3",
        "2",
    )
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["read", "hidden <&>", "deploy"]
    assert [c.get("classname") for c in cases] == [str(case_file)] * 3
    assert [c.find("failure") is None for c in cases] == [True, False, False]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == (
        "Expected effect allow but got effect deny, rule /hide/0 (line 12, /cases/1)."
    )
    assert failure.text is not None and "    1. /hide/0: hidden ('delete' matches 'delete')" in (
        failure.text
    )
    assert all(float(c.get("time", "-1")) >= 0 for c in cases)


def test_junit_xml_to_an_unwritable_place_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_file = write_files(
        tmp_path, [{"name": "r", "identity": "a", "tool": "read", "expect": {"effect": "allow"}}]
    )
    status, _, err = run_cli(capsys, str(case_file), "--junit-xml", str(tmp_path / "no" / "x.xml"))
    assert status == 2 and "Cannot write" in err


# -- coverage -------------------------------------------------------------------------------

COVERED = {
    "version": "1",
    "default": "allow",
    "hide": ["rm", "dd"],
    "all_tools": {"require": [{"path": "identity", "op": "neq", "value": "anonymous"}]},
    "tools": {
        "write": {
            "deny_if": [{"conditions": [{"path": "args.path", "op": "eq", "value": "/"}]}],
            "approve_if": [{"conditions": [{"path": "args.force", "op": "eq", "value": True}]}],
            "limits": [{"max": 10, "window": "minute"}],
        },
        "read": {},
    },
}


def test_coverage_names_every_rule_and_what_was_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_file = write_files(
        tmp_path,
        [
            {"name": "rm", "identity": "a", "tool": "rm", "expect": {"effect": "deny"}},
            {"name": "other", "identity": "a", "tool": "other", "expect": {"effect": "allow"}},
            {
                "name": "root",
                "identity": "a",
                "tool": "write",
                "args": {"path": "/"},
                "expect": {"effect": "deny"},
            },
        ],
        policy=COVERED,
    )
    status, out, _ = run_cli(capsys, str(case_file), "--coverage")
    assert status == 0
    policy = tmp_path / "policy.json"
    assert out == (
        f"Coverage of {policy}:\n"
        "  reached      /default                   default (line 3)\n"
        "  reached      /hide/0                    hide entry (line 5)\n"
        "  NOT REACHED  /hide/1                    hide entry (line 6)\n"
        "  reached      /all_tools/require/0       require rule (line 10)\n"
        "  reached      /tools/write               tool entry (line 18)\n"
        "  reached      /tools/write/deny_if/0     deny_if rule (line 20)\n"
        "  NOT REACHED  /tools/write/approve_if/0  approve_if rule (line 31)\n"
        "  NOT REACHED  /tools/write/limits/0      limit (line 42)\n"
        "  NOT REACHED  /tools/read                tool entry (line 48)\n"
        "5 of 9 rules reached (55.6%).\n"
        "3 passed, 0 failed\n"
    )
    assert run_cli(capsys, str(case_file), "--fail-under", "55.5")[:2] == (
        0,
        "3 passed, 0 failed\n",
    )
    status, out, _ = run_cli(capsys, str(case_file), "--fail-under", "60")
    assert (status, out) == (1, "Coverage 55.6% is below --fail-under 60%.\n3 passed, 0 failed\n")
    status, _, err = run_cli(capsys, str(case_file), "--fail-under", "101")
    assert status == 2 and "percentage from 0 to 100" in err


def test_coverage_counts_a_limit_that_shares_a_bucket(tmp_path: Path) -> None:
    # all_tools and the tool name the same counter with the same definition: the engine
    # charges one bucket, under the all_tools pointer; both limits count as reached.
    limit = {"counter": "calls", "max": 5, "window": "minute"}
    policy = {
        "version": "1",
        "default": "deny",
        "all_tools": {"limits": [limit]},
        "tools": {"t": {"limits": [limit]}, "u": {"limits": [{**limit, "counter": "other"}]}},
    }
    case_file = write_files(
        tmp_path,
        [{"name": "t", "identity": "a", "tool": "t", "expect": {"effect": "allow"}}],
        policy=policy,
    )
    coverage = measure_coverage(load_policy(tmp_path / "policy.json"), results_of(case_file))
    assert [(p, hit) for p, _, hit in coverage.rules] == [
        ("/default", False),
        ("/all_tools/limits/0", True),
        ("/tools/t", True),
        ("/tools/t/limits/0", True),
        ("/tools/u", False),
        ("/tools/u/limits/0", False),
    ]
    assert coverage.percent == 50.0


def test_coverage_of_a_bundle_lists_its_grants(tmp_path: Path) -> None:
    bundle = {
        "version": "1",
        "policies": {
            "dev": {"version": "1", "default": "allow"},
            "ops": {"version": "1", "default": "deny", "tools": {"t": {}}},
        },
        "grants": {"alice": "dev", "ops-*": "ops"},
    }
    case_file = write_files(
        tmp_path,
        [{"name": "o", "identity": "ops-1", "tool": "t", "expect": {"effect": "allow"}}],
        policy=bundle,
    )
    coverage = measure_coverage(load_policy(tmp_path / "policy.json"), results_of(case_file))
    assert sorted((p, hit) for p, _, hit in coverage.rules) == [
        ("/grants/alice", False),
        ("/grants/ops-*", True),
        ("/policies/dev/default", False),
        ("/policies/ops/default", False),
        ("/policies/ops/tools/t", True),
    ]
    assert coverage.percent == 40.0


# -- assert_decision and the clock ----------------------------------------------------------


def test_assert_decision() -> None:
    clock = VirtualClock()
    engine = PolicyEngine(POLICY, clock=clock)
    decision = assert_decision(engine, "alice", "write", {"path": "/a"}, effect="allow")
    assert decision.effect is Effect.ALLOW
    assert_decision(engine, "alice", "write", {"path": "/a"}, effect=Effect.ALLOW)
    with pytest.raises(AssertionError) as caught:
        assert_decision(engine, "alice", "write", {"path": "/a"}, effect="allow", rule="/x")
    assert str(caught.value).splitlines()[3:6] == [
        "  expected: effect allow, rule /x",
        "  actual:   effect rate_limited, rule /tools/write/limits/0, retry_after 0.5",
        "  reason:   Rate limit 'writes' (2 per second) exceeded; retry in 0.5 s.",
    ]
    assert "/tools/write/limits/0: rate limited" in str(caught.value)
    clock.advance(0.5)
    assert_decision(engine, "alice", "write", {"path": "/a"}, effect="allow")
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


# -- the command in a subprocess ------------------------------------------------------------


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "policylayer_core", "test", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_the_command_on_the_shipped_example() -> None:
    done = run("examples/qflow-policy.json")
    assert (done.returncode, done.stdout, done.stderr) == (0, "14 passed, 0 failed\n", "")
    done = run("examples/qflow-policy.json", "--json")
    report = json.loads(done.stdout)
    assert (done.returncode, report["passed"], report["failed"]) == (0, 14, 0)
    assert report["summary"] == "14 passed, 0 failed" and report["coverage"] is None


def test_the_command_json_report(tmp_path: Path) -> None:
    case_file = write_files(
        tmp_path,
        [{"name": "d", "identity": "a", "tool": "delete", "expect": {"effect": "allow"}}],
    )
    done = run(str(case_file), "--json", "--coverage")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    [case] = report["cases"]
    assert (case["name"], case["passed"], case["line"]) == ("d", False, 4)
    assert case["failure"]["actual"]["effect"] == "deny"
    assert case["failure"]["trace"] == [
        {"pointer": "/hide/0", "outcome": "hidden", "detail": "'delete' matches 'delete'"}
    ]
    [coverage] = report["coverage"]
    assert (coverage["reached"], coverage["total"]) == (1, 7)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["nowhere.json"], "'nowhere.json' does not exist"),
        (["tests/data/qflow-tools.json"], "No cases for 'tests/data/qflow-tools.json'"),
        (["tests"], "No .policytest.json file is under 'tests'"),
        (["examples", "x.policytest.json"], "Case files may follow a policy file"),
    ],
)
def test_usage_errors(argv: list[str], problem: str) -> None:
    done = run(*argv)
    assert done.returncode == 2 and problem in done.stderr, done.stderr


def test_the_command_on_a_directory_of_case_files(tmp_path: Path) -> None:
    write_files(
        tmp_path, [{"name": "r", "identity": "a", "tool": "read", "expect": {"effect": "allow"}}]
    )
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "x.policytest.json").write_text(
        json.dumps(
            {
                "policy": "../policy.json",
                "cases": [{"name": "w", **WRITE, "expect": {"effect": "deny"}}],
            }
        ),
        "utf-8",
    )
    done = run(str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"FAILED {sub / 'x.policytest.json'}::w"
    assert done.stdout.endswith("\n1 passed, 1 failed\n")
