"""decide(), explain(), visible_tools() and reload(): the order of evaluation, rule by rule."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES, policy
from policylayer_core import Decision, Effect, PolicyEngine, PolicyError, load_policy
from test_loader import BUNDLE_EXAMPLE, SPEC_EXAMPLE

ALLOW, DENY, RATE, APPROVAL = (
    Effect.ALLOW,
    Effect.DENY,
    Effect.RATE_LIMITED,
    Effect.APPROVAL_REQUIRED,
)


def check(d: Decision, effect: Effect, rule: str, reason: str | None = None) -> None:
    assert (d.effect, d.rule) == (effect, rule), d
    if reason is not None:
        assert reason in d.reason, d.reason
    assert d.allowed is (effect is ALLOW)
    assert d.reason.endswith((".", "?")), "reasons are complete sentences"


# -- steps 2-4: hide, tool entry lookup, default, action -----------------------------


def test_hide_denies_and_names_the_entry() -> None:
    engine = PolicyEngine(
        policy({"secret": {}, "x": {}}, default="allow", hide=["other", "sec*", "secret"])
    )
    check(engine.decide("a", "secret", {}), DENY, "/hide/1", "hides it")
    check(engine.decide("a", "security", {}), DENY, "/hide/1")
    check(engine.decide("a", "other", {}), DENY, "/hide/0")
    check(engine.decide("a", "x", {}), ALLOW, "/tools/x")


def test_hide_star_hides_everything() -> None:
    engine = PolicyEngine(policy({"a": {}}, default="allow", hide=["*"]))
    check(engine.decide("i", "a"), DENY, "/hide/0")
    check(engine.decide("i", "zzz"), DENY, "/hide/0")


def test_hidden_tool_uses_its_on_deny() -> None:
    engine = PolicyEngine(policy({"t": {"on_deny": "Ask ops."}}, hide=["t"]))
    check(engine.decide("i", "t"), DENY, "/hide/0", "Ask ops.")


def test_default_deny_and_allow() -> None:
    check(
        PolicyEngine(policy({"a": {}})).decide("i", "b", {}),
        DENY,
        "/default",
        "only the tools it lists",
    )
    check(PolicyEngine(policy({"a": {}}, default="allow")).decide("i", "b", {}), ALLOW, "/default")


def test_empty_entry_allows_under_default_deny() -> None:
    check(
        PolicyEngine(policy({"qflow_task_next": {}})).decide("i", "qflow_task_next", {}),
        ALLOW,
        "/tools/qflow_task_next",
    )


def test_action_deny_and_approve() -> None:
    engine = PolicyEngine(
        policy(
            {
                "d": {"action": "deny"},
                "p": {"action": "approve"},
                "q": {"action": "deny", "on_deny": "No."},
            }
        )
    )
    check(engine.decide("i", "d"), DENY, "/tools/d/action")
    check(engine.decide("i", "q"), DENY, "/tools/q/action", "No.")
    check(engine.decide("i", "p"), APPROVAL, "/tools/p/action", "approval")
    check(engine.decide("i", "p", approved=True), ALLOW, "/tools/p")


def test_glob_precedence_exact_then_most_literal_then_file_order() -> None:
    tools = {
        "qflow_*": {"action": "deny", "on_deny": "Generic."},
        "qflow_spec_*": {"action": "approve"},
        "qflow_spec_?pply": {"on_deny": "Seven."},
        "qflow_spe?_appl?": {"action": "deny", "on_deny": "Tie, but later."},
        "qflow_spec_status": {},
        "[a-c]x": {"action": "deny", "on_deny": "Class."},
    }
    engine = PolicyEngine(policy(tools))
    check(engine.decide("i", "qflow_spec_status"), ALLOW, "/tools/qflow_spec_status")
    check(engine.decide("i", "qflow_spec_apply"), ALLOW, "/tools/qflow_spec_?pply")
    check(engine.decide("i", "qflow_spec_init"), APPROVAL, "/tools/qflow_spec_*/action")
    check(engine.decide("i", "qflow_task_list"), DENY, "/tools/qflow_*/action", "Generic.")
    check(engine.decide("i", "bx"), DENY, "/tools/[a-c]x/action")
    check(engine.decide("i", "dx"), DENY, "/default")
    check(engine.decide("i", "QFLOW_task_list"), DENY, "/default")  # case-sensitive


def test_glob_names_are_exact_code_points() -> None:
    engine = PolicyEngine(policy({"qflow_task_list": {}, "safe_*": {}}))
    for trick in [
        "qflow_task_list ",
        "qflow\u200b_task_list",
        "qflоw_task_list",
        "QFLOW_TASK_LIST",
    ]:
        check(engine.decide("i", trick), DENY, "/default")
    check(
        engine.decide("i", "safe_x/../../admin"), ALLOW, "/tools/safe_*"
    )  # '*' spans any run, '/' too


# -- step 5: arguments ---------------------------------------------------------------


@pytest.mark.parametrize("args", [[], "x", 1, True, ("a",)])
def test_arguments_that_are_not_an_object_deny(args: Any) -> None:
    check(
        PolicyEngine(policy({"t": {}})).decide("i", "t", args),
        DENY,
        "/tools/t",
        "must be a JSON object",
    )
    check(PolicyEngine(policy(default="allow")).decide("i", "t", args), DENY, "/default")


def test_none_arguments_are_an_empty_object() -> None:
    engine = PolicyEngine(
        policy({"t": {"require": [{"path": "args.a", "op": "exists", "value": False}]}})
    )
    check(engine.decide("i", "t", None), ALLOW, "/tools/t")


# -- step 6: schema ------------------------------------------------------------------


def test_schema_failure_names_the_argument_and_constraint(
    qflow_tools: list[dict[str, Any]],
) -> None:
    schema = next(t["inputSchema"] for t in qflow_tools if t["name"] == "qflow_task_batch")
    engine = PolicyEngine(policy({"qflow_task_batch": {"schema": schema}}))
    check(
        engine.decide("i", "qflow_task_batch", {"action": "create", "tasks": [{"title": "a"}]}),
        ALLOW,
        "/tools/qflow_task_batch",
    )
    d = engine.decide(
        "i", "qflow_task_batch", {"action": "create", "tasks": [{"title": "a", "priority": 11}]}
    )
    check(d, DENY, "/tools/qflow_task_batch/schema", "args.tasks.0.priority")
    assert "maximum" in d.reason
    d = engine.decide("i", "qflow_task_batch", {"tasks": []})
    check(d, DENY, "/tools/qflow_task_batch/schema", "'action' is a required property")


# -- steps 7-11 ------------------------------------------------------------------------


def test_order_all_tools_before_tool_and_require_before_deny_if_before_approval() -> None:
    tools = {
        "t": {
            "require": [{"path": "args.ok", "op": "eq", "value": True}],
            "deny_if": [{"conditions": [{"path": "args.bad", "op": "eq", "value": True}]}],
            "approve_if": [{"conditions": [{"path": "args.big", "op": "eq", "value": True}]}],
        }
    }
    all_tools = {
        "require": [
            {"conditions": [{"path": "args.team", "op": "exists"}], "on_deny": "Name a team."}
        ],
        "deny_if": [{"conditions": [{"path": "args.team", "op": "eq", "value": "evil"}]}],
        "approve_if": [{"conditions": [{"path": "args.team", "op": "eq", "value": "new"}]}],
    }
    engine = PolicyEngine(policy(tools, all_tools=all_tools))
    base = {"ok": True, "team": "core"}
    check(engine.decide("i", "t", {}), DENY, "/all_tools/require/0", "Name a team.")
    check(engine.decide("i", "t", {"team": "core"}), DENY, "/tools/t/require/0")
    check(
        engine.decide("i", "t", {**base, "team": "evil", "bad": True}), DENY, "/all_tools/deny_if/0"
    )
    check(engine.decide("i", "t", {**base, "bad": True, "big": True}), DENY, "/tools/t/deny_if/0")
    check(
        engine.decide("i", "t", {**base, "team": "new", "big": True}),
        APPROVAL,
        "/all_tools/approve_if/0",
    )
    check(engine.decide("i", "t", {**base, "big": True}), APPROVAL, "/tools/t/approve_if/0")
    check(engine.decide("i", "t", {**base, "big": True}, approved=True), ALLOW, "/tools/t")
    check(engine.decide("i", "t", base), ALLOW, "/tools/t")


def test_all_tools_applies_to_tools_that_fall_to_default_allow() -> None:
    engine = PolicyEngine(
        policy(
            default="allow",
            all_tools={
                "deny_if": [
                    {"conditions": [{"path": "tool", "op": "ends_with", "value": "_delete"}]}
                ]
            },
        )
    )
    check(engine.decide("i", "task_delete"), DENY, "/all_tools/deny_if/0")
    check(engine.decide("i", "task_list"), ALLOW, "/default")


def test_rule_reasons_rule_then_tool_then_generated() -> None:
    engine = PolicyEngine(
        policy(
            {
                "a": {
                    "on_deny": "Tool says no.",
                    "deny_if": [{"conditions": [], "on_deny": "Rule says no."}],
                },
                "b": {"on_deny": "Tool says no.", "deny_if": [{"conditions": []}]},
                "c": {"deny_if": [{"conditions": [{"path": "args.x", "op": "eq", "value": 1}]}]},
                "d": {"approve_if": [{"conditions": []}]},
            }
        )
    )
    check(engine.decide("i", "a"), DENY, "/tools/a/deny_if/0", "Rule says no.")
    check(engine.decide("i", "b"), DENY, "/tools/b/deny_if/0", "Tool says no.")
    d = engine.decide("i", "c", {"x": 1})
    check(d, DENY, "/tools/c/deny_if/0", "'c'")
    assert "args.x eq 1" in d.reason
    check(engine.decide("i", "d"), APPROVAL, "/tools/d/approve_if/0", "approval")


def test_bare_condition_in_require_is_a_rule() -> None:
    engine = PolicyEngine(
        policy({"t": {"require": [{"path": "args.root", "op": "starts_with", "value": "/srv/"}]}})
    )
    check(engine.decide("i", "t", {"root": "/srv/x"}), ALLOW, "/tools/t")
    check(
        engine.decide("i", "t", {"root": "/etc"}),
        DENY,
        "/tools/t/require/0",
        "args.root starts_with",
    )


def test_the_example_of_the_format() -> None:
    engine = PolicyEngine(SPEC_EXAMPLE)
    check(engine.decide("a", "qflow_task_delete", {"taskId": "1"}), DENY, "/hide/0")
    check(engine.decide("a", "qflow_task_next", {}), ALLOW, "/tools/qflow_task_next")
    check(
        engine.decide("a", "qflow_task_batch", {"action": "rewrite"}),
        DENY,
        "/tools/qflow_task_batch/deny_if/0",
        "Rewrites are not allowed.",
    )
    check(
        engine.decide("a", "qflow_task_batch", {"action": "nope"}),
        DENY,
        "/tools/qflow_task_batch/schema",
    )
    check(
        engine.decide("a", "qflow_task_batch", {"action": "create", "tasks": [{}] * 21}),
        APPROVAL,
        "/tools/qflow_task_batch/approve_if/0",
        "Large batches need a human.",
    )
    check(
        engine.decide("a", "qflow_task_batch", {"action": "create", "tasks": [{}] * 3}),
        ALLOW,
        "/tools/qflow_task_batch",
    )
    check(engine.decide("a", "qflow_spec_apply", {}), APPROVAL, "/tools/qflow_spec_*/action")
    check(engine.decide("a", "qflow_memory", {}), DENY, "/default")


def test_the_shipped_example_policy() -> None:
    engine = PolicyEngine.from_file(EXAMPLES / "qflow-policy.json")
    root = {"projectRoot": "/srv/projects/demo"}
    check(
        engine.decide(
            "a", "qflow_task_batch", {**root, "action": "create", "tasks": [{"title": "x"}]}
        ),
        ALLOW,
        "/tools/qflow_task_batch",
    )
    check(
        engine.decide("a", "qflow_task_batch", {"projectRoot": "/etc", "action": "create"}),
        DENY,
        "/tools/qflow_task_batch/require/0",
    )
    check(
        engine.decide("a", "qflow_workspace", {"action": "merge"}),
        DENY,
        "/tools/qflow_workspace/deny_if/0",
        "people, not agents",
    )
    check(engine.decide("a", "qflow_spec_status", {}), ALLOW, "/tools/qflow_spec_status")
    check(
        engine.decide("a", "qflow_spec_apply", {}),
        APPROVAL,
        "/tools/qflow_spec_*/action",
        "Spec changes",
    )


# -- bundles and grants ------------------------------------------------------------


def test_bundle_grants() -> None:
    engine = PolicyEngine(BUNDLE_EXAMPLE)
    check(engine.decide("alice-laptop", "qflow_task_delete"), ALLOW, "/policies/full/default")
    check(
        engine.decide("ci-42", "qflow_task_list"), ALLOW, "/policies/readonly/tools/qflow_task_list"
    )
    check(engine.decide("ci-42", "qflow_task_delete"), DENY, "/policies/readonly/default")
    check(engine.decide("mallory", "qflow_task_list"), DENY, "/grants", "no grant")
    assert "mallory" in engine.decide("mallory", "x").reason


def test_grant_precedence() -> None:
    doc = {
        "version": "1",
        "policies": {
            "a": {"version": "1", "default": "allow"},
            "b": {"version": "1", "default": "deny"},
            "c": {"version": "1", "default": "deny", "tools": {"t": {}}},
        },
        "grants": {"*": "b", "ci-*": "a", "ci-?": "c", "ci-special": "b"},
    }
    engine = PolicyEngine(doc)
    check(engine.decide("ci-special", "t"), DENY, "/policies/b/default")
    check(
        engine.decide("ci-7", "t"), ALLOW, "/policies/a/default"
    )  # 'ci-*' and 'ci-?' tie; 'ci-*' comes first
    check(engine.decide("ci-long", "t"), ALLOW, "/policies/a/default")
    check(engine.decide("zed", "t"), DENY, "/policies/b/default")


def test_grant_glob_tie_goes_to_file_order() -> None:
    doc = {
        "version": "1",
        "policies": {
            "a": {"version": "1", "default": "allow"},
            "b": {"version": "1", "default": "deny"},
        },
        "grants": {"ci-?": "b", "ci-*": "a"},
    }
    check(PolicyEngine(doc).decide("ci-7", "t"), DENY, "/policies/b/default")
    doc["grants"] = {"ci-*": "a", "ci-?": "b"}
    check(PolicyEngine(doc).decide("ci-7", "t"), ALLOW, "/policies/a/default")


# -- shadow mode ----------------------------------------------------------------------


def test_shadow_mode_lets_everything_through_and_reports_the_would_be_effect() -> None:
    engine = PolicyEngine(policy({"p": {"action": "approve"}}, hide=["h"], mode="shadow"))
    for tool, effect in [("h", DENY), ("p", APPROVAL), ("zzz", DENY)]:
        d = engine.decide("i", tool, {})
        assert (d.effect, d.allowed, d.enforced) == (effect, True, False)
    d = engine.decide("i", "p", [1])
    assert (d.effect, d.allowed, d.enforced) == (DENY, True, False)
    assert engine.visible_tools("i", ["h", "p", "zzz"]) == ["h", "p", "zzz"]
    assert "shadow mode" in str(engine.explain("i", "h"))


def test_shadow_policy_inside_a_bundle() -> None:
    doc = {
        "version": "1",
        "policies": {
            "trial": {"version": "1", "default": "deny", "mode": "shadow"},
            "prod": {"version": "1", "default": "deny"},
        },
        "grants": {"beta-*": "trial", "*": "prod"},
    }
    engine = PolicyEngine(doc)
    assert engine.decide("beta-1", "t").allowed is True
    assert engine.decide("other", "t").allowed is False


# -- visible_tools ---------------------------------------------------------------------


def test_visible_tools_drops_hidden_and_default_denied(qflow_tools: list[dict[str, Any]]) -> None:
    names = [t["name"] for t in qflow_tools]
    engine = PolicyEngine.from_file(EXAMPLES / "qflow-policy.json")
    visible = engine.visible_tools("alice", names)
    assert "qflow_task_delete" not in visible  # hidden
    assert "qflow_memory" not in visible  # default deny
    listed = {"qflow_task_batch", "qflow_spec_apply", "qflow_task_next", "qflow_workspace"}
    assert listed <= set(visible)
    assert visible == [n for n in names if n in visible]  # order kept


def test_visible_tools_keeps_tools_that_are_visible_but_always_denied() -> None:
    # The format: `action: deny` is "visible but always denied"; only `hide` hides.
    engine = PolicyEngine(
        policy(
            {"a": {"action": "deny"}, "b": {"deny_if": [{"conditions": []}]}, "c": {}},
            hide=["h*"],
        )
    )
    assert engine.visible_tools("i", ["a", "b", "c", "d", "hx"]) == ["a", "b", "c"]
    gated = PolicyEngine(
        policy(
            default="allow",
            all_tools={"deny_if": [{"conditions": [], "on_deny": "Requires human approval."}]},
        )
    )
    assert gated.visible_tools("i", ["a"]) == ["a"]
    assert gated.decide("i", "a").reason == "Requires human approval."


def test_visible_tools_for_an_identity_without_grant() -> None:
    engine = PolicyEngine(BUNDLE_EXAMPLE)
    assert engine.visible_tools("nobody", ["qflow_task_list"]) == []
    assert engine.visible_tools("ci-1", ["qflow_task_list", "x"]) == ["qflow_task_list"]


# -- explain ---------------------------------------------------------------------------


def test_explain_gives_the_decision_and_every_step() -> None:
    engine = PolicyEngine(SPEC_EXAMPLE)
    args = {"action": "create", "tasks": [{}] * 2}
    ex = engine.explain("a", "qflow_task_batch", args)
    assert ex.decision == engine.decide("a", "qflow_task_batch", args)
    pointers = [s.pointer for s in ex.steps]
    assert pointers[:4] == [
        "/tools/qflow_task_batch",
        "/tools/qflow_task_batch/schema",
        "/tools/qflow_task_batch/deny_if/0",
        "/tools/qflow_task_batch/approve_if/0",
    ]
    text = str(ex)
    assert text.startswith("ALLOW 'qflow_task_batch' at /tools/qflow_task_batch")
    assert 'deny_if/0: did not hold (args.action eq "rewrite")' in text
    hidden = engine.explain("a", "qflow_task_delete")
    assert hidden.decision.rule == "/hide/0" and "hidden" in str(hidden)


def test_explain_in_a_bundle_shows_the_grant() -> None:
    engine = PolicyEngine(BUNDLE_EXAMPLE)
    assert engine.explain("ci-9", "qflow_task_list").steps[0].pointer == "/grants/ci-*"
    assert engine.explain("zz", "qflow_task_list").decision.rule == "/grants"


# -- reload ----------------------------------------------------------------------------


def test_reload_swaps_the_policy_and_a_bad_one_keeps_the_old(tmp_path: Path) -> None:
    engine = PolicyEngine(policy({"a": {}}))
    check(engine.decide("i", "b"), DENY, "/default")
    engine.reload(policy({"b": {}}))
    check(engine.decide("i", "b"), ALLOW, "/tools/b")
    with pytest.raises(PolicyError):
        engine.reload({"version": "1", "default": "perhaps"})
    check(engine.decide("i", "b"), ALLOW, "/tools/b")
    file = tmp_path / "p.json"
    file.write_text(json.dumps(policy({"c": {}})), "utf-8")
    engine.reload(file)
    check(engine.decide("i", "c"), ALLOW, "/tools/c")
    assert engine.policy.source == str(file)


def test_reload_under_concurrent_decisions_is_atomic() -> None:
    a = policy({"t": {"deny_if": [{"conditions": [], "on_deny": "A."}]}})
    b = policy({"t": {"action": "approve", "on_deny": "B."}})
    engine = PolicyEngine(a)
    seen: set[tuple[str, str]] = set()
    stop = threading.Event()

    def decide_loop() -> None:
        while not stop.is_set():
            d = engine.decide("i", "t", {})
            seen.add((d.rule, d.reason))

    threads = [threading.Thread(target=decide_loop) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        engine.reload(b if i % 2 else a)
    stop.set()
    for t in threads:
        t.join()
    assert seen <= {("/tools/t/deny_if/0", "A."), ("/tools/t/action", "B.")}


# -- inputs that are not what the signature says ---------------------------------------


def test_odd_tool_names_identities_and_sessions_deny_at_the_root() -> None:
    engine = PolicyEngine(policy(default="allow"))
    check(engine.decide("i", 5, {}), DENY, "", "tool name must be a string")  # type: ignore[arg-type]
    check(engine.decide(None, "t", {}), DENY, "", "identity must be a string")  # type: ignore[arg-type]
    check(engine.decide("i", "t", {}, session=3), DENY, "", "session must be")  # type: ignore[arg-type]

    class Name(str):
        pass

    check(engine.decide(Name("i"), Name("t"), {}), ALLOW, "/default")


class BrokenStore:
    """A store with a bug: it raises what no store should (not StoreUnavailable)."""

    def take(self, charges: Any) -> Any:
        raise RuntimeError("kaboom")

    check = take
    refund = take


def _broken_engine() -> PolicyEngine:
    doc = policy({"t": {"limits": [{"window": "minute", "max": 5}]}})
    return PolicyEngine(load_policy(doc), store=BrokenStore())


def test_an_internal_failure_denies_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    engine = _broken_engine()
    d = engine.decide("i", "t", {"a": 1})
    check(d, DENY, "", "failed while deciding")
    assert engine.internal_failures == 1
    assert "kaboom" in caplog.text


def test_a_dict_subclass_is_judged_by_what_it_holds() -> None:
    class Sly(dict[str, Any]):
        """Answers every lookup with a harmless value, whatever it holds."""

        def get(self, *a: Any) -> Any:
            return 2

        def __getitem__(self, key: str) -> Any:
            return 2

    engine = PolicyEngine(
        policy({"t": {"deny_if": [{"conditions": [{"path": "args.a", "op": "eq", "value": 1}]}]}})
    )
    check(engine.decide("i", "t", Sly(a=1)), DENY, "/tools/t/deny_if/0", "args.a eq 1")
    check(engine.decide("i", "t", Sly(a=2)), ALLOW, "/tools/t")


def test_a_tool_named_with_x_dash_is_reached_by_a_class_glob() -> None:
    engine = PolicyEngine(policy({"x[-]search": {}}))
    check(engine.decide("i", "x-search"), ALLOW, "/tools/x[-]search")


def test_rule_names_appear_in_reasons_and_explanations() -> None:
    rule = {"name": "no-rw", "conditions": [{"path": "args.a", "op": "eq", "value": 1}]}
    engine = PolicyEngine(policy({"t": {"deny_if": [rule]}}))
    d = engine.decide("i", "t", {"a": 1})
    check(d, DENY, "/tools/t/deny_if/0", "(rule 'no-rw' at /tools/t/deny_if/0)")
    assert "('no-rw': args.a eq 1)" in str(engine.explain("i", "t", {"a": 2}))


def test_path_traversal_in_the_example_policy_is_denied() -> None:
    engine = PolicyEngine.from_file(EXAMPLES / "qflow-policy.json")
    for root in ["/srv/projects/../../etc", "/srv/projects/..", "/srv/projects/a/../b"]:
        d = engine.decide("a", "qflow_task_batch", {"projectRoot": root, "action": "create"})
        check(d, DENY, "/tools/qflow_task_batch/deny_if/0", "must not contain '..'")
    ok = engine.decide(
        "a", "qflow_task_batch", {"projectRoot": "/srv/projects/a..b", "action": "status"}
    )
    check(ok, ALLOW, "/tools/qflow_task_batch")


def test_explain_with_a_str_subclass_takes_no_tokens() -> None:
    class Name(str):
        pass

    engine = PolicyEngine(policy({"t": {"limits": [{"window": "hour", "max": 1}]}}))
    for _ in range(3):
        assert engine.explain(Name("i"), Name("t")).decision.effect is ALLOW
    check(engine.decide("i", "t"), ALLOW, "/tools/t")


def test_arguments_nested_too_deeply_are_denied_with_a_reason() -> None:
    schema = {
        "properties": {"deep": {"$ref": "#/$defs/n"}},
        "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
    }
    engine = PolicyEngine(policy({"t": {"schema": schema}}))
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    d = engine.decide("i", "t", {"deep": deep})
    ex = engine.explain("i", "t", {"deep": deep})
    check(d, DENY, "/tools/t", "nested too deeply")
    assert ex.decision == d and engine.internal_failures == 0
    assert engine.decide("i", "t", {"deep": [[]]}).effect is ALLOW


def test_odd_input_in_shadow_mode_goes_through() -> None:
    engine = PolicyEngine(policy(mode="shadow"))
    d = engine.decide("i", 7, {})  # type: ignore[arg-type]
    assert (d.effect, d.allowed, d.enforced) == (DENY, True, False)


def test_explain_fails_closed_like_decide() -> None:
    ex = _broken_engine().explain("i", "t", {"a": 1})
    check(ex.decision, DENY, "", "failed while deciding")
    assert ex.steps[-1].outcome == "engine failure: deny"


def test_a_value_that_claims_to_be_a_str_is_not_taken_for_one() -> None:
    class Impostor:
        """Claims to be a str through a __class__ property and to equal everything."""

        __class__ = property(lambda self: str)

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("guest")

    engine = PolicyEngine(
        policy(
            {
                "admin_only": {"require": [{"path": "args.role", "op": "eq", "value": "admin"}]},
                "no_guests": {
                    "deny_if": [
                        {"conditions": [{"path": "args.role", "op": "in", "value": ["guest"]}]}
                    ]
                },
                "short": {"require": [{"path": "args.role", "op": "len_lte", "value": 5}]},
            }
        )
    )
    for tool in ("admin_only", "no_guests", "short"):
        decision = engine.decide("i", tool, {"role": Impostor()})
        assert decision.effect is Effect.DENY, (tool, decision)
        explained = engine.explain("i", tool, {"role": Impostor()})
        assert explained.decision.effect is Effect.DENY, (tool, explained)
