"""Policy tests: `*.policytest.json` case files, run on a virtual clock (see docs/testing.md).

A case file names the policy it tests (relative to itself) and holds cases. A case is one
call and what must come back, or a sequence of steps (calls, repeated calls, clock advances,
refunds) on one engine. Every case gets a fresh engine whose clock moves only when a step says
so, so rate limits are exact. Every call is explained (`engine.explain`, a dry run that takes
no tokens) just before it is decided on the same engine: a failure shows that trace, and
coverage counts the steps of every trace.

`policylayer test` (`run_command`) and the pytest plugin both run cases through `run_case`.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from policylayer_core.decision import Decision, Effect
from policylayer_core.engine import PolicyEngine
from policylayer_core.errors import PolicyIssue
from policylayer_core.jsontext import parse_json_text, pointer_join
from policylayer_core.loader import LoadedPolicy
from policylayer_core.program import Step

__all__ = [
    "RETRY_TOLERANCE",
    "SUFFIX",
    "Case",
    "CaseFile",
    "CaseFileError",
    "CaseResult",
    "Failure",
    "VirtualClock",
    "assert_decision",
    "case_schema",
    "load_case_file",
    "run_case",
]

SUFFIX = ".policytest.json"
RETRY_TOLERANCE = 1e-6
"""How far (in seconds) a decision's retry_after may be from the expected one."""


class CaseFileError(ValueError):
    """A case file that cannot be used; `.issues` lists every problem, with pointers and lines."""

    def __init__(self, issues: Iterable[PolicyIssue], *, source: str) -> None:
        self.issues = sorted(set(issues), key=lambda i: (i.line or 0, i.column or 0, i.pointer))
        self.source = source
        count = len(self.issues)
        lines = [f"  {issue.format(source)}" for issue in self.issues]
        noun = "problem" if count == 1 else "problems"
        super().__init__("\n".join([f"The case file {source} has {count} {noun}:", *lines]))


class VirtualClock:
    """A monotonic clock that moves only by `advance` (never by itself); it starts at 0."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"A clock only moves forward, so {seconds!r} s cannot be added.")
        self.now += seconds


@dataclass(frozen=True, slots=True)
class Case:
    """One case of a case file; `spec` is its JSON object (already checked)."""

    name: str
    pointer: str
    line: int | None
    spec: Mapping[str, Any]
    positions: Mapping[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class CaseFile:
    """A case file that loaded: where it is, the policy it names and its cases."""

    path: Path
    policy_path: Path
    cases: tuple[Case, ...]
    positions: Mapping[str, tuple[int, int]]


@cache
def case_schema() -> dict[str, Any]:
    """The JSON Schema of case files, shipped as policylayer_core/policytest.schema.json."""
    text = resources.files("policylayer_core").joinpath("policytest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_case_file(path: str | Path) -> CaseFile:
    """Read and check a case file; raise `CaseFileError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = f"The case file cannot be read ({reason}); give the path of a JSON file."
        raise CaseFileError([PolicyIssue("", problem)], source=str(path)) from None
    parsed = parse_json_text(text)
    issues = [PolicyIssue(i.pointer, i.message, i.line, i.column) for i in parsed.issues]
    doc = parsed.value
    if doc is not None:
        validator = jsonschema.Draft202012Validator(case_schema())
        issues += [issue for e in validator.iter_errors(doc) for issue in _schema_issues(e)]
    issues += _semantic_issues(doc, path)
    if issues:
        placed = []
        for issue in issues:
            pointer = issue.pointer
            while pointer and pointer not in parsed.positions:
                pointer = pointer.rsplit("/", 1)[0]
            line, column = parsed.positions.get(pointer, (issue.line, issue.column))
            placed.append(PolicyIssue(issue.pointer, issue.message, line, column))
        raise CaseFileError(placed, source=str(path))
    cases = tuple(
        Case(c["name"], f"/cases/{i}", parsed.positions[f"/cases/{i}"][0], c, parsed.positions)
        for i, c in enumerate(doc["cases"])
    )
    return CaseFile(path, path.parent / doc["policy"], cases, parsed.positions)


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPES = {"string": "a string", "number": "a number", "integer": "a whole number"}
_TYPES |= {"boolean": "true or false", "null": "null", "object": "a JSON object"}
_TYPES |= {"array": "a JSON array"}


def _schema_issues(error: jsonschema.ValidationError) -> Iterable[PolicyIssue]:
    """The sentences for one JSON Schema error, each at its pointer."""
    pointer = ""
    for token in error.absolute_path:
        pointer = pointer_join(pointer, token)
    kind, schema = error.validator, error.schema
    value: Any = error.instance
    expected: Any = error.validator_value
    assert isinstance(schema, dict)
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for key in [k for k in value if k not in allowed and not k.startswith("x-")]:
            hint = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1, cutoff=0.6)
            noun = schema.get("title", "this object")
            message = f"Unknown key '{key}' in {noun}."
            message += f" Did you mean '{hint[0]}'?" if hint else ""
            message += f" The keys allowed in {noun} are: {', '.join(allowed)}."
            message += " Keys that begin with 'x-' are ignored, for comments."
            yield PolicyIssue(pointer_join(pointer, key), message)
        return
    if kind == "required":
        for key in [k for k in expected if k not in value]:
            yield PolicyIssue(pointer, f"The required key '{key}' is missing here; add it.")
        return
    got = f", but it is {_json(value)}."
    if kind == "type":
        names = [_TYPES[t] for t in _as_list(expected)]
        message = f"This value must be {' or '.join(names)}{got}"
    elif kind == "enum":
        options = expected
        hint = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
        message = f"This value must be one of {', '.join(map(_json, options))}{got}"
        message += f" Did you mean {_json(hint[0])}?" if hint else ""
    elif kind == "minimum":
        message = f"This value must be at least {expected}{got}"
    elif kind == "minLength":
        message = "This string must not be empty; write a value."
    elif kind == "minItems":
        message = "This array must hold at least one item; add one."
    elif "description" in schema:
        message = f"This value must be {schema['description']}{got}"
    else:
        message = f"This value is not valid here: {error.message}."
    yield PolicyIssue(pointer, message)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _semantic_issues(doc: Any, path: Path) -> list[PolicyIssue]:
    """What the schema cannot say: unique names, refunds of earlier calls, the policy file.
    Parts of the wrong shape are skipped here: the schema has reported them."""
    issues = []
    seen: dict[str, int] = {}
    doc = doc if isinstance(doc, dict) else {}
    cases = doc.get("cases") if isinstance(doc.get("cases"), list) else []
    for index, case in enumerate(cases):
        name, where = case.get("name") if isinstance(case, dict) else None, f"/cases/{index}"
        if isinstance(name, str) and "::" in name:
            message = "A case name must not contain '::', which separates the parts of test ids."
            issues.append(PolicyIssue(where + "/name", message))
        if isinstance(name, str) and name in seen:
            message = (
                f"The case name {name!r} is taken by /cases/{seen[name]}; give every case its "
                "own name, since reports and pytest ids use it."
            )
            issues.append(PolicyIssue(where + "/name", message))
        if isinstance(name, str):
            seen.setdefault(name, index)
        steps = case.get("steps") if isinstance(case, dict) else None
        calls: list[int] = []
        for number, step in enumerate(steps if isinstance(steps, list) else []):
            refund = step.get("refund") if isinstance(step, dict) else None
            if refund == "previous" and not calls:
                message = "There is no call before this step to refund; put it after a call."
                issues.append(PolicyIssue(f"{where}/steps/{number}/refund", message))
            elif type(refund) is int and refund >= 0 and refund not in calls:
                message = (
                    f"Step {refund} is not an earlier call or repeat step of this case, so "
                    "it has no decision to refund; give the index of one (0 is the first step)."
                )
                issues.append(PolicyIssue(f"{where}/steps/{number}/refund", message))
            if isinstance(step, dict) and ("tool" in step or "repeat" in step):
                calls.append(number)
    policy = doc.get("policy")
    if isinstance(policy, str) and policy and not (path.parent / policy).is_file():
        message = (
            f"The policy file {str(path.parent / policy)!r} does not exist; 'policy' is a path "
            "relative to the case file."
        )
        issues.append(PolicyIssue("/policy", message))
    return issues


# -- running -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a case failed: the call, what was expected, the actual decision and its trace."""

    where: str
    call: Mapping[str, Any]
    expect: Mapping[str, Any]
    actual: Decision
    differs: tuple[str, ...]
    trace: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        """The failure as JSON for `policylayer test --json`."""
        d = self.actual
        actual: dict[str, Any] = {"effect": d.effect.value, "rule": d.rule, "reason": d.reason}
        actual |= {"retry_after": d.retry_after, "allowed": d.allowed}
        return {
            "where": self.where,
            "call": dict(self.call),
            "expected": dict(self.expect),
            "actual": actual,
            "differs": list(self.differs),
            "trace": [
                {"pointer": s.pointer, "outcome": s.outcome, "detail": s.detail} for s in self.trace
            ],
        }

    def summary(self) -> str:
        """One line: what differs."""
        d = self.actual
        parts = [f"effect {d.effect.value}", f"rule {d.rule or '(root)'}"]
        return f"Expected {_expected(self.expect)} but got {', '.join(parts)} ({self.where})."

    def format(self) -> str:
        """Several lines: the call, expected and actual decisions, and the explain trace."""
        call, d = self.call, self.actual
        args = "" if call.get("args") is None else " " + _json(call["args"])
        extra = [f"session {call['session']}"] if call.get("session") is not None else []
        extra += ["approved"] if call.get("approved") else []
        actual = [f"effect {d.effect.value}", f"rule {d.rule or '(root)'}"]
        actual += [f"retry_after {d.retry_after:.6g}"] if d.retry_after is not None else []
        actual += [f"allowed {'yes' if d.allowed else 'no'}"] if "allowed" in self.expect else []
        lines = [
            f"  at:       {self.where}",
            f"  call:     {call['identity']} -> {call['tool']}{args}"
            + (f" ({', '.join(extra)})" if extra else ""),
            f"  expected: {_expected(self.expect)}",
            f"  actual:   {', '.join(actual)}",
            f"  reason:   {d.reason}",
            f"  differs:  {', '.join(self.differs)}",
            "  explain trace of the actual decision (run on the same engine just before the call):",
        ]
        lines += [f"    {i}. {step}" for i, step in enumerate(self.trace, 1)]
        return "\n".join(lines)


def _expected(expect: Mapping[str, Any]) -> str:
    parts = [f"effect {expect['effect']}"]
    if "rule" in expect:
        parts.append(f"rule {expect['rule'] or '(root)'}")
    if "reason_contains" in expect:
        parts.append(f"reason containing {expect['reason_contains']!r}")
    if "retry_after" in expect:
        retry = expect["retry_after"]
        parts.append("no retry_after" if retry is None else f"retry_after {retry:g} (± 1e-6 s)")
    if "allowed" in expect:
        parts.append(f"allowed {'yes' if expect['allowed'] else 'no'}")
    return ", ".join(parts)


def _differs(expect: Mapping[str, Any], d: Decision) -> tuple[str, ...]:
    out = []
    if d.effect.value != expect["effect"]:
        out.append("effect")
    if "rule" in expect and d.rule != expect["rule"]:
        out.append("rule")
    if "reason_contains" in expect and expect["reason_contains"] not in d.reason:
        out.append("reason")
    if "retry_after" in expect:
        want, got = expect["retry_after"], d.retry_after
        if (want is None) != (got is None) or (
            want is not None and got is not None and abs(got - want) > RETRY_TOLERANCE
        ):
            out.append("retry_after")
    if "allowed" in expect and d.allowed is not expect["allowed"]:
        out.append("allowed")
    return tuple(out)


def _call(
    engine: PolicyEngine, call: Mapping[str, Any], expect: Mapping[str, Any]
) -> tuple[Decision, tuple[str, ...], tuple[Step, ...]]:
    """Explain, then decide one call on the same engine; return what differs and the trace."""
    identity, tool, args = call["identity"], call["tool"], call.get("args")
    session, approved = call.get("session"), bool(call.get("approved", False))
    try:
        trace = engine.explain(identity, tool, args, session=session, approved=approved).steps
    except Exception as exc:  # explain() lets engine failures out; decide() denies them
        trace = (Step("", "explain() failed", f"{type(exc).__name__}: {exc}"),)
    decision = engine.decide(identity, tool, args, session=session, approved=approved)
    return decision, _differs(expect, decision), trace


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case, and the policy pointers each of its calls reached."""

    case: Case
    failure: Failure | None
    seconds: float
    reached: tuple[frozenset[str], ...]

    @property
    def passed(self) -> bool:
        return self.failure is None


def run_case(case: Case, policy: LoadedPolicy) -> CaseResult:
    """Run one case on a fresh engine with a virtual clock; stop at the first failing call."""
    started = time.perf_counter()
    clock = VirtualClock()
    engine = PolicyEngine(policy, clock=clock)
    sequence = "steps" in case.spec
    steps: Sequence[Mapping[str, Any]] = case.spec["steps"] if sequence else [case.spec]
    reached: list[frozenset[str]] = []
    decisions: dict[int, Decision] = {}
    previous: Decision | None = None
    failure = None
    for index, step in enumerate(steps):
        if "advance" in step:
            clock.advance(float(step["advance"]))
            continue
        if "refund" in step:
            refund = step["refund"]
            target = previous if refund == "previous" else decisions.get(refund)
            if target is not None:
                target.refund()
            continue
        call, times = step.get("call", step), int(step.get("repeat", 1))
        for count in range(1, times + 1):
            previous, differs, trace = _call(engine, call, step["expect"])
            reached.append(frozenset({s.pointer for s in trace} | {previous.rule}))
            if differs:
                pointer = f"{case.pointer}/steps/{index}" if sequence else case.pointer
                where = f"line {case.positions.get(pointer, (0,))[0]}, {pointer}"
                where += f" (step {index + 1} of {len(steps)})" if sequence else ""
                where += f", call {count} of {times}" if times > 1 else ""
                failure = Failure(where, call, step["expect"], previous, differs, trace)
                break
        assert previous is not None
        decisions[index] = previous
        if failure is not None:
            break
    return CaseResult(case, failure, time.perf_counter() - started, tuple(reached))


def assert_decision(
    engine: PolicyEngine,
    identity: str,
    tool: str,
    args: Any = None,
    *,
    effect: Effect | str,
    rule: str | None = None,
    reason_contains: str | None = None,
    retry_after: float | None = None,
    session: str | None = None,
    approved: bool = False,
) -> Decision:
    """Decide a call and check the decision; raise AssertionError with the explain trace.

    The call is explained on `engine` just before it is decided, so the trace shows the
    state the call met (tokens included). Returns the decision (for `refund()`).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's
    expect: dict[str, Any] = {"effect": Effect(effect).value}
    for key, value in (("rule", rule), ("reason_contains", reason_contains)):
        if value is not None:
            expect[key] = value
    if retry_after is not None:
        expect["retry_after"] = retry_after
    call = {"identity": identity, "tool": tool, "args": args}
    call |= {"session": session, "approved": approved}
    decision, differs, trace = _call(engine, call, expect)
    if differs:
        failure = Failure("assert_decision()", call, expect, decision, differs, trace)
        raise AssertionError("The decision is not the expected one:\n" + failure.format())
    return decision


# -- coverage ------------------------------------------------------------------------------
