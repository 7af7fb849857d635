"""The FastMCP integration, end to end: a real FastMCP server and a real fastmcp.Client, in
memory, on both protocol eras (`mode="auto"` negotiates 2026-07-28, `mode="legacy"` the
2025-11-25 handshake). Real transports (stdio, a proxy) are in test_fastmcp_transport.py.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest

pytest.importorskip("fastmcp")

import mcp_types
from fastmcp import Client, Context, FastMCP
from fastmcp.exceptions import ToolError
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel

from conftest import EXAMPLES, FakeClock
from policylayer_core import Effect, MemoryStore, PolicyEngine
from policylayer_core._approvals import APPROVAL_KEY
from policylayer_core.audit import MemorySink
from policylayer_core.fastmcp import ApprovalRequest, PolicyMiddleware, policy_guard

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
ROOT = {"projectRoot": "/srv/projects/demo"}
DENIED = "[POLICY DENIED] "

POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "hide": ["qflow_task_delete"],
    "tools": {
        "qflow_task_list": {},
        "qflow_task_create": {"limits": [{"counter": "writes", "window": "minute", "max": 2}]},
        "qflow_task_batch": {
            "deny_if": [
                {
                    "conditions": [{"path": "args.action", "op": "eq", "value": "rewrite"}],
                    "on_deny": "Rewrites are not allowed.",
                }
            ],
            "approve_if": [
                {
                    "conditions": [{"path": "args.tasks", "op": "len_gt", "value": 2}],
                    "on_deny": "Large batches need a human.",
                }
            ],
            "limits": [{"counter": "batches", "window": "minute", "max": 1}],
        },
        "qflow_workspace": {"action": "deny", "on_deny": "Workspaces are managed by people."},
        "flaky": {"limits": [{"counter": "flaky", "window": "minute", "max": 1}]},
    },
}
BIG = {**ROOT, "action": "create", "tasks": [{"title": f"t{i}"} for i in range(3)]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Tools:
    """A FastMCP server with qflow-like tools that records every call that reached a tool."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.flaky_fails = True
        mcp = FastMCP("qflow-test")

        @mcp.tool
        def qflow_task_list(status: str | None = None) -> list[str]:
            self.runs.append(("qflow_task_list", {"status": status}))
            return ["T-1"]

        @mcp.tool
        def qflow_task_create(title: str) -> str:
            self.runs.append(("qflow_task_create", {"title": title}))
            return f"created {title}"

        @mcp.tool
        async def qflow_task_batch(
            action: str,
            projectRoot: str,  # noqa: N803 - qflow's own argument name
            tasks: list[dict[str, Any]] | None = None,
        ) -> str:
            self.runs.append(("qflow_task_batch", {"action": action, "tasks": tasks}))
            return f"{action} {len(tasks or [])}"

        @mcp.tool
        def qflow_task_delete(taskId: str) -> str:  # noqa: N803 - qflow's own argument name
            self.runs.append(("qflow_task_delete", {"taskId": taskId}))
            return "deleted"

        @mcp.tool
        def qflow_workspace(action: str) -> str:
            self.runs.append(("qflow_workspace", {"action": action}))
            return "ok"

        @mcp.tool
        def qflow_memory(action: str) -> str:
            self.runs.append(("qflow_memory", {"action": action}))
            return "ok"

        @mcp.tool
        def flaky() -> str:
            self.runs.append(("flaky", {}))
            if self.flaky_fails:
                raise ValueError("the backend is down")
            return "fine"

        self.mcp = mcp

    def names(self) -> list[str]:
        return [name for name, _ in self.runs]


def guarded(engine: PolicyEngine, **options: Any) -> Tools:
    tools = Tools()
    tools.mcp.add_middleware(PolicyMiddleware(engine, **options))
    return tools


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


Action = Literal["accept", "decline", "cancel"]


class Person:
    """An elicitation handler that answers from a script and remembers what it was asked."""

    def __init__(self, *answers: Action) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []
        self.schemas: list[Any] = []

    async def __call__(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(message)
        self.schemas.append((response_type, params.requested_schema))
        return mcp_types.ElicitResult(action=self.answers.pop(0))


# -- allow, deny, list ------------------------------------------------------------------------


@MODES
async def test_an_allowed_call_runs_once(mode: str) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY))
    async with Client(tools.mcp, mode=mode) as client:
        result = await client.call_tool("qflow_task_list", {"status": "pending"})
    assert result.data == ["T-1"]
    assert tools.runs == [("qflow_task_list", {"status": "pending"})]


@MODES
async def test_a_denied_call_never_reaches_the_tool(mode: str) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY))
    async with Client(tools.mcp, mode=mode) as client:
        result = await client.call_tool(
            "qflow_task_batch", {**ROOT, "action": "rewrite"}, raise_on_error=False
        )
        assert result.is_error
        assert text(result) == DENIED + "Rewrites are not allowed."
        with pytest.raises(ToolError) as raised:
            await client.call_tool("qflow_workspace", {"action": "merge"})
        assert str(raised.value) == DENIED + "Workspaces are managed by people."
        # hidden, and falling to the default
        for name in ("qflow_task_delete", "qflow_memory"):
            result = await client.call_tool(name, {"action": "x"}, raise_on_error=False)
            assert result.is_error
            assert text(result).startswith(DENIED)
    assert tools.runs == []


@MODES
async def test_hidden_and_default_denied_tools_are_not_listed(mode: str) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY))
    async with Client(tools.mcp, mode=mode) as client:
        listed = [tool.name for tool in await client.list_tools()]
    # qflow_task_delete is hidden, qflow_memory falls to "default": "deny"; qflow_workspace
    # (action: deny) stays visible, as the format says.
    assert listed == [
        "qflow_task_list",
        "qflow_task_create",
        "qflow_task_batch",
        "qflow_workspace",
        "flaky",
    ]


# -- rate limits and refunds ------------------------------------------------------------------


@MODES
async def test_rate_limits_use_the_engine_clock(mode: str, clock: FakeClock) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock))
    async with Client(tools.mcp, mode=mode) as client:
        for title in ("a", "b"):
            assert (await client.call_tool("qflow_task_create", {"title": title})).data
        limited = await client.call_tool("qflow_task_create", {"title": "c"}, raise_on_error=False)
        assert limited.is_error
        assert text(limited) == (
            DENIED + "Rate limit 'writes' (2 per minute) exceeded; retry in 30.0 s."
        )
        clock.advance(30.0)
        assert (await client.call_tool("qflow_task_create", {"title": "d"})).data == "created d"
    assert [args["title"] for _, args in tools.runs] == ["a", "b", "d"]


@MODES
async def test_a_failing_tool_gets_its_tokens_back_and_its_error_unchanged(
    mode: str, clock: FakeClock
) -> None:
    plain = Tools()
    async with Client(plain.mcp, mode=mode) as client:
        unguarded = await client.call_tool("flaky", {}, raise_on_error=False)
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock))
    async with Client(tools.mcp, mode=mode) as client:
        failed = await client.call_tool("flaky", {}, raise_on_error=False)
        assert failed.is_error
        assert text(failed) == text(unguarded)  # the tool's own error, as without the policy
        tools.flaky_fails = False
        # The limit is 1 a minute: the failed call gave its token back.
        assert (await client.call_tool("flaky", {})).data == "fine"
        limited = await client.call_tool("flaky", {}, raise_on_error=False)
        assert text(limited).startswith(DENIED + "Rate limit 'flaky'")
    assert tools.names() == ["flaky", "flaky"]


async def test_session_limits_count_per_session_only_where_sessions_exist() -> None:
    policy = {
        "version": "1",
        "default": "allow",
        "tools": {
            "qflow_task_list": {
                "limits": [{"counter": "s", "window": "hour", "max": 1, "scope": "session"}]
            }
        },
    }
    # Handshake era: each connection is a session with its own bucket.
    tools = guarded(PolicyEngine.from_dict(policy, clock=FakeClock()))
    for _ in range(2):
        async with Client(tools.mcp, mode="legacy") as client:
            assert (await client.call_tool("qflow_task_list", {})).data == ["T-1"]
            second = await client.call_tool("qflow_task_list", {}, raise_on_error=False)
            assert text(second).startswith(DENIED + "Rate limit 's'")
    # 2026-07-28: every request gets a new session id, which must not key a bucket: there
    # is no session, so the identity's one bucket applies across connections.
    tools = guarded(PolicyEngine.from_dict(policy, clock=FakeClock()))
    async with Client(tools.mcp) as client:
        assert (await client.call_tool("qflow_task_list", {})).data == ["T-1"]
    async with Client(tools.mcp) as client:
        second = await client.call_tool("qflow_task_list", {}, raise_on_error=False)
        assert text(second).startswith(DENIED + "Rate limit 's'")


# -- approvals by callback ------------------------------------------------------------------------


@MODES
async def test_approval_by_a_sync_callback(mode: str, clock: FakeClock) -> None:
    seen: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> bool:
        seen.append(request)
        return len(seen) == 1

    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver=approver)
    async with Client(tools.mcp, mode=mode) as client:
        assert (await client.call_tool("qflow_task_batch", BIG)).data == "create 3"
        clock.advance(60.0)
        refused = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
    assert text(refused) == DENIED + "Large batches need a human. The approver refused this call."
    request = seen[0]
    assert (request.identity, request.tool, request.args) == ("anonymous", "qflow_task_batch", BIG)
    assert request.decision.effect is Effect.APPROVAL_REQUIRED
    assert request.decision.reason == "Large batches need a human."
    assert tools.names() == ["qflow_task_batch"]


@MODES
async def test_approval_by_an_async_callback_still_applies_limits(
    mode: str, clock: FakeClock
) -> None:
    async def approver(request: ApprovalRequest) -> bool:
        return request.tool == "qflow_task_batch"

    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver=approver)
    async with Client(tools.mcp, mode=mode) as client:
        assert (await client.call_tool("qflow_task_batch", BIG)).data == "create 3"
        # approved again, but `batches` allows one a minute: approval skips only approval
        limited = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
        assert text(limited) == (
            DENIED + "Rate limit 'batches' (1 per minute) exceeded; retry in 60.0 s."
        )
    assert tools.names() == ["qflow_task_batch"]


async def test_no_approver_denies_with_the_rule_reason_and_a_failing_one_fails_closed() -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY))
    async with Client(tools.mcp) as client:
        result = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
    assert text(result) == DENIED + "Large batches need a human."

    def broken(request: ApprovalRequest) -> bool:
        raise RuntimeError("the approval service is down")

    tools = guarded(PolicyEngine.from_dict(POLICY), approver=broken)
    async with Client(tools.mcp) as client:
        result = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
    assert text(result) == (
        DENIED + "Large batches need a human. "
        "The approver failed (RuntimeError), so the call is denied."
    )
    assert tools.runs == []


def test_bad_options_are_refused_at_construction() -> None:
    engine = PolicyEngine.from_dict(POLICY)
    with pytest.raises(ValueError, match="approver must be"):
        PolicyMiddleware(engine, approver="ask")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="identify must be"):
        PolicyMiddleware(engine, identify="alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="approval_ttl"):
        PolicyMiddleware(engine, approver="elicit", approval_ttl=0)


# -- approvals by elicitation, both eras ----------------------------------------------------


@MODES
async def test_elicitation_accepted_and_declined(mode: str, clock: FakeClock) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit")
    person = Person("decline", "accept", "cancel")
    async with Client(tools.mcp, mode=mode, elicitation_handler=person) as client:
        declined = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
        assert text(declined) == (
            DENIED + "Large batches need a human. The person asked declined this call."
        )
        # A declined call took no token: the one `batches` token is still there.
        assert (await client.call_tool("qflow_task_batch", BIG)).data == "create 3"
        clock.advance(60.0)
        cancelled = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
        assert text(cancelled).endswith("dismissed the question without approving this call.")
    assert tools.names() == ["qflow_task_batch"]
    assert len(person.asked) == 3  # one question per call, on both eras
    message = person.asked[0]
    assert "'qflow_task_batch'" in message
    assert json.dumps(BIG, ensure_ascii=False, sort_keys=True) in message
    assert "Large batches need a human." in message
    # No requested fields: FastMCP's client hands the handler no response type.
    assert person.schemas[0] == (None, {"type": "object", "properties": {}})


@MODES
async def test_an_approved_call_takes_its_tokens_once(mode: str, clock: FakeClock) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit")
    person = Person("accept", "accept")
    async with Client(tools.mcp, mode=mode, elicitation_handler=person) as client:
        assert (await client.call_tool("qflow_task_batch", BIG)).data == "create 3"
        limited = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
    assert text(limited).startswith(DENIED + "Rate limit 'batches'")
    assert tools.names() == ["qflow_task_batch"]


@MODES
async def test_a_client_without_elicitation_gets_a_clean_denial(mode: str) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY), approver="elicit")
    async with Client(tools.mcp, mode=mode) as client:
        result = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
        assert result.is_error
        assert text(result) == (
            DENIED + "Large batches need a human. This client cannot ask a person for "
            "approval (it declared no form elicitation support)."
        )
        # calls that need no approval go through as usual
        assert (await client.call_tool("qflow_task_list", {})).data == ["T-1"]
    assert tools.names() == ["qflow_task_list"]


async def test_a_failing_elicitation_refuses_the_call() -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY), approver="elicit")

    async def broken(message: str, response_type: Any, params: Any, context: Any) -> Any:
        raise RuntimeError("the user's screen is locked")

    async with Client(tools.mcp, mode="legacy", elicitation_handler=broken) as client:
        result = await client.call_tool("qflow_task_batch", BIG, raise_on_error=False)
    assert text(result) == (
        DENIED + "Large batches need a human. Asking a person for approval failed (MCPError)."
    )
    assert tools.runs == []


@MODES
async def test_audit_events_are_recorded_on_the_round_that_decides(mode: str) -> None:
    sink = MemorySink()
    engine = PolicyEngine.from_dict(POLICY, audit=sink)
    tools = guarded(engine, approver="elicit")
    seen_while_asking: list[list[str]] = []

    async def person(message: str, response_type: Any, params: Any, context: Any) -> Any:
        engine.auditor.flush()  # type: ignore[union-attr]
        seen_while_asking.append([str(event.effect) for event in sink.events])
        return mcp_types.ElicitResult(action="accept")

    async with Client(tools.mcp, mode=mode, elicitation_handler=person) as client:
        assert (await client.call_tool("qflow_task_batch", BIG)).data == "create 3"
    engine.close()
    effects = [event.effect for event in sink.events]
    assert effects == ["approval_required", "allow"]  # the same on both eras
    # On 2026-07-28 the round that only asks leaves no event (nor takes a token); on the
    # older protocol the question is asked in the middle of the one round.
    assert seen_while_asking == ([[]] if mode == "auto" else [["approval_required"]])


# -- the 2026-07-28 round trip: tickets ----------------------------------------------------


async def _ask(client: Client[Any], args: dict[str, Any]) -> mcp_types.InputRequiredResult:
    first = await client.session.call_tool("qflow_task_batch", args, allow_input_required=True)
    assert isinstance(first, mcp_types.InputRequiredResult), first
    assert first.input_requests is not None and APPROVAL_KEY in first.input_requests
    return first


async def _answer(
    client: Client[Any],
    args: dict[str, Any],
    state: str | None,
    action: Action = "accept",
) -> mcp_types.CallToolResult | mcp_types.InputRequiredResult:
    answer: mcp_types.InputResponses = {APPROVAL_KEY: mcp_types.ElicitResult(action=action)}
    return await client.session.call_tool(
        "qflow_task_batch",
        args,
        input_responses=answer,
        request_state=state,
        allow_input_required=True,
    )


async def test_replayed_and_forged_answers_are_asked_again(clock: FakeClock) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit")
    person = Person()
    async with Client(tools.mcp, elicitation_handler=person) as client:
        first = await _ask(client, BIG)
        answered = await _answer(client, BIG, first.request_state)
        assert isinstance(answered, mcp_types.CallToolResult) and not answered.is_error
        clock.advance(60.0)  # room for another call: only the approval is in question
        # the same answer again: its ticket was used
        replayed = await _answer(client, BIG, first.request_state)
        assert isinstance(replayed, mcp_types.InputRequiredResult)
        # an "accept" without our state, or with a state the server never issued
        assert isinstance(await _answer(client, BIG, None), mcp_types.InputRequiredResult)
        # no answer at all to a question that was asked
        unanswered = await client.session.call_tool(
            "qflow_task_batch",
            BIG,
            request_state=replayed.request_state,
            allow_input_required=True,
        )
        assert isinstance(unanswered, mcp_types.InputRequiredResult)
    assert tools.names() == ["qflow_task_batch"]
    assert person.asked == []  # everything above went by hand


async def test_an_answer_counts_only_for_the_caller_it_was_asked_of(clock: FakeClock) -> None:
    who = {"name": "alice"}
    tools = guarded(
        PolicyEngine.from_dict(POLICY, clock=clock),
        approver="elicit",
        identify=lambda ctx: who["name"],
    )
    async with Client(tools.mcp, elicitation_handler=Person()) as client:
        first = await _ask(client, BIG)
        who["name"] = "mallory"
        stolen = await _answer(client, BIG, first.request_state)
        assert isinstance(stolen, mcp_types.InputRequiredResult)
    assert tools.runs == []


async def test_a_question_expires_on_the_injected_clock(clock: FakeClock) -> None:
    tools = guarded(
        PolicyEngine.from_dict(POLICY), approver="elicit", approval_ttl=30.0, clock=clock
    )
    async with Client(tools.mcp, elicitation_handler=Person()) as client:
        first = await _ask(client, BIG)
        clock.advance(31.0)
        late = await _answer(client, BIG, first.request_state)
        assert isinstance(late, mcp_types.InputRequiredResult)
        on_time = await _answer(client, BIG, late.request_state)
        assert isinstance(on_time, mcp_types.CallToolResult) and not on_time.is_error
    assert tools.names() == ["qflow_task_batch"]


async def test_pending_questions_are_bounded(clock: FakeClock) -> None:
    tools = guarded(PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit", max_pending=2)
    async with Client(tools.mcp, elicitation_handler=Person()) as client:
        oldest = await _ask(client, BIG)
        for _ in range(2):
            await _ask(client, BIG)
        forgotten = await _answer(client, BIG, oldest.request_state)
        assert isinstance(forgotten, mcp_types.InputRequiredResult)
    assert tools.runs == []


async def test_a_declined_answer_denies_and_a_changed_policy_wins(clock: FakeClock) -> None:
    engine = PolicyEngine.from_dict(POLICY, clock=clock)
    tools = guarded(engine, approver="elicit")
    async with Client(tools.mcp, elicitation_handler=Person()) as client:
        first = await _ask(client, BIG)
        declined = await _answer(client, BIG, first.request_state, "decline")
        assert isinstance(declined, mcp_types.CallToolResult) and declined.is_error
        assert text(declined).endswith("The person asked declined this call.")
        # asked, then the policy stops needing approval before the answer comes back
        second = await _ask(client, BIG)
        relaxed = json.loads(json.dumps(POLICY))
        del relaxed["tools"]["qflow_task_batch"]["approve_if"]
        engine.reload(relaxed)
        answered = await _answer(client, BIG, second.request_state, "decline")
        assert isinstance(answered, mcp_types.CallToolResult) and not answered.is_error
    assert tools.names() == ["qflow_task_batch"]


async def test_a_tool_that_asks_its_own_questions_after_approval() -> None:
    policy = {
        "version": "1",
        "default": "allow",
        "tools": {
            "wipe": {
                "action": "approve",
                "on_deny": "Wiping needs a human.",
                "limits": [{"counter": "wipes", "window": "hour", "max": 1}],
            }
        },
    }
    mcp = FastMCP("guard-tool")
    rounds: list[str | None] = []

    @mcp.tool
    async def wipe(target: str, ctx: Context) -> str | mcp_types.InputRequiredResult:
        rounds.append(ctx.request_state)
        answers = ctx.input_responses or {}
        confirm = answers.get("confirm")
        if not isinstance(confirm, mcp_types.ElicitResult):
            question = mcp_types.ElicitRequest(
                params=mcp_types.ElicitRequestFormParams(
                    message=f"Type the name of {target} to confirm",
                    requested_schema={"type": "object", "properties": {}},
                )
            )
            return mcp_types.InputRequiredResult(
                input_requests={"confirm": question}, request_state="wipe-asked"
            )
        return f"wiped {target} ({confirm.action})"

    engine = PolicyEngine.from_dict(policy, clock=FakeClock())
    mcp.add_middleware(PolicyMiddleware(engine, approver="elicit"))
    person = Person("accept", "accept", "accept")
    async with Client(mcp, elicitation_handler=person) as client:
        assert (await client.call_tool("wipe", {"target": "db"})).data == "wiped db (accept)"
        # The approval was asked once, the tool's own question once; the tool ran twice
        # (asking, then finishing) and saw only its own state; one token was taken.
        assert [m.startswith("Approve this tool call?") for m in person.asked] == [True, False]
        assert rounds == [None, "wipe-asked"]
        again = await client.call_tool("wipe", {"target": "db"}, raise_on_error=False)
        assert text(again).startswith(DENIED + "Rate limit 'wipes'")


# -- identities and grants ----------------------------------------------------------------------


BUNDLE: dict[str, Any] = {
    "version": "1",
    "policies": {
        "readonly": {"version": "1", "default": "deny", "tools": {"qflow_task_list": {}}},
        "full": {"version": "1", "default": "allow", "hide": ["flaky"]},
    },
    "grants": {"alice-*": "full", "ci-*": "readonly"},
}


def client_name(ctx: Context) -> str:
    params = ctx.session.client_params
    return params.client_info.name if params is not None else "unknown"


async def async_client_name(ctx: Context) -> str:
    return client_name(ctx)


@MODES
@pytest.mark.parametrize("identify", [client_name, async_client_name])
async def test_grants_follow_the_identity(
    mode: str, identify: Callable[[Context], str | Awaitable[str]]
) -> None:
    tools = guarded(PolicyEngine.from_dict(BUNDLE), identify=identify)

    def named(name: str) -> Client[Any]:
        info = mcp_types.Implementation(name=name, version="1")
        return Client(tools.mcp, mode=mode, client_info=info)

    async with named("alice-laptop") as alice:
        assert "qflow_task_delete" in [t.name for t in await alice.list_tools()]
        assert (await alice.call_tool("qflow_task_delete", {"taskId": "T-1"})).data == "deleted"
    async with named("ci-runner") as ci:
        assert [t.name for t in await ci.list_tools()] == ["qflow_task_list"]
        denied = await ci.call_tool("qflow_task_delete", {"taskId": "T-1"}, raise_on_error=False)
        assert text(denied).startswith(DENIED)
    async with named("mallory") as stranger:
        assert await stranger.list_tools() == []
        denied = await stranger.call_tool("qflow_task_list", {}, raise_on_error=False)
        assert text(denied).startswith(DENIED + "No policy applies to the identity 'mallory'")
    assert tools.names() == ["qflow_task_delete"]


@MODES
async def test_the_default_identity_is_the_access_tokens_client_id(mode: str) -> None:
    tools = guarded(PolicyEngine.from_dict(BUNDLE))
    user = AuthenticatedUser(AccessToken(token="t", client_id="alice-laptop", scopes=[]))
    reset = auth_context_var.set(user)  # what the SDK's auth middleware sets for a request
    try:
        async with Client(tools.mcp, mode=mode) as client:
            assert "qflow_task_delete" in [t.name for t in await client.list_tools()]
            assert (await client.call_tool("qflow_task_delete", {"taskId": "T-1"})).data
    finally:
        auth_context_var.reset(reset)
    assert tools.names() == ["qflow_task_delete"]


async def test_the_default_identity_is_anonymous_without_a_token() -> None:
    bundle = {**BUNDLE, "grants": {"anonymous": "readonly"}}
    tools = guarded(PolicyEngine.from_dict(bundle))
    async with Client(tools.mcp) as client:
        assert [t.name for t in await client.list_tools()] == ["qflow_task_list"]
        assert (await client.call_tool("qflow_task_list", {})).data == ["T-1"]


# -- the decorator ------------------------------------------------------------------------------


class NewTask(BaseModel):
    title: str
    priority: int | None = None


DECORATED_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "allow",
    "tools": {
        "add_tasks": {
            "approve_if": [
                {
                    "conditions": [{"path": "args.tasks", "op": "len_gt", "value": 2}],
                    "on_deny": "Large batches need a human.",
                }
            ],
            "limits": [{"counter": "adds", "window": "minute", "max": 2}],
        },
        "rename": {
            "deny_if": [
                {
                    "conditions": [{"path": "args.name", "op": "starts_with", "value": "_"}],
                    "on_deny": "Private names are not allowed.",
                }
            ]
        },
        "remove": {"deny_if": [{"conditions": [], "on_deny": "Never."}]},
    },
}


class Decorated:
    """The same three tools with and without `policy_guard`, to compare what FastMCP sees."""

    def __init__(self, engine: PolicyEngine | None, **options: Any) -> None:
        self.runs: list[str] = []
        self.fail = False
        mcp = FastMCP("decorated")

        def guard(fn: Any, **extra: Any) -> Any:
            return policy_guard(engine, **options, **extra)(fn) if engine is not None else fn

        async def add_tasks(
            action: str, ctx: Context, tasks: list[NewTask] | None = None, dry_run: bool = False
        ) -> dict[str, int]:
            """Add tasks in one go.

            Args:
                action: what to do
                tasks: the tasks
            """
            assert isinstance(ctx, Context)
            self.runs.append("add_tasks")
            if self.fail:
                raise RuntimeError("disk full")
            return {"added": len(tasks or [])}

        def rename(task_id: str, name: str = "untitled") -> str:
            """Rename a task."""
            self.runs.append("rename")
            return f"{task_id} is {name}"

        def drop(task_id: str) -> str:
            """Remove a task."""
            self.runs.append("remove")
            return "removed"

        mcp.tool(guard(add_tasks))
        mcp.tool(guard(rename))
        mcp.tool(name="remove")(guard(drop, tool="remove"))
        self.mcp = mcp


async def test_the_decorator_keeps_what_fastmcp_generates() -> None:
    async with Client(Decorated(None).mcp) as plain:
        expected = [t.model_dump() for t in await plain.list_tools()]
    async with Client(Decorated(PolicyEngine.from_dict(DECORATED_POLICY)).mcp) as client:
        assert [t.model_dump() for t in await client.list_tools()] == expected
    assert expected[0]["input_schema"]["required"] == ["action"]  # ctx is not an argument
    assert expected[0]["description"].startswith("Add tasks in one go.")


@MODES
async def test_the_decorator_on_sync_and_async_tools(mode: str, clock: FakeClock) -> None:
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY, clock=clock))
    async with Client(server.mcp, mode=mode) as client:
        # `tasks` is optional and not sent: the policy sees what the client sent, so
        # `len_gt` finds no `args.tasks` (and is not handed the default None).
        assert (await client.call_tool("add_tasks", {"action": "add"})).data == {"added": 0}
        assert (await client.call_tool("rename", {"task_id": "T-1"})).data == "T-1 is untitled"
        private = await client.call_tool(
            "rename", {"task_id": "T-1", "name": "_x"}, raise_on_error=False
        )
        assert text(private) == DENIED + "Private names are not allowed."
        never = await client.call_tool("remove", {"task_id": "T-1"}, raise_on_error=False)
        assert text(never) == DENIED + "Never."
        big = {"action": "add", "tasks": [{"title": f"t{i}"} for i in range(3)]}
        needs = await client.call_tool("add_tasks", big, raise_on_error=False)
        assert text(needs) == DENIED + "Large batches need a human."
    assert server.runs == ["add_tasks", "rename"]


@MODES
async def test_the_decorator_asks_for_approval_and_refunds_failures(
    mode: str, clock: FakeClock
) -> None:
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY, clock=clock), approver="elicit")
    big = {"action": "add", "tasks": [{"title": f"t{i}"} for i in range(3)]}
    person = Person("decline", "accept", "accept")
    async with Client(server.mcp, mode=mode, elicitation_handler=person) as client:
        declined = await client.call_tool("add_tasks", big, raise_on_error=False)
        assert text(declined).endswith("The person asked declined this call.")
        assert (await client.call_tool("add_tasks", big)).data == {"added": 3}
        server.fail = True
        failed = await client.call_tool("add_tasks", big, raise_on_error=False)
        assert failed.is_error and "disk full" in text(failed)
        server.fail = False
        # `adds` allows 2 a minute: the failed call gave its token back
        assert (await client.call_tool("add_tasks", {"action": "add"})).data == {"added": 0}
        limited = await client.call_tool("add_tasks", {"action": "add"}, raise_on_error=False)
        assert text(limited).startswith(DENIED + "Rate limit 'adds'")
    assert server.runs == ["add_tasks", "add_tasks", "add_tasks"]
    assert len(person.asked) == 3


async def test_the_decorator_outside_a_client_request_judges_what_it_received() -> None:
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY))
    result = await server.mcp.call_tool("rename", {"task_id": "T-1", "name": "ok"})
    assert result.structured_content == {"result": "T-1 is ok"}
    with pytest.raises(ToolError, match="Private names"):
        await server.mcp.call_tool("rename", {"task_id": "T-1", "name": "_x"})


def test_the_decorator_goes_below_mcp_tool() -> None:
    mcp = FastMCP("misuse")
    engine = PolicyEngine.from_dict(DECORATED_POLICY)

    def rename(task_id: str) -> str:
        return task_id

    with pytest.raises(TypeError, match="below"):
        policy_guard(engine)(mcp.tool(rename))


# -- packaging ----------------------------------------------------------------------------------


def test_the_demo_shows_allow_deny_rate_limit_and_approval() -> None:
    demo = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "fastmcp_demo.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    out = demo.stdout
    assert "protocol 2026-07-28" in out and "protocol 2025-11-25" in out
    assert "error: [POLICY DENIED] Merging or deleting workspaces" in out
    assert "error: [POLICY DENIED] Large batches need a human. The person asked declined" in out
    assert "[POLICY DENIED] Rate limit 'writes' (30 per minute) exceeded; retry in 2.0 s." in out
    assert out.count("the user answers: accept") == 2
    assert "result: applied C-7" in out


def test_the_core_package_does_not_import_fastmcp() -> None:
    code = (
        "import sys, policylayer_core, policylayer_core.audit, policylayer_core.cli; "
        "print('fastmcp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_the_example_server_has_the_real_qflow_arguments() -> None:
    spec = importlib.util.spec_from_file_location("guarded_server", EXAMPLES / "guarded_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    real = {
        tool["name"]: set(tool["inputSchema"].get("properties", {}))
        for tool in json.loads((EXAMPLES / "qflow-tools.json").read_text("utf-8"))["tools"]
    }
    async with Client(module.build_server()) as client:
        for tool in await client.list_tools():
            assert set(tool.input_schema["properties"]) <= real[tool.name], tool.name


class ThreadRecordingStore(MemoryStore):
    """A memory store that says it blocks (as RedisStore does) and notes its threads."""

    blocking = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def take(self, charges: Any) -> Any:
        self.threads.append(threading.get_ident())
        return super().take(charges)

    def take_one(self, spec: Any, key: Any, cost: int) -> Any:
        self.threads.append(threading.get_ident())
        return super().take_one(spec, key, cost)


async def test_a_blocking_store_is_called_off_the_event_loop() -> None:
    store = ThreadRecordingStore()
    engine = PolicyEngine(POLICY, store=store)
    tools = guarded(engine)
    async with Client(tools.mcp) as client:
        await client.call_tool("flaky", {}, raise_on_error=False)
    assert store.threads and threading.get_ident() not in store.threads


async def test_the_decorator_refuses_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """FastMCP logs a ToolError raised in a tool at the error's log level: a policy refusal
    must not show up as "Error calling tool" at ERROR for every denied call."""
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY))
    fastmcp_logger = logging.getLogger("fastmcp")  # it does not propagate to the root
    fastmcp_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="fastmcp"):
            async with Client(server.mcp) as client:
                never = await client.call_tool("remove", {"task_id": "T-1"}, raise_on_error=False)
    finally:
        fastmcp_logger.removeHandler(caplog.handler)
    assert text(never) == DENIED + "Never."
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
