"""risk: classification of MCP tools and the starter policy of `policylayer suggest`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policylayer_core import Effect, PolicyEngine, load_policy
from policylayer_core.lint import lint
from policylayer_core.risk import (
    Category,
    Severity,
    classify,
    read_tools,
    suggest_policy,
    tool_key,
)

R, W, X, F, D = (
    Category.READ,
    Category.WRITE,
    Category.EXECUTE,
    Category.FINANCIAL,
    Category.DESTRUCTIVE,
)


def tool(name: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, **extra}


def action_tool(name: str, values: list[str], *, required: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"action": {"type": "string", "enum": values}},
    }
    if required:
        schema["required"] = ["action"]
    return tool(name, inputSchema=schema)


# -- the real qflow server ------------------------------------------------------------------


def test_every_qflow_tool_gets_a_category(qflow_tools: list[dict[str, Any]]) -> None:
    found = {c.name: c for c in map(classify, qflow_tools)}
    assert len(found) == 50
    assert all(isinstance(c.category, Category) and c.reasons for c in found.values())
    counts = {cat: sum(c.category is cat for c in found.values()) for cat in Category}
    assert counts == {R: 16, W: 25, X: 4, F: 0, D: 5}


def test_qflow_read_only_tools_are_read(qflow_tools: list[dict[str, Any]]) -> None:
    read_only = [t for t in qflow_tools if (t.get("annotations") or {}).get("readOnlyHint")]
    assert len(read_only) == 16
    for t in read_only:
        c = classify(t)
        assert (c.category, c.severity) == (R, Severity.LOW), t["name"]


def test_qflow_task_delete_is_destructive_and_hidden(qflow_tools: list[dict[str, Any]]) -> None:
    (delete,) = [t for t in qflow_tools if t["name"] == "qflow_task_delete"]
    c = classify(delete)
    assert (c.category, c.severity) == (D, Severity.CRITICAL)
    assert c.reasons[0] == "annotation destructiveHint: true"
    policy, _ = suggest_policy(qflow_tools)
    assert "qflow_task_delete" in policy["hide"]
    engine = PolicyEngine.from_dict(policy)
    assert engine.decide("a", "qflow_task_delete", {"taskId": "T1"}).rule == "/hide/0"


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("qflow_task_batch", W),
        ("qflow_workflow", X),
        ("qflow_autopilot", X),
        ("qflow_tdd", X),
        ("qflow_sprint", W),
        ("qflow_review", W),
        ("qflow_task_create", W),
        ("qflow_parse_prd", W),  # only the description says what it does: 生成
        ("qflow_spec_propose", W),  # "Delta" in its description is not "del"
        ("qflow_spec_apply", W),  # "REMOVED" in capitals names a kind of change
        ("qflow_plan_generate", W),  # "快速启动" (a quick-start section) does not make it Execute
        ("qflow_use_tag", W),
        ("qflow_workspace", D),
        ("qflow_tag_manage", D),
        ("qflow_plugin", D),
    ],
)
def test_qflow_batch_workflow_and_other_tools(
    qflow_tools: list[dict[str, Any]], name: str, category: Category
) -> None:
    (found,) = [classify(t) for t in qflow_tools if t["name"] == name]
    assert found.category is category, found.reasons


def test_qflow_severities(qflow_tools: list[dict[str, Any]]) -> None:
    found = {c.name: c for c in map(classify, qflow_tools)}
    assert found["qflow_task_batch"].severity is Severity.HIGH  # 批量: bulk
    assert found["qflow_tdd"].severity is Severity.CRITICAL  # testCommand: runs a command
    assert found["qflow_workflow"].severity is Severity.HIGH
    assert found["qflow_workspace"].severity is Severity.HIGH  # only 'merge' destroys
    assert found["qflow_task_create"].severity is Severity.MEDIUM


def test_qflow_partially_destructive_tools(qflow_tools: list[dict[str, Any]]) -> None:
    found = {c.name: c for c in map(classify, qflow_tools)}
    workspace = found["qflow_workspace"]
    assert (workspace.action_property, workspace.risky_values, workspace.rest) == (
        "action",
        ("merge",),
        W,
    )
    assert found["qflow_tag_manage"].risky_values == ("remove", "delete")
    assert found["qflow_plugin"].rest is X  # install
    assert found["qflow_task_delete"].risky_values == ()


def test_the_qflow_policy_loads_and_passes_check(qflow_tools: list[dict[str, Any]]) -> None:
    names = [t["name"] for t in qflow_tools]
    for args_rules in (False, True):
        policy, _ = suggest_policy(qflow_tools, args_rules=args_rules, server="qflow")
        assert lint(load_policy(json.dumps(policy)), names) == []
        assert policy["description"].startswith("A starter policy for the qflow server's 50 tools")


def test_suggest_is_deterministic(qflow_tools: list[dict[str, Any]]) -> None:
    first = json.dumps(suggest_policy(qflow_tools)[0])
    assert first == json.dumps(suggest_policy(list(qflow_tools))[0])


def test_args_rules_on_qflow_workspace(qflow_tools: list[dict[str, Any]]) -> None:
    policy, _ = suggest_policy(qflow_tools, args_rules=True)
    entry = policy["tools"]["qflow_workspace"]
    assert entry["x-category"] == "Destructive"
    assert entry["approve_if"][0]["conditions"] == [
        {"path": "args.action", "op": "in", "value": ["merge"]}
    ]
    assert "qflow_workspace" not in policy["hide"]
    engine = PolicyEngine.from_dict(policy)
    merge = engine.decide("a", "qflow_workspace", {"action": "merge"})
    assert merge.effect is Effect.APPROVAL_REQUIRED
    assert merge.rule == "/tools/qflow_workspace/approve_if/0"
    assert engine.decide("a", "qflow_workspace", {"action": "status"}).effect is Effect.ALLOW
    # a spelling the server does not list is denied by the enum, not let through
    assert engine.decide("a", "qflow_workspace", {"action": "MERGE"}).effect is Effect.DENY
    assert engine.decide("a", "qflow_task_delete").rule == "/hide/0"


# -- the rules, one by one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("get_user", R),
        ("list_invoices", R),  # names are not stemmed: 'invoices' is a noun here, 'list' the verb
        ("send_invoice", F),
        ("create_user", W),
        ("setStatus", W),
        ("run_script", X),
        ("deploy", X),
        ("drop_table", D),
        ("purgeCache", D),
        ("pay_invoice", F),
        ("refund", F),
        ("transfer_funds", F),
    ],
)
def test_name_words(name: str, category: Category) -> None:
    assert classify(tool(name)).category is category


@pytest.mark.parametrize(
    ("description", "category"),
    [
        ("删除指定的记录。", D),
        ("清空回收站", D),
        ("创建一个新项目", W),
        ("执行测试命令", X),
        ("发起支付并转账", F),
        ("レコードを削除します。", D),
        ("新しいタスクを作成します。", W),
        ("スクリプトを実行します。", X),
        ("請求書の支払いを行います。", F),
        ("Deletes the record for good.", D),
        ("Runs the nightly job.", X),
        ("Refunds a payment.", F),
        ("Shows deleted items.", R),  # "deleted" describes the items, not the tool
        ("Applies RENAMED and REMOVED changes.", W),  # capitals name identifiers
        ("Does something.", W),  # no signal at all: the cautious guess
    ],
)
def test_description_keywords(description: str, category: Category) -> None:
    assert classify(tool("widget", description)).category is category


def test_description_only_counts_fully_when_name_and_schema_are_silent() -> None:
    # The name says Write; "启动" (start) in the description does not raise it to Execute.
    assert classify(tool("plan_generate", "生成计划（含快速启动）")).category is W
    # The name says Read; the description's Write word raises it.
    assert classify(tool("get_data", "Gets data and updates the cache.")).category is W
    # Destructive and Financial words of the description always count.
    assert classify(tool("update_record", "Updates or deletes a record.")).category is D


def test_no_signal_is_write() -> None:
    c = classify(tool("qflow_scope_navigate"))
    assert (c.category, c.severity) == (W, Severity.MEDIUM)
    assert "assumed to write" in c.reasons[0]


def test_annotations() -> None:
    read = classify(tool("widget", "执行一次检查", annotations={"readOnlyHint": True}))
    assert read.category is R  # the description cannot overrule readOnlyHint
    liar = classify(tool("delete_all", annotations={"readOnlyHint": True}))
    assert liar.category is D and "riskier wins" in liar.reasons[1]
    assert classify(tool("widget", annotations={"destructiveHint": True})).category is D
    additive = classify(
        tool("widget", "Removes stale entries.", annotations={"destructiveHint": False})
    )
    assert additive.category is W


def test_severity_moves_with_open_world_and_idempotent_hints() -> None:
    assert (
        classify(tool("get_page", annotations={"openWorldHint": True})).severity is Severity.MEDIUM
    )
    assert classify(tool("set_flag", annotations={"idempotentHint": True})).severity is Severity.LOW
    assert (
        classify(tool("run_job", annotations={"openWorldHint": True})).severity is Severity.CRITICAL
    )
    assert classify(tool("batch_update")).severity is Severity.HIGH
    assert classify(tool("pay")).severity is Severity.CRITICAL


def test_action_enum_hints() -> None:
    c = classify(action_tool("repo", ["list", "merge"]))
    assert (c.category, c.risky_values, c.rest) == (D, ("merge",), R)
    unknown = classify(action_tool("repo", ["list", "archive", "delete"]))
    assert (unknown.risky_values, unknown.rest) == (("delete",), W)  # 'archive' may write
    assert classify(action_tool("svc", ["frobnicate", "status"])).category is W
    only_bad = classify(action_tool("repo", ["delete", "purge"]))
    assert (only_bad.category, only_bad.risky_values, only_bad.rest) == (D, (), None)
    assert classify(action_tool("jobs", ["start", "status"])).category is X
    # an enum on a property named like a command is an action, not a free command
    enum_command = tool(
        "svc", inputSchema={"properties": {"command": {"enum": ["status", "list"]}}}
    )
    assert classify(enum_command).category is R
    free = classify(tool("svc", inputSchema={"properties": {"shellCommand": {"type": "string"}}}))
    assert (free.category, free.severity) == (X, Severity.CRITICAL)


def test_financial_tools_need_approval() -> None:
    policy, _ = suggest_policy([tool("charge_card"), tool("get_balance")])
    assert policy["tools"]["charge_card"]["action"] == "approve"
    engine = PolicyEngine.from_dict(policy)
    assert engine.decide("a", "charge_card", {}).effect is Effect.APPROVAL_REQUIRED
    assert engine.decide("a", "get_balance", {}).effect is Effect.ALLOW


def test_recommended_rules_per_category() -> None:
    policy, _ = suggest_policy([tool("get_a"), tool("set_b"), tool("run_c"), tool("delete_d")])
    tools = policy["tools"]
    assert {k for k in tools["get_a"] if not k.startswith("x-")} == set()
    assert tools["set_b"]["limits"] == [
        {"counter": "set_b", "window": "minute", "max": 30, "scope": "grant"}
    ]
    assert tools["run_c"]["limits"][0]["max"] == 10
    # A hidden tool has only its hide entry: a tools entry behind it could never be reached.
    assert "delete_d" not in tools and policy["hide"] == ["delete_d"]
    assert policy["x-hidden"]["delete_d"]["x-category"] == "Destructive"
    assert {tools[k]["x-category"] for k in tools} == {"Read", "Write", "Execute"}
    assert policy["default"] == "deny"


def test_args_rules_with_an_optional_action_asks_when_it_is_missing() -> None:
    policy, _ = suggest_policy(
        [action_tool("repo", ["list", "delete"], required=False)], args_rules=True
    )
    entry = policy["tools"]["repo"]
    assert "required" not in entry["schema"]
    engine = PolicyEngine.from_dict(policy)
    assert engine.decide("a", "repo", {}).rule == "/tools/repo/approve_if/1"
    assert engine.decide("a", "repo", {"action": "list"}).effect is Effect.ALLOW
    assert engine.decide("a", "repo", {"action": "delete"}).effect is Effect.APPROVAL_REQUIRED


@pytest.mark.parametrize(
    ("name", "key"),
    [("plain", "plain"), ("a*b", "a[*]b"), ("q?[x]", "q[?][[]x]"), ("x-search", "x[-]search")],
)
def test_tool_keys_match_exactly_the_name(name: str, key: str) -> None:
    assert tool_key(name) == key
    policy, _ = suggest_policy(
        [tool("get_" + name), tool(name, annotations={"readOnlyHint": True})]
    )
    engine = PolicyEngine.from_dict(policy)
    assert engine.decide("a", name).effect is Effect.ALLOW
    assert engine.decide("a", name + "z").effect is Effect.DENY


def test_read_tools_shapes_and_errors() -> None:
    tools = [tool("a"), tool("b"), tool("a", "again")]
    assert [t["name"] for t in read_tools(tools)] == ["a", "b"]
    assert len(read_tools({"tools": tools})) == 2
    assert len(read_tools({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})) == 2
    with pytest.raises(ValueError, match="neither a tools/list result"):
        read_tools({"name": "a"})
    with pytest.raises(ValueError, match="the tool at index 1 has no name"):
        read_tools([tool("a"), {"description": "x"}])


def test_tools_dumped_by_the_python_sdk_are_read_in_either_spelling() -> None:
    """mcp 2.x / fastmcp 4.x `model_dump()` writes snake_case keys and None for unset ones."""
    dumped = {
        "name": "wipe",
        "title": None,
        "description": "Does a thing.",
        "input_schema": {"type": "object"},
        "output_schema": None,
        "execution": None,
        "icons": None,
        "meta": None,
        "annotations": {
            "title": None,
            "read_only_hint": None,
            "destructive_hint": True,
            "idempotent_hint": None,
            "open_world_hint": None,
        },
    }
    warnings: list[str] = []
    tools = read_tools({"tools": [dumped]}, warnings)
    assert warnings == []
    assert tools[0]["inputSchema"] == {"type": "object"}
    assert tools[0]["annotations"]["destructiveHint"] is True
    assert classify(tools[0]).category is Category.DESTRUCTIVE
    policy, _ = suggest_policy(tools)
    assert policy["hide"] == ["wipe"]


def test_keys_suggest_does_not_know_are_warned_about() -> None:
    warnings: list[str] = []
    read_tools(
        [{"name": "t", "inputschema": {}, "annotations": {"destructivehint": True}}], warnings
    )
    assert warnings == [
        "The tool 't': the key 'inputschema' is not one that suggest knows, so it is "
        "ignored. Did you mean 'inputSchema'?",
        "The annotations of the tool 't': the key 'destructivehint' is not one that suggest "
        "knows, so it is ignored. Did you mean 'destructiveHint'?",
    ]


def test_a_suggested_policy_can_be_covered_completely(
    qflow_tools: list[dict[str, Any]], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policylayer test --fail-under 100` can pass on suggest's own starter policy."""
    from policylayer_core.cli import main  # noqa: PLC0415

    policy, _ = suggest_policy(qflow_tools)
    (tmp_path / "starter.json").write_text(json.dumps(policy), encoding="utf-8")
    engine = PolicyEngine.from_dict(policy)
    calls = [(t["name"], {}) for t in qflow_tools] + [("not_a_qflow_tool", {})]
    steps = [
        {"identity": "a", "tool": name, "args": args, "expect": {"effect": effect}}
        for name, args in calls
        for effect in [engine.decide("a", name, args).effect.value]
    ]
    cases = {"policy": "starter.json", "cases": [{"name": "every tool once", "steps": steps}]}
    (tmp_path / "starter.policytest.json").write_text(json.dumps(cases), encoding="utf-8")
    code = main(["test", str(tmp_path / "starter.json"), "--fail-under", "100"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
