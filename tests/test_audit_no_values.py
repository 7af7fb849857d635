"""The audit log never holds argument values unless asked to (issue 16).

A denial's reason may quote the caller's own value back to the caller (a schema violation
says `'sk-live-…' does not match '^pk-'`), but the audit event records a reason worded
without it: the value may be a secret the audit options redact, or data the operator never
opted in to keep. Every schema keyword and condition operator whose reason could carry a
value is tried here with a value that holds a marker, and no event may hold the marker.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from policylayer_core import Effect, PolicyEngine
from policylayer_core.audit import AuditOptions, MemorySink

SECRET = "sk-live-SECRETMARKER"

# (schema or None, condition or None, arguments): each call is denied, and its reason to the
# caller may quote SECRET.
CASES: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]] = {
    "pattern": ({"properties": {"k": {"pattern": "^pk-"}}}, None, {"k": SECRET}),
    "enum": ({"properties": {"k": {"enum": ["a", "b"]}}}, None, {"k": SECRET}),
    "const": ({"properties": {"k": {"const": "a"}}}, None, {"k": SECRET}),
    "type": ({"properties": {"k": {"type": "integer"}}}, None, {"k": SECRET}),
    "maxLength": ({"properties": {"k": {"maxLength": 3}}}, None, {"k": SECRET}),
    "minLength": ({"properties": {"k": {"minLength": 300}}}, None, {"k": SECRET}),
    "format-free maximum": ({"properties": {"k": {"maximum": 1}}}, None, {"k": 987654321}),
    "minimum": ({"properties": {"k": {"minimum": 10**12}}}, None, {"k": 987654321}),
    "multipleOf": ({"properties": {"k": {"multipleOf": 7}}}, None, {"k": 987654321}),
    "maxItems": ({"properties": {"k": {"maxItems": 1}}}, None, {"k": [SECRET, SECRET]}),
    "minItems": ({"properties": {"k": {"minItems": 3}}}, None, {"k": [SECRET]}),
    "uniqueItems": ({"properties": {"k": {"uniqueItems": True}}}, None, {"k": [SECRET, SECRET]}),
    "contains": (
        {"properties": {"k": {"contains": {"const": 1}}}},
        None,
        {"k": [SECRET]},
    ),
    "items": ({"properties": {"k": {"items": {"type": "integer"}}}}, None, {"k": [SECRET]}),
    "not": ({"properties": {"k": {"not": {"type": "string"}}}}, None, {"k": SECRET}),
    "anyOf": (
        {"properties": {"k": {"anyOf": [{"type": "integer"}, {"maxLength": 2}]}}},
        None,
        {"k": SECRET},
    ),
    "oneOf": (
        {"properties": {"k": {"oneOf": [{"type": "string"}, {"minLength": 1}]}}},
        None,
        {"k": SECRET},
    ),
    "allOf": ({"properties": {"k": {"allOf": [{"maxLength": 2}]}}}, None, {"k": SECRET}),
    "maxProperties": ({"properties": {"k": {"maxProperties": 0}}}, None, {"k": {"a": SECRET}}),
    "propertyNames": (
        {"properties": {"k": {"propertyNames": {"maxLength": 2}}}},
        None,
        {"k": {SECRET: 1}},
    ),
    "if-then": (
        {"properties": {"k": {"if": {"type": "string"}, "then": {"maxLength": 2}}}},
        None,
        {"k": SECRET},
    ),
    "unevaluatedProperties": (
        {"properties": {"k": {"unevaluatedProperties": False}}},
        None,
        {"k": {SECRET: SECRET}},
    ),
    "false schema": ({"properties": {"k": False}}, None, {"k": SECRET}),
    "nested array path": (
        {"properties": {"k": {"items": {"properties": {"v": {"pattern": "^x"}}}}}},
        None,
        {"k": [{"v": SECRET}]},
    ),
}
OPERATORS = ["gt", "lt", "gte", "lte", "len_gt", "regex", "starts_with", "contains", "eq", "in"]


def engine_for(schema: dict[str, Any] | None, condition: dict[str, Any] | None) -> Any:
    entry: dict[str, Any] = {}
    if schema is not None:
        entry["schema"] = schema
    if condition is not None:
        entry["deny_if"] = [{"conditions": [condition]}]
    sink = MemorySink()
    policy = {"version": "1", "default": "deny", "tools": {"t": entry}}
    options = AuditOptions(record_args_for=frozenset({"other"}))
    return PolicyEngine.from_dict(policy, audit=sink, audit_options=options), sink


def logged(engine: PolicyEngine, sink: MemorySink) -> str:
    engine.close()
    return json.dumps([asdict(e) for e in sink.events], ensure_ascii=False)


@pytest.mark.parametrize("name", CASES)
def test_a_schema_denial_never_logs_the_value(name: str) -> None:
    schema, condition, args = CASES[name]
    engine, sink = engine_for(schema, condition)
    decision = engine.decide("alice", "t", args)
    assert decision.effect is Effect.DENY, decision
    assert decision.rule == "/tools/t/schema"
    marker = "SECRETMARKER" if "SECRETMARKER" in json.dumps(args) else "987654321"
    text = logged(engine, sink)
    assert marker not in text, text
    assert "the value is not logged" in text


def test_the_caller_still_reads_its_own_value_back() -> None:
    schema, _, args = CASES["pattern"]
    engine, sink = engine_for(schema, None)
    decision = engine.decide("alice", "t", args)
    assert SECRET in decision.reason
    assert decision.reason.startswith("The arguments for 't' do not match its schema: at args.k,")
    assert SECRET not in logged(engine, sink)


def test_a_violation_message_is_cut_to_a_bounded_prefix() -> None:
    engine, _ = engine_for({"properties": {"k": {"maxLength": 3}}}, None)
    reason = engine.decide("alice", "t", {"k": "x" * 1_000_000}).reason
    assert len(reason) < 700
    assert "more characters]" in reason


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("value", [SECRET, [SECRET], {"s": SECRET}, 987654321.5])
def test_an_indeterminate_condition_never_logs_the_value(op: str, value: Any) -> None:
    """Conditions name the type they found, never the value, in both places."""
    policy_value: Any = 1 if op in ("gt", "lt", "gte", "lte", "len_gt") else "x"
    if op == "in":
        policy_value = ["x"]
    condition = {"path": "args.k", "op": op, "value": policy_value}
    engine, sink = engine_for(None, condition)
    decision = engine.decide("alice", "t", {"k": value})
    text = logged(engine, sink)
    for marker in ("SECRETMARKER", "987654321"):
        assert marker not in text
        if decision.effect is Effect.DENY:
            assert marker not in decision.reason


def test_an_integer_beyond_64_bits_is_named_by_its_digits() -> None:
    """The arguments section's reasons name sizes and types, never a value."""
    policy = {"version": "1", "default": "allow", "arguments": {"non_json": "deny"}}
    sink = MemorySink()
    engine = PolicyEngine.from_dict(policy, audit=sink)
    decision = engine.decide("alice", "t", {"k": 98765432109876543210})
    assert decision.reason.startswith("args.k is an integer of 20 digits, outside the signed")
    assert "98765432109876543210" not in logged(engine, sink)
