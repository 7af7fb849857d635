"""Properties for any input: decide() always answers, and schemas agree with jsonschema."""

from __future__ import annotations

import os
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, FakeClock
from policylayer_core import Decision, Effect, PolicyEngine

EXAMPLE_COUNT = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLE_COUNT, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
# A policy is JSON: no NaN or infinities in it (arguments may still carry them).
policy_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
# What a careless integration might pass where JSON was expected.
python_values = (
    json_values
    | st.binary(max_size=5)
    | st.sets(st.integers(), max_size=3)
    | st.tuples(st.integers())
)
tool_names = st.text(max_size=30) | st.sampled_from(
    [
        "qflow_task_batch",
        "qflow_task_delete",
        "qflow_spec_apply",
        "qflow_workspace",
        "qflow_task_create",
    ]
)

ENGINE = PolicyEngine.from_file(EXAMPLES / "qflow-policy.json", clock=FakeClock())


@SETTINGS
@given(
    identity=st.text(max_size=10) | st.integers() | st.none(),
    tool=tool_names | st.integers() | st.none(),
    args=python_values | st.dictionaries(st.text(max_size=12), python_values, max_size=6),
    session=st.none() | st.text(max_size=5),
    approved=st.booleans(),
)
def test_decide_always_returns_a_decision(
    identity: Any, tool: Any, args: Any, session: Any, approved: bool
) -> None:
    d = ENGINE.decide(identity, tool, args, session=session, approved=approved)
    assert isinstance(d, Decision)
    assert isinstance(d.effect, Effect) and d.reason
    assert d.allowed is (d.effect is Effect.ALLOW)
    ex = ENGINE.explain(identity, tool, args, session=session, approved=approved)
    assert ex.decision.effect in (d.effect, Effect.ALLOW, Effect.RATE_LIMITED)  # buckets moved


@SETTINGS
@given(
    args=st.dictionaries(
        st.sampled_from(["action", "projectRoot", "tasks", "other"]), json_values, max_size=4
    )
)
def test_batch_decisions_match_a_reference_evaluation(args: dict[str, Any]) -> None:
    """The qflow_task_batch entry, evaluated the obvious way, against the engine."""
    engine = PolicyEngine.from_file(EXAMPLES / "qflow-policy.json", clock=FakeClock())
    d = engine.decide("alice", "qflow_task_batch", args)
    schema = engine.policy.raw["tools"]["qflow_task_batch"]["schema"]
    root = args.get("projectRoot")
    if not jsonschema.Draft202012Validator(schema).is_valid(args):
        expected = "/tools/qflow_task_batch/schema"
    elif "projectRoot" in args and not isinstance(root, str):
        expected = "/tools/qflow_task_batch/require/0/conditions/0"
    elif not (isinstance(root, str) and root.startswith("/srv/projects/")):
        expected = "/tools/qflow_task_batch/require/0"
    elif args["action"] == "rewrite":
        expected = "/tools/qflow_task_batch/deny_if/0"
    elif len(args.get("tasks", [])) > 20:
        expected = "/tools/qflow_task_batch/approve_if/0"
    else:
        expected = "/tools/qflow_task_batch"
    assert d.rule == expected, (d, args)


schema_strategy = st.fixed_dictionaries(
    {"type": st.just("object")},
    optional={
        "properties": st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(
                        ["string", "integer", "number", "boolean", "array", "null"]
                    ),
                    "minimum": st.integers(-5, 5),
                    "maxLength": st.integers(0, 4),
                    "enum": st.lists(policy_scalars, min_size=1, max_size=3),
                    "const": policy_scalars,
                },
            ),
            max_size=3,
        ),
        "required": st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3),
        "additionalProperties": st.booleans(),
        "minProperties": st.integers(0, 3),
    },
)


@SETTINGS
@given(
    schema=schema_strategy,
    args=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), json_values, max_size=4),
)
def test_schema_verdicts_agree_with_jsonschema(
    schema: dict[str, Any], args: dict[str, Any]
) -> None:
    engine = PolicyEngine({"version": "1", "default": "deny", "tools": {"t": {"schema": schema}}})
    d = engine.decide("i", "t", args)
    valid = jsonschema.Draft202012Validator(schema).is_valid(args)
    assert (d.rule != "/tools/t/schema") == valid, (schema, args, d)


OPERANDS: dict[str, Any] = {
    "eq": st.text(max_size=3) | policy_scalars,
    "neq": policy_scalars,
    "in": st.lists(st.text(max_size=2), max_size=3) | st.lists(policy_scalars, max_size=3),
    "not_in": st.lists(policy_scalars, max_size=3),
    "gt": st.integers(-3, 3),
    "lte": st.floats(-3, 3),
    "regex": st.sampled_from(["^a", "b$", "a.c", ""]),
    "glob": st.sampled_from(["a*", "?b", "[ab]*"]),
    "starts_with": st.text(max_size=2),
    "ends_with": st.text(max_size=2),
    "contains": st.text(max_size=2) | policy_scalars,
    "len_gt": st.integers(0, 3),
    "len_eq": st.integers(0, 3),
    "exists": st.booleans(),
}


def _outcome(engine: PolicyEngine, args: dict[str, Any]) -> tuple[Effect, bool]:
    d = engine.decide("i", "t", args)
    return d.effect, d.rule.endswith("/conditions/0")


@SETTINGS
@given(data=st.data(), op=st.sampled_from(sorted(OPERANDS)), arg=python_values | st.none())
def test_the_one_key_fast_path_agrees_with_the_general_path(data: Any, op: str, arg: Any) -> None:
    value = data.draw(OPERANDS[op])

    def engine(path: str) -> PolicyEngine:
        condition = {"path": path, "op": op, "value": value}
        return PolicyEngine(
            {
                "version": "1",
                "default": "deny",
                "tools": {"t": {"deny_if": [{"conditions": [condition]}]}},
            }
        )

    for args, nested in [({"a": arg}, {"w": {"a": arg}}), ({}, {"w": {}})]:
        assert _outcome(engine("args.a"), args) == _outcome(engine("args.w.a"), nested)
