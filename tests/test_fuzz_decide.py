"""Fuzzing `decide()` (issue 9): any tool name, identity, session and arguments.

Two properties:

* **Always a Decision.** Over the example policy, a bundle with grants, globs and `hide`,
  the `policylayer suggest` policy and the two policies below, every call gets a `Decision`
  (never an exception) whose effect is an `Effect`. For JSON arguments, the engine must also
  not have failed internally (a failure is a DENY too, but one that hides a bug).
* **Never more than the policy allows.** `REFERENCE_POLICY` (a bundle using every operator,
  globs, grants, hide, all_tools, approvals and a schema) and `LIMITS_POLICY` (token buckets
  with scopes, shared counters, costs read from arguments and refunds, on a fake clock) are
  evaluated again by a small independent reference written from docs/policy-format.md and
  docs/rate-limits.md. The engine must give the reference's effect and rule; above all it
  must never ALLOW a call the reference denies, sends for approval or rate limits.

Cases worth keeping are in tests/fuzz_corpus/decide/ (replayed by `test_decide_corpus`).
Examples per property: POLICYLAYER_FUZZ_EXAMPLES; see docs/fuzzing.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from conftest import EXAMPLES, FakeClock
from policylayer_core import Decision, Effect, PolicyEngine
from test_fuzz_load import (
    CORPUS,
    FUZZ,
    corpus_cases,
    describe_records,
    engine_log,
    time_limit,
)
from test_fuzz_load import check_decision as _check_decision

# --- the policies ------------------------------------------------------------------------------


def _condition(path: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"path": path, "op": op} if value is None else {"path": path, "op": op, "value": value}


def _rule(*conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"conditions": list(conditions), **extra}


REFERENCE_POLICY: dict[str, Any] = {
    "version": "1",
    "description": "Written for the differential test: every operator, globs, grants and hide.",
    "policies": {
        "main": {
            "version": "1",
            "default": "allow",
            "hide": ["qflow_task_delete", "secret_*", "*_admin?"],
            "all_tools": {
                "require": [_condition("identity", "len_lte", 24)],
                "deny_if": [
                    _rule(
                        _condition("args.projectRoot", "regex", r"(^|/)\.\.(/|$)"),
                        name="no-parent-dirs",
                        on_deny="projectRoot must not contain '..'.",
                    ),
                    _rule(_condition("args.force", "eq", True)),
                ],
                "approve_if": [
                    _rule(
                        _condition("session", "exists", False),
                        _condition("tool", "glob", "*_apply"),
                    ),
                ],
            },
            "tools": {
                "qflow_task_batch": {
                    "require": [
                        _condition("args.projectRoot", "starts_with", "/srv/projects/"),
                        _rule(
                            _condition(
                                "args.action", "in", ["create", "update", "status", "rewrite"]
                            )
                        ),
                    ],
                    "deny_if": [
                        _rule(_condition("args.action", "eq", "rewrite")),
                        _rule(_condition("args.tasks.*.tags", "contains", "prod")),
                        _rule(_condition("args.tasks.*.title", "regex", "(?i)password|密码")),
                    ],
                    "approve_if": [
                        _rule(
                            _condition("args.action", "eq", "create"),
                            _condition("args.tasks", "len_gt", 3),
                        ),
                        _rule(_condition("args.tasks.0.priority", "gte", 9)),
                    ],
                },
                "qflow_*": {
                    "on_deny": "This qflow tool is limited for agents.",
                    "deny_if": [
                        _rule(_condition("args.count", "gt", 100)),
                        _rule(_condition("args.mode", "not_in", ["safe", "dry-run", None, 1])),
                    ],
                    "approve_if": [_rule(_condition("args.note", "contains", "urgent"))],
                },
                "qflow_task_*": {
                    "require": [
                        _condition("args.title", "exists"),
                        _rule(_condition("args.title", "len_lt", 40), on_deny="Short titles."),
                    ],
                    "deny_if": [_rule(_condition("args.labels", "contains", {"k": [1, 2.0]}))],
                },
                "qflow_*_list": {"deny_if": [_rule(_condition("args.limit", "lte", -0.5))]},
                "*_apply": {"action": "approve", "on_deny": "Applying needs a human."},
                "x[-]danger": {"action": "deny"},
                "files_?ead": {
                    "require": [_condition("args.path", "glob", "/srv/*/[!.]*")],
                    "deny_if": [_rule(_condition("args.path", "ends_with", ".key"))],
                },
                "ops_run": {
                    "schema": {
                        "type": "object",
                        "properties": {"retries": {"type": "integer"}, "cmd": {"type": "string"}},
                    },
                    "deny_if": [
                        _rule(
                            _condition("args.cmd", "neq", "status"),
                            _condition("args.env.name", "len_eq", 4),
                        )
                    ],
                    "approve_if": [
                        _rule(_condition("args.retries", "lt", 0)),
                        _rule(_condition("args.env", "exists", True)),
                    ],
                },
                "x-note": "Keys that begin with x- are comments, among tool names too.",
            },
        },
        "strict": {
            "version": "1",
            "default": "deny",
            "hide": ["qflow_task_delete"],
            "tools": {
                "qflow_task_list": {"require": [_condition("args.limit", "lte", 50.5)]},
                "qflow_task_get": {"require": [_condition("args.id", "regex", r"^T[0-9]+\Z")]},
                "qflow_*": {"action": "approve"},
                "ops_*": {
                    "deny_if": [
                        _rule(
                            _condition(
                                "args.env",
                                "in",
                                ["prod", {"name": "prod"}, ["p"], 1.0, False, None],
                            )
                        )
                    ]
                },
            },
        },
        "watch": {
            "version": "1",
            "default": "deny",
            "mode": "shadow",
            "tools": {
                "qflow_task_list": {"deny_if": [_rule(_condition("args.status", "eq", "done"))]},
                "*": {"approve_if": [_rule(_condition("args.n", "gte", 3))]},
            },
        },
    },
    "grants": {
        "alice": "main",
        "ops-*": "main",
        "*-bot": "strict",
        "ops-admin": "strict",
        "ci-?": "strict",
        "ci-[0-9][0-9]": "watch",
        "x-ignored": "main",
    },
}

LIMITS_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "all_tools": {"limits": [{"counter": "calls", "window": 2, "max": 4, "burst": 6}]},
    "tools": {
        "read": {},
        "write": {
            "limits": [
                {"counter": "writes", "window": "second", "max": 2, "scope": "session"},
                {"max": 1, "window": 4, "burst": 2, "cost": "args.n"},
            ]
        },
        "batch": {
            "limits": [
                {"counter": "calls", "window": 2, "max": 4, "burst": 6, "cost": "args.tasks"},
                {"counter": "everyone", "window": 1, "max": 8, "scope": "global"},
            ]
        },
        "spec": {
            "limits": [
                {"counter": "writes", "window": "second", "max": 2, "scope": "session"},
                {"counter": "nested", "window": 1.5, "max": 3, "cost": "args.spec.items"},
            ]
        },
        "apply": {
            "action": "approve",
            "limits": [{"counter": "applies", "window": "minute", "max": 2, "scope": "identity"}],
        },
    },
}

BUNDLE_POLICY: dict[str, Any] = {
    "version": "1",
    "policies": {
        "readonly": {
            "version": "1",
            "default": "deny",
            "tools": {"qflow_task_list": {}, "qflow_task_get": {}, "qflow_*_status": {}},
        },
        "full": {
            "version": "1",
            "default": "allow",
            "hide": ["qflow_task_delete", "*secret*", "[!a-z]*"],
            "tools": {
                "qflow_spec_*": {"action": "approve"},
                "*": {"limits": [{"max": 3, "window": 1}]},
            },
        },
    },
    "grants": {"alice-laptop": "full", "ci-*": "readonly", "ci-release": "full", "*": "readonly"},
}


def _engine_sources() -> dict[str, Any]:
    suggested = CORPUS / "load" / "seed-suggest-args-rules.json"
    return {
        "qflow-example": EXAMPLES / "qflow-policy.json",
        "bundle": BUNDLE_POLICY,
        "reference": REFERENCE_POLICY,
        "limits": LIMITS_POLICY,
        "suggested": suggested,
    }


POLICIES = _engine_sources()


def build(name_or_policy: Any, clock: FakeClock | None = None) -> PolicyEngine:
    source = (
        POLICIES.get(name_or_policy, name_or_policy)
        if isinstance(name_or_policy, str)
        else name_or_policy
    )
    if isinstance(source, Path):
        return PolicyEngine.from_file(source, clock=clock or FakeClock())
    return PolicyEngine(source, clock=clock or FakeClock())


# --- a reference evaluation, written from the documentation -------------------------------------


class RefIndeterminate(Exception):  # noqa: N818 - a verdict, as in the engine
    def __init__(self, pointer: str) -> None:
        super().__init__(pointer)
        self.pointer = pointer


class _Confused(Exception):  # noqa: N818
    """The argument's type is one the operator cannot judge."""


class _Shape(Exception):  # noqa: N818
    """A path step met a value it cannot step into."""


def pointer(*tokens: str | int) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


Token = tuple[str, Any]


def _glob_tokens(pattern: str) -> list[Token]:
    """`*`, `?`, `[set]`, `[!set]` (with ranges a-z), literal characters; an unclosed `[` too."""
    tokens: list[Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char in "*?":
            tokens.append((char, None))
            i += 1
            continue
        if char == "[":
            j = i + 1
            j += pattern.startswith("!", j)
            j += pattern.startswith("]", j)
            close = pattern.find("]", j)
            if close != -1:
                body = pattern[i + 1 : close]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                ranges, k = [], 0
                while k < len(body):
                    if k + 2 < len(body) and body[k + 1] == "-":
                        ranges.append((body[k], body[k + 2]))
                        k += 3
                    else:
                        ranges.append((body[k], body[k]))
                        k += 1
                tokens.append(("set", (negate, ranges)))
                i = close + 1
                continue
        tokens.append(("lit", char))
        i += 1
    return tokens


def glob_match(pattern: str, name: str) -> bool:
    """Whole-string match, by the set of pattern positions reachable after each character."""
    tokens = _glob_tokens(pattern)

    def closure(states: set[int]) -> set[int]:
        todo, seen = list(states), set(states)
        while todo:
            state = todo.pop()
            if state < len(tokens) and tokens[state][0] == "*" and state + 1 not in seen:
                seen.add(state + 1)
                todo.append(state + 1)
        return seen

    states = closure({0})
    for char in name:
        following: set[int] = set()
        for state in states:
            if state == len(tokens):
                continue
            kind, data = tokens[state]
            if kind == "*":
                following.add(state)
            elif kind == "?" or (kind == "lit" and data == char):
                following.add(state + 1)
            elif kind == "set":
                negate, ranges = data
                if any(low <= char <= high for low, high in ranges) != negate:
                    following.add(state + 1)
        states = closure(following)
    return len(tokens) in states


def is_glob(key: str) -> bool:
    return any(char in key for char in "*?[")


def best_key(keys: list[str], name: str) -> str | None:
    """An exact key, else the matching glob with the most literal characters, first on a tie."""
    if name in keys and not is_glob(name):
        return name
    matching = [(i, key) for i, key in enumerate(keys) if is_glob(key) and glob_match(key, name)]
    if not matching:
        return None
    literal = {key: sum(kind == "lit" for kind, _ in _glob_tokens(key)) for _, key in matching}
    return min(matching, key=lambda item: (-literal[item[1]], item[0]))[1]


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is bool and type(b) is bool and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _needs(ok: bool) -> None:
    if not ok:
        raise _Confused


def operator_holds(op: str, value: Any, x: Any) -> bool:
    """The table of docs/policy-format.md, "Conditions", one operator at a time."""
    if op in ("eq", "neq"):
        return json_equal(x, value) is (op == "eq")
    if op in ("in", "not_in"):
        return any(json_equal(x, v) for v in value) is (op == "in")
    if op in ("lt", "lte", "gt", "gte"):
        _needs(_is_number(x))
        return {"lt": x < value, "lte": x <= value, "gt": x > value, "gte": x >= value}[op]
    if op in ("regex", "glob", "starts_with", "ends_with"):
        _needs(isinstance(x, str))
        if op == "regex":
            return re.search(value, x) is not None
        if op == "glob":
            return glob_match(value, x)
        return x.startswith(value) if op == "starts_with" else x.endswith(value)
    if op == "contains":
        if isinstance(x, str):
            _needs(isinstance(value, str))
            return value in x
        _needs(isinstance(x, list))
        return any(json_equal(element, value) for element in x)
    if op.startswith("len_"):
        _needs(isinstance(x, str | list | dict))
        size = len(x)
        return {
            "len_gt": size > value,
            "len_gte": size >= value,
            "len_lt": size < value,
            "len_lte": size <= value,
            "len_eq": size == value,
        }[op]
    raise AssertionError(op)


@dataclass(frozen=True)
class Call:
    identity: Any
    tool: Any
    args: Any = None
    session: Any = None
    approved: bool = False


def values_at(path: str, call: Call, args: dict[str, Any]) -> list[Any]:
    """What a path reaches, breadth first; `_Shape` when a step cannot be taken."""
    root, *steps = path.split(".")
    if root == "identity":
        return [call.identity]
    if root == "tool":
        return [call.tool]
    if root == "session":
        return [] if call.session is None else [call.session]
    current: list[Any] = [args]
    for step in steps:
        following: list[Any] = []
        for value in current:
            if isinstance(value, dict):
                if step == "*":
                    raise _Shape
                if step in value:
                    following.append(value[step])
            elif isinstance(value, list):
                if step == "*":
                    following.extend(value)
                elif step.isascii() and step.isdigit():
                    if int(step) < len(value):
                        following.append(value[int(step)])
                else:
                    raise _Shape
            else:
                raise _Shape
        current = following
    return current


def condition_holds(
    condition: dict[str, Any], where: str, call: Call, args: dict[str, Any]
) -> bool:
    op = condition["op"]
    try:
        found = values_at(condition["path"], call, args)
    except _Shape:
        if op == "exists":
            found = []
        else:
            raise RefIndeterminate(where) from None
    if op == "exists":
        return bool(found) is (condition.get("value") is not False)
    verdicts = []
    for x in found:
        try:
            verdicts.append(operator_holds(op, condition["value"], x))
        except _Confused:
            raise RefIndeterminate(where) from None
    return any(verdicts)


def rule_holds(rule: dict[str, Any], where: str, call: Call, args: dict[str, Any]) -> bool:
    if ("path" in rule or "op" in rule) and "conditions" not in rule:  # a bare condition
        return condition_holds(rule, where, call, args)
    return all(
        condition_holds(c, f"{where}/conditions/{i}", call, args)
        for i, c in enumerate(rule.get("conditions", []))
    )


def _names(table: dict[str, Any]) -> list[str]:
    return [key for key in table if not key.startswith("x-")]


def _policy_for(document: dict[str, Any], identity: str) -> tuple[str, dict[str, Any]] | None:
    if "policies" not in document:
        return "", document
    grants = {k: v for k, v in document.get("grants", {}).items() if not k.startswith("x-")}
    key = best_key(list(grants), identity)
    if key is None:
        return None
    return pointer("policies", grants[key]), document["policies"][grants[key]]


def _hidden(policy: dict[str, Any], tool: str) -> int | None:
    for i, entry in enumerate(policy.get("hide", [])):
        if glob_match(entry, tool) if is_glob(entry) else entry == tool:
            return i
    return None


def reference_decision(document: dict[str, Any], call: Call) -> tuple[Effect, str]:
    """docs/policy-format.md, "The order of evaluation", for a policy without limits."""
    identity, tool, session = call.identity, call.tool, call.session
    if type(identity) is not str or type(tool) is not str:
        return Effect.DENY, ""
    if session is not None and type(session) is not str:
        return Effect.DENY, ""
    found = _policy_for(document, identity)
    if found is None:
        return Effect.DENY, "/grants"
    prefix, policy = found
    hidden = _hidden(policy, tool)
    if hidden is not None:
        return Effect.DENY, f"{prefix}/hide/{hidden}"
    tools = policy.get("tools", {})
    key = best_key(_names(tools), tool)
    if key is None and policy["default"] == "deny":
        return Effect.DENY, f"{prefix}/default"
    entry = tools[key] if key is not None else {}
    base = prefix + (pointer("tools", key) if key is not None else "/default")
    if entry.get("action") == "deny":
        return Effect.DENY, f"{base}/action"
    args = {} if call.args is None else call.args
    if not isinstance(args, dict):
        return Effect.DENY, base
    if "schema" in entry and not jsonschema.Draft202012Validator(entry["schema"]).is_valid(args):
        return Effect.DENY, f"{base}/schema"
    lists = [(policy.get("all_tools", {}), f"{prefix}/all_tools"), (entry, base)]
    try:
        for rules, at in lists:
            for i, rule in enumerate(rules.get("require", [])):
                if not rule_holds(rule, f"{at}/require/{i}", call, args):
                    return Effect.DENY, f"{at}/require/{i}"
        for rules, at in lists:
            for i, rule in enumerate(rules.get("deny_if", [])):
                if rule_holds(rule, f"{at}/deny_if/{i}", call, args):
                    return Effect.DENY, f"{at}/deny_if/{i}"
        if not call.approved:
            if entry.get("action") == "approve":
                return Effect.APPROVAL_REQUIRED, f"{base}/action"
            for rules, at in lists:
                for i, rule in enumerate(rules.get("approve_if", [])):
                    if rule_holds(rule, f"{at}/approve_if/{i}", call, args):
                        return Effect.APPROVAL_REQUIRED, f"{at}/approve_if/{i}"
    except RefIndeterminate as unknown:
        return Effect.DENY, unknown.pointer
    return Effect.ALLOW, base


def reference_visible(document: dict[str, Any], identity: str, names: list[Any]) -> list[str]:
    """docs/policy-format.md, "Hiding tools": what `visible_tools()` keeps."""
    names = [name for name in names if isinstance(name, str)]
    found = _policy_for(document, identity)
    if found is None:
        return []
    policy = found[1]
    if policy.get("mode") == "shadow":
        return names
    keys = _names(policy.get("tools", {}))
    return [
        name
        for name in names
        if _hidden(policy, name) is None
        and (best_key(keys, name) is not None or policy["default"] == "allow")
    ]


def shadowed(document: dict[str, Any], identity: str) -> bool:
    found = _policy_for(document, identity) if isinstance(identity, str) else None
    return found is not None and found[1].get("mode") == "shadow"


# --- token buckets, in exact arithmetic (docs/rate-limits.md) -----------------------------------


@dataclass
class _Plan:
    pointer: str
    bucket: str
    scope: str
    burst: int
    rate: Fraction
    costs: list[tuple[str, Any]]  # (pointer of the limit, literal cost or "args." path)


def _rate(limit: dict[str, Any]) -> Fraction:
    window = limit["window"]
    seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}.get(window, window)
    return Fraction(limit["max"]) / Fraction(seconds)


@dataclass
class ReferenceBuckets:
    """A plain token bucket per (counter, scope key): tokens and the time they were counted."""

    document: dict[str, Any]
    now: Fraction
    buckets: dict[tuple[str, Any], tuple[Fraction, Fraction]] = field(default_factory=dict)
    receipts: list[list[tuple[tuple[str, Any], int, _Plan]]] = field(default_factory=list)

    def plans(self, tool: str) -> list[_Plan]:
        limits = [
            (f"/all_tools/limits/{i}", limit)
            for i, limit in enumerate(self.document.get("all_tools", {}).get("limits", []))
        ] + [
            (f"{pointer('tools', tool)}/limits/{i}", limit)
            for i, limit in enumerate(self.document["tools"][tool].get("limits", []))
        ]
        plans: dict[str, _Plan] = {}
        for at, limit in limits:
            bucket = limit.get("counter", at)
            if bucket not in plans:
                scope = {"identity": "grant"}.get(
                    limit.get("scope", "grant"), limit.get("scope", "grant")
                )
                burst = limit.get("burst", limit["max"])
                plans[bucket] = _Plan(at, bucket, scope, burst, _rate(limit), [])
            plans[bucket].costs.append((at, limit.get("cost", 1)))
        return list(plans.values())

    def tokens(self, key: tuple[str, Any], plan: _Plan) -> Fraction:
        held, at = self.buckets.get(key, (Fraction(plan.burst), self.now))
        return min(Fraction(plan.burst), held + (self.now - at) * plan.rate)

    def cost(self, source: tuple[str, Any], args: dict[str, Any]) -> int:
        at, cost = source
        if isinstance(cost, int):
            return cost
        try:
            found = values_at(cost, Call("", ""), args)
        except _Shape:
            raise RefIndeterminate(at) from None
        if not found:
            return 1
        value = found[0]
        if isinstance(value, str | list | dict):
            return len(value)
        if _is_number(value) and math.isfinite(value) and value >= 0 and value == int(value):
            return int(value)
        raise RefIndeterminate(at)

    def decide(self, call: Call) -> tuple[Effect, str, float | None]:
        """The effect, rule and retry_after of one call; takes tokens when it allows."""
        self.receipts.append([])
        tools = self.document["tools"]
        if call.tool not in tools:
            return Effect.DENY, "/default", None
        base = pointer("tools", call.tool)
        args = {} if call.args is None else call.args
        if not isinstance(args, dict):
            return Effect.DENY, base, None
        if tools[call.tool].get("action") == "approve" and not call.approved:
            return Effect.APPROVAL_REQUIRED, f"{base}/action", None
        charges = []
        for plan in self.plans(call.tool):
            try:
                cost = max(self.cost(source, args) for source in plan.costs)
            except RefIndeterminate as unknown:
                return Effect.DENY, unknown.pointer, None
            if cost > plan.burst:
                return Effect.DENY, plan.pointer, None
            scope_key = {"grant": call.identity, "session": (call.identity, call.session)}
            key = (plan.bucket, scope_key.get(plan.scope))
            if cost > 0:
                charges.append((key, cost, plan))
        short = [(key, cost, plan) for key, cost, plan in charges if self.tokens(key, plan) < cost]
        if short:
            wait = max((cost - self.tokens(key, plan)) / plan.rate for key, cost, plan in short)
            return Effect.RATE_LIMITED, short[0][2].pointer, float(wait)
        for key, cost, plan in charges:
            self.buckets[key] = (self.tokens(key, plan) - cost, self.now)
        self.receipts[-1] = charges
        return Effect.ALLOW, base, None

    def refund(self, index: int) -> None:
        for key, cost, plan in self.receipts[index]:
            self.buckets[key] = (min(Fraction(plan.burst), self.tokens(key, plan) + cost), self.now)
        self.receipts[index] = []


# --- strategies ---------------------------------------------------------------------------------

LOOK_ALIKES = [
    "qflow_task_lіst",  # Cyrillic і
    "qflow_task_list\u200b",
    "\u200bqflow_task_list",
    "qflow_task_list ",
    "QFLOW_TASK_LIST",
    "ｑflow_task_list",  # full-width q
    "qflow_task_batch\x00",
    "../qflow_task_list",
    "qflow_task_list/../qflow_task_delete",
    "qflow_task_de\u00adlete",  # soft hyphen
    "qflow_task_delete\n",
]
TOOL_NAMES = [
    *LOOK_ALIKES,
    "qflow_task_batch",
    "qflow_task_list",
    "qflow_task_get",
    "qflow_task_create",
    "qflow_task_delete",
    "qflow_spec_list",
    "qflow_spec_apply",
    "qflow_spec_status",
    "qflow_workspace",
    "qflow_*",
    "deploy_apply",
    "x-danger",
    "x[-]danger",
    "x-note",
    "files_read",
    "files_bead",
    "files_rread",
    "ops_run",
    "ops_admin1",
    "secret_key",
    "my_secret_tool",
    "Upper",
    "read",
    "write",
    "batch",
    "spec",
    "apply",
    "*",
    "?",
    "[",
    "",
    "~1",
    "a/b",
]
IDENTITIES = [
    "alice",
    "аlice",  # Cyrillic а
    "alice ",
    "ops-x",
    "ops-bot",
    "ops-admin",
    "ops\u200b-x",
    "ci-1",
    "ci-12",
    "ci-123",
    "ci-release",
    "ci-nightly",
    "alice-laptop",
    "x-ignored",
    "bob-bot",
    "",
    "*",
    "ops-*",
    "a" * 30,
]
INTERESTING: list[Any] = [
    "/srv/projects/demo",
    "/srv/projects/../etc",
    "/srv/projects/..",
    "..",
    "/srv/data/logs/x.key",
    "/srv/a/.hidden",
    "/srv/a/b",
    "create",
    "update",
    "status",
    "rewrite",
    "purge",
    "safe",
    "dry-run",
    "urgent note",
    "prod",
    "T12",
    "T12\n",
    "T1x",
    "done",
    "",
    "PassWord reset",
    "重置数据库密码",
    "写文档",
    True,
    False,
    None,
    0,
    1,
    1.0,
    3,
    9,
    9.5,
    100,
    100.5,
    101,
    -0.5,
    -1,
    50.5,
    51,
    2.5,
    math.inf,
    -math.inf,
    10**30,
    {"name": "prod"},
    {"name": "test"},
    {"k": [1, 2.0]},
    {"k": [True, 2]},
    ["p"],
    ["prod", "x"],
    [],
    {},
]
ARG_KEYS = [
    "projectRoot",
    "action",
    "tasks",
    "force",
    "count",
    "mode",
    "note",
    "title",
    "labels",
    "limit",
    "path",
    "cmd",
    "env",
    "retries",
    "status",
    "id",
    "n",
    "spec",
    "other",
]

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars | st.sampled_from(INTERESTING),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(ARG_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
tasks = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "title": json_values,
            "tags": st.lists(json_values, max_size=3) | json_values,
            "priority": json_values,
        },
    )
    | json_values,
    max_size=6,
)
arguments = (
    st.dictionaries(
        st.sampled_from(ARG_KEYS), st.sampled_from(INTERESTING) | json_values | tasks, max_size=6
    )
    | json_values
)


class _Hostile(str):
    """A str that claims to equal everything (SECURITY.md)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class _Opaque:
    """An object no JSON operator knows."""

    def __repr__(self) -> str:
        return "_Opaque()"


@dataclass(frozen=True)
class DeepArray:
    """An array nested `depth` levels deep, built by `materialize` (hypothesis prints this)."""

    depth: int

    def build(self) -> Any:
        value: Any = []
        for _ in range(self.depth):
            value = [value]
        return value


def materialize(value: Any) -> Any:
    """`value` with every DeepArray built (only where strategies put them: lists, dict values)."""
    if isinstance(value, DeepArray):
        return value.build()
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


PYTHON_ARGUMENTS = st.sampled_from(
    [
        math.nan,
        b"bytes",
        frozenset({"create"}),
        ("create",),
        _Hostile("create"),
        _Opaque(),
        DeepArray(50_000),
    ]
)
python_values = st.recursive(
    json_values | PYTHON_ARGUMENTS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.sets(st.integers(), max_size=3)
        | st.dictionaries(st.sampled_from(ARG_KEYS) | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)
python_arguments = (
    st.dictionaries(
        st.sampled_from(ARG_KEYS) | st.integers() | st.none(), python_values, max_size=5
    )
    | python_values
)
names = st.sampled_from(TOOL_NAMES) | st.text(max_size=30)
identities = st.sampled_from(IDENTITIES) | st.text(max_size=30)
sessions = st.none() | st.sampled_from(["s1", "s2", ""]) | st.text(max_size=8)


# The differential needs calls that get past grants, hide and `require` often enough to
# reach every rule: mostly granted identities, tool names the policy names, and for each
# argument a value chosen near the boundary of the conditions that read it.
GRANTED = ["alice", "ops-x", "ops-bot", "ops-admin", "ci-1", "ci-12"]
NAMED_TOOLS = [
    "qflow_task_batch",
    "qflow_task_list",
    "qflow_task_get",
    "qflow_task_create",
    "qflow_spec_list",
    "qflow_spec_apply",
    "deploy_apply",
    "x-danger",
    "files_read",
    "ops_run",
    "ops_deploy",
]
NEAR: dict[str, list[Any]] = {
    "projectRoot": ["/srv/projects/demo", "/srv/projects/../etc", "/srv/projects/..", "/srv", 5],
    "action": ["create", "update", "status", "rewrite", "purge", 1],
    "force": [True, False, 1, "true"],
    "count": [100, 100.5, 101, "101", -math.inf],
    "mode": ["safe", "dry-run", None, 1, 1.0, True, "SAFE", []],
    "note": ["urgent", "not urgent", "", ["urgent"], ["x", "urgent"], 5, {"urgent": 1}],
    "title": ["t", "x" * 39, "x" * 40, 5, None, ["a"] * 39],
    "labels": [{"k": [1, 2.0]}, [{"k": [1, 2]}], [{"k": [True, 2]}], "k", [], 5],
    "limit": [-0.5, -1, -0.49, 0, 50.5, 51, "0"],
    "path": ["/srv/a/b", "/srv/a/.hidden", "/srv/a/b.key", "/srv/x", "/srv//x", "/srv/a\nb"],
    "cmd": ["status", "deploy", 5],
    "env": [{"name": v} for v in ["prod", "abcd", 1234, list("abcd")]]
    + [{"name": "prod", "x": 1}, "prod", ["p"], 1.0, 1, False, 0, {}],
    "retries": [0, -1, 1.0, -0.5, "1", True],
    "status": ["done", "open"],
    "id": ["T12", "T12\n", "T1x", "t12", 12, "T\u0661\u0662"],
    "n": [3, 2.9, 3.0, "3", True],
}
near_tasks = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "title": st.sampled_from(["a", "password", "重置数据库密码", "", 5, None]),
            "tags": st.sampled_from([["prod"], ["x", "prod"], ["x"], "prod", "xprodx", 3, []]),
            "priority": st.sampled_from([9, 8.9, "9", None, 10**30, math.inf, True]),
        },
    )
    | st.sampled_from(["task", 3, None]),
    max_size=5,
) | st.sampled_from([3, "abc", {"title": "a"}])
near_arguments = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(st.sampled_from(NEAR[key]), st.sampled_from(NEAR[key]), json_values)
        for key in ARG_KEYS
        if key in NEAR
    }
    | {"tasks": near_tasks, "other": json_values},
)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` four times in five, else `rare` (one_of would pick each half the time)."""
    return st.tuples(st.integers(0, 4), common, rare).map(lambda t: t[2] if t[0] == 0 else t[1])


# The keys each tool's `require` reads: a call of that tool mostly sends them.
READS = {
    "qflow_task_batch": ["projectRoot", "action", "tasks"],
    "qflow_task_create": ["title"],
    "qflow_task_list": ["title", "limit"],
    "qflow_task_get": ["title", "id"],
    "files_read": ["path"],
    "ops_run": ["cmd", "env", "retries"],
}


@st.composite
def reference_calls(draw: st.DrawFn) -> Call:
    tool = draw(mostly(st.sampled_from(NAMED_TOOLS), names))
    args = draw(mostly(near_arguments, arguments))
    if isinstance(args, dict):
        for key in READS.get(tool, []):
            if draw(st.integers(0, 4)):
                args[key] = draw(near_tasks if key == "tasks" else st.sampled_from(NEAR[key]))
    return Call(
        identity=draw(mostly(st.sampled_from(GRANTED), identities)),
        tool=tool,
        args=args,
        session=draw(mostly(st.sampled_from([None, "s1"]), sessions)),
        approved=draw(st.booleans()),
    )


# --- always a Decision -------------------------------------------------------------------------

ENGINES = {name: build(name) for name in POLICIES}


def check_decide(engine: PolicyEngine, call: Call, *, json_only: bool) -> Decision:
    """`decide()` and `explain()` answer; for JSON calls, without an internal failure."""
    before = engine.internal_failures
    with time_limit(), engine_log() as records:
        decision = _check_decision(
            engine.decide(
                call.identity, call.tool, call.args, session=call.session, approved=call.approved
            )
        )
        explained = engine.explain(
            call.identity, call.tool, call.args, session=call.session, approved=call.approved
        )
        _check_decision(explained.decision)
    if json_only and engine.internal_failures != before:
        pytest.fail(f"the engine failed on {call}:\n{describe_records(records)}")
    return decision


json_calls = st.builds(
    Call,
    identity=identities,
    tool=names,
    args=arguments,
    session=sessions,
    approved=st.booleans(),
)
python_calls = st.builds(
    Call,
    identity=identities | st.sampled_from([None, 7, b"alice", _Hostile("alice"), _Opaque()]),
    tool=names | st.sampled_from([None, 7, b"qflow_task_list", _Hostile("read"), ["read"]]),
    args=python_arguments,
    session=sessions | st.sampled_from([7, b"s", _Hostile("s")]),
    approved=st.booleans(),
)


@FUZZ
@given(policy=st.sampled_from(sorted(POLICIES)), call=json_calls)
def test_decide_answers_json_calls_without_failing(policy: str, call: Call) -> None:
    check_decide(ENGINES[policy], call, json_only=True)


@FUZZ
@given(policy=st.sampled_from(sorted(POLICIES)), call=python_calls)
def test_decide_answers_any_python_call(policy: str, call: Call) -> None:
    decision = check_decide(
        ENGINES[policy], dataclasses.replace(call, args=materialize(call.args)), json_only=False
    )
    # A name that is not a string (a str subclass is read as its characters) is denied first.
    named = isinstance(call.identity, str) and isinstance(call.tool, str)
    if not named or not (call.session is None or isinstance(call.session, str)):
        assert decision.effect is Effect.DENY and decision.rule == "", decision


# --- the stateless differential -----------------------------------------------------------------


def check_against_reference(engine: PolicyEngine, call: Call) -> Decision:
    expected = reference_decision(REFERENCE_POLICY, call)
    decision = check_decide(engine, call, json_only=True)
    if expected[0] is not Effect.ALLOW:
        assert decision.effect is not Effect.ALLOW, (call, expected, decision)
    assert (decision.effect, decision.rule) == expected, (call, decision)
    assert decision.enforced is not shadowed(REFERENCE_POLICY, call.identity), decision
    explained = engine.explain(
        call.identity, call.tool, call.args, session=call.session, approved=call.approved
    )
    assert (explained.decision.effect, explained.decision.rule) == expected, explained
    return decision


REFERENCE_ENGINE = ENGINES["reference"]


@FUZZ
@given(call=reference_calls())
@example(
    call=Call(
        "alice",
        "qflow_task_batch",
        {
            "projectRoot": "/srv/projects/a",
            "action": "create",
            "tasks": [{"title": "a", "tags": ["x", "prod"]}],
        },
        "s1",
    )
)
def test_decisions_match_the_reference_evaluation(call: Call) -> None:
    decision = check_against_reference(REFERENCE_ENGINE, call)
    event(f"{decision.effect.value} at {re.sub(r'/[0-9]+', '/N', decision.rule)}")


@FUZZ
@given(identity=identities, tools=st.lists(names, max_size=8))
def test_visible_tools_match_the_reference(identity: str, tools: list[str]) -> None:
    assert REFERENCE_ENGINE.visible_tools(identity, tools) == reference_visible(
        REFERENCE_POLICY, identity, tools
    )


# --- the stateful differential: rate limits on a fake clock -------------------------------------

limit_args = st.fixed_dictionaries(
    {},
    optional={
        "n": st.sampled_from([0, 1, 2, 3, 1.0, 2.0, 1.5, -1, True, None, "ab", [1], {}]),
        "tasks": st.lists(st.just({"title": "t"}), max_size=8)
        | st.sampled_from([0, 3, 7, 2.0, -2, "abc", None, {"a": 1}]),
        "spec": st.sampled_from(
            [{}, {"items": 2}, {"items": [1, 2, 3, 4]}, {"items": "x"}, "s", [1]]
        ),
    },
)
limit_steps = st.lists(
    st.one_of(
        st.builds(
            Call,
            identity=st.sampled_from(["alice", "bob"]),
            tool=st.sampled_from(["read", "write", "batch", "spec", "apply", "nope"]),
            args=limit_args | st.sampled_from([None, [], "x"]),
            session=st.sampled_from([None, "s1", "s2"]),
            approved=st.booleans(),
        ),
        st.sampled_from([0.25, 0.5, 1.0, 1.75, 3.0, 30.0]).map(lambda s: ("advance", s)),
        st.integers(0, 30).map(lambda i: ("refund", i)),
    ),
    max_size=40,
)


def run_limit_steps(steps: list[Any]) -> None:
    """Replay calls, clock advances and refunds on the engine and on the reference buckets."""
    clock = FakeClock()
    engine = build("limits", clock)
    reference = ReferenceBuckets(LIMITS_POLICY, Fraction(clock.now))
    decisions: list[Decision] = []
    for step in steps:
        if isinstance(step, tuple) and step[0] == "advance":
            clock.advance(step[1])
            reference.now += Fraction(step[1])
        elif isinstance(step, tuple):
            if step[1] < len(decisions):
                decisions[step[1]].refund()
                reference.refund(step[1])
        else:
            explained = engine.explain(
                step.identity, step.tool, step.args, session=step.session, approved=step.approved
            )
            decision = check_decide(engine, step, json_only=True)
            effect, rule, retry_after = reference.decide(step)
            if effect is not Effect.ALLOW:
                assert decision.effect is not Effect.ALLOW, (step, effect, rule, decision)
            assert (decision.effect, decision.rule) == (effect, rule), (step, decision)
            assert (explained.decision.effect, explained.decision.rule) == (effect, rule)
            if retry_after is not None:
                assert decision.retry_after == pytest.approx(retry_after, abs=1e-9), decision
            decisions.append(decision)


@FUZZ
@given(limit_steps)
def test_rate_limits_match_the_reference_buckets(steps: list[Any]) -> None:
    run_limit_steps(steps)


# --- the corpus ---------------------------------------------------------------------------------


def decode(value: Any) -> Any:
    """Corpus JSON to call values: {"$python": "nan" | "inf" | "-inf" | "bytes" | "set" |
    "tuple" | "int" | "deep", "value": ...} stands for what JSON cannot write."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$python" not in value:
        return {k: decode(v) for k, v in value.items()}
    kind, inner = value["$python"], value.get("value")
    makers: dict[str, Callable[[], Any]] = {
        "nan": lambda: math.nan,
        "inf": lambda: math.inf,
        "-inf": lambda: -math.inf,
        "bytes": lambda: str(inner).encode("utf-8", "surrogatepass"),
        "set": lambda: frozenset(decode(inner)),
        "tuple": lambda: tuple(decode(inner)),
        "int": lambda: int(inner),
        "deep": lambda: DeepArray(int(inner)).build(),
        "hostile": lambda: _Hostile(inner),
    }
    return makers[kind]()


def is_json(value: Any) -> bool:
    """Plain JSON values only: no tuple, set, bytes, str subclass, NaN or non-string key."""
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                return False
            todo.extend(item.values())
        elif kind is list:
            todo.extend(item)
        elif kind is float:
            if math.isnan(item):
                return False
        elif kind not in (str, int, bool, type(None)):
            return False
    return True


@pytest.mark.parametrize("path", corpus_cases("decide"))
def test_decide_corpus(path: Path) -> None:
    """Each file: a policy (a name from POLICIES or a document) and calls, with expectations.

    Calls of the "reference" policy are also checked against the reference evaluation, and
    the steps of the "limits" policy against the reference buckets.
    """
    case = json.loads(path.read_text("utf-8"))
    policy = case["policy"]
    if policy == "limits":
        run_limit_steps(
            [
                ("advance", step["advance"])
                if "advance" in step
                else ("refund", step["refund"])
                if "refund" in step
                else Call(**{k: decode(v) for k, v in step.items() if k != "expect"})
                for step in case["calls"]
            ]
        )
        return
    engine = build(policy)
    clock_steps = 0
    for step in case["calls"]:
        if "advance" in step:
            engine.clock.advance(step["advance"])  # type: ignore[attr-defined]
            clock_steps += 1
            continue
        call = Call(**{k: decode(v) for k, v in step.items() if k != "expect"})
        json_call = is_json([call.identity, call.tool, call.args, call.session])
        if policy == "reference" and json_call:
            decision = check_against_reference(engine, call)
        else:
            decision = check_decide(engine, call, json_only=json_call)
        expect = step.get("expect", {})
        for key, wanted in expect.items():
            got = getattr(decision, key)
            assert (got.value if isinstance(got, Effect) else got) == wanted, (call, decision)
