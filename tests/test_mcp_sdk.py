"""The MCP SDK integration, end to end: real SDK servers (`MCPServer` with `PolicyMiddleware`,
the low-level `Server` with `PolicyGuard`, `policy_guard` on `MCPServer` tools) and the
SDK's real `mcp.Client`, in memory, on both protocol eras (`mode="auto"` negotiates
2026-07-28, `mode="legacy"` the 2025-11-25 handshake). Over stdio: test_mcp_sdk_transport.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import pytest

pytest.importorskip("mcp.server.mcpserver")

import mcp_types
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from conftest import EXAMPLES, FakeClock
from policylayer_core import Effect, MemoryStore, PolicyEngine
from policylayer_core._approvals import APPROVAL_KEY
from policylayer_core.audit import MemorySink
from policylayer_core.mcp import ApprovalRequest, PolicyGuard, PolicyMiddleware, policy_guard

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
KINDS = pytest.mark.parametrize("kind", ["mcpserver", "lowlevel"])
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
        "crash": {"limits": [{"counter": "crash", "window": "minute", "max": 1}]},
    },
}
BIG = {**ROOT, "action": "create", "tasks": [{"title": f"t{i}"} for i in range(3)]}
NAMES = [
    "qflow_task_list",
    "qflow_task_create",
    "qflow_task_batch",
    "qflow_task_delete",
    "qflow_workspace",
    "qflow_memory",
    "flaky",
    "crash",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Qflow:
    """qflow-like tools on an SDK server of either kind, recording every call that ran.

    `flaky` reports a failure as an error result; `crash` raises (MCPServer turns that
    into an error result too; the low-level Server into a JSON-RPC error)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.flaky_fails = True

    def run(self, name: str, args: dict[str, Any]) -> Any:
        self.runs.append((name, args))
        if name == "flaky" and self.flaky_fails:
            return None  # an error result
        if name == "crash":
            raise RuntimeError("the backend is down")
        if name == "qflow_task_list":
            return ["T-1"]
        if name == "qflow_task_batch":
            return f"{args['action']} {len(args.get('tasks') or [])}"
        if name == "qflow_task_create":
            return f"created {args['title']}"
        return "fine" if name == "flaky" else "ok"

    def names(self) -> list[str]:
        return [name for name, _ in self.runs]

    def mcpserver(self, *middleware: Any, **options: Any) -> MCPServer:
        server = MCPServer("qflow-test", middleware=list(middleware), **options)

        @server.tool()
        def qflow_task_list(status: str | None = None) -> list[str]:
            return self.run("qflow_task_list", {"status": status})

        @server.tool()
        def qflow_task_create(title: str) -> str:
            return self.run("qflow_task_create", {"title": title})

        @server.tool()
        async def qflow_task_batch(
            action: str,
            projectRoot: str,  # noqa: N803 - qflow's own argument name
            tasks: list[dict[str, Any]] | None = None,
        ) -> str:
            return self.run("qflow_task_batch", {"action": action, "tasks": tasks})

        @server.tool()
        def qflow_task_delete(taskId: str) -> str:  # noqa: N803 - qflow's own argument name
            return self.run("qflow_task_delete", {"taskId": taskId})

        @server.tool()
        def qflow_workspace(action: str) -> str:
            return self.run("qflow_workspace", {"action": action})

        @server.tool()
        def qflow_memory(action: str) -> str:
            return self.run("qflow_memory", {"action": action})

        @server.tool()
        def flaky() -> str:
            result = self.run("flaky", {})
            if result is None:
                raise ToolError("the backend is down")  # a failure the tool reports
            return result

        @server.tool()
        def crash() -> str:
            return self.run("crash", {})

        return server

    def lowlevel(self, guard: PolicyGuard | None) -> Server:
        tools = [mcp_types.Tool(name=name, input_schema={"type": "object"}) for name in NAMES]

        async def list_tools(
            ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
        ) -> mcp_types.ListToolsResult:
            return mcp_types.ListToolsResult(tools=tools)

        async def call_tool(
            ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
        ) -> mcp_types.CallToolResult | mcp_types.InputRequiredResult:
            result = self.run(params.name, dict(params.arguments or {}))
            if result is None:
                return error_result("the backend is down")
            return mcp_types.CallToolResult(
                content=[mcp_types.TextContent(type="text", text=json.dumps(result))],
                structured_content={"result": result},
            )

        if guard is None:
            return Server("qflow-lowlevel", on_list_tools=list_tools, on_call_tool=call_tool)
        return Server(
            "qflow-lowlevel",
            on_list_tools=guard.list_tools(list_tools),
            on_call_tool=guard.call_tool(call_tool),
        )


def error_result(message: str) -> mcp_types.CallToolResult:
    block = mcp_types.TextContent(type="text", text=message)
    return mcp_types.CallToolResult(content=[block], is_error=True)


def guarded(kind: str, engine: PolicyEngine, **options: Any) -> tuple[Qflow, Any]:
    """The tools on a server of `kind`, guarded by the policy."""
    qflow = Qflow()
    if kind == "mcpserver":
        return qflow, qflow.mcpserver(PolicyMiddleware(engine, **options))
    return qflow, qflow.lowlevel(PolicyGuard(engine, **options))


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


def data(result: mcp_types.CallToolResult) -> Any:
    """The tool's value: MCPServer wraps all but objects in {"result": ...}, as do these
    tests' low-level handlers."""
    assert not result.is_error, text(result)
    content = result.structured_content
    assert content is not None
    return content["result"] if list(content) == ["result"] else content


Action = Literal["accept", "decline", "cancel"]


class Person:
    """An elicitation callback that answers from a script and remembers what it was asked."""

    def __init__(self, *answers: Action) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []
        self.schemas: list[Any] = []

    async def __call__(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        assert isinstance(params, mcp_types.ElicitRequestFormParams)
        self.asked.append(params.message)
        self.schemas.append(params.requested_schema)
        return mcp_types.ElicitResult(action=self.answers.pop(0))


async def listed(client: Client) -> list[str]:
    return [tool.name for tool in (await client.list_tools()).tools]


# -- allow, deny, list ------------------------------------------------------------------------


@KINDS
@MODES
async def test_allowed_denied_and_hidden(kind: str, mode: str) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY))
    async with Client(server, mode=mode) as client:
        # qflow_task_delete is hidden, qflow_memory falls to "default": "deny";
        # qflow_workspace (action: deny) stays visible, as the format says.
        assert await listed(client) == [
            "qflow_task_list",
            "qflow_task_create",
            "qflow_task_batch",
            "qflow_workspace",
            "flaky",
            "crash",
        ]
        assert data(await client.call_tool("qflow_task_list", {"status": "pending"})) == ["T-1"]
        rewrite = await client.call_tool("qflow_task_batch", {**ROOT, "action": "rewrite"})
        assert rewrite.is_error
        assert text(rewrite) == DENIED + "Rewrites are not allowed."
        workspace = await client.call_tool("qflow_workspace", {"action": "merge"})
        assert text(workspace) == DENIED + "Workspaces are managed by people."
        hidden = await client.call_tool("qflow_task_delete", {"taskId": "T-1"})
        assert text(hidden) == (
            DENIED + "The tool 'qflow_task_delete' is not available: the policy hides it."
        )
        default = await client.call_tool("qflow_memory", {"action": "x"})
        assert default.is_error and text(default).startswith(DENIED)
        assert len(rewrite.content) == 1 and rewrite.structured_content is None
    assert qflow.runs == [("qflow_task_list", {"status": "pending"})]


@MODES
async def test_the_middleware_guards_a_lowlevel_server_too(mode: str) -> None:
    qflow = Qflow()
    server = qflow.lowlevel(None)
    server.middleware.append(PolicyMiddleware(PolicyEngine.from_dict(POLICY)))
    async with Client(server, mode=mode) as client:
        assert "qflow_task_delete" not in await listed(client)
        assert data(await client.call_tool("qflow_task_list", {})) == ["T-1"]
        denied = await client.call_tool("qflow_workspace", {"action": "merge"})
        assert text(denied) == DENIED + "Workspaces are managed by people."
    assert qflow.names() == ["qflow_task_list"]


async def test_a_public_tools_list_becomes_private_once_filtered() -> None:
    """A filtered list is the caller's own: a cache must not share it with other callers."""
    qflow = Qflow()
    hint = {"tools/list": CacheHint(ttl_ms=60_000, scope="public")}
    server = qflow.mcpserver(PolicyMiddleware(PolicyEngine.from_dict(POLICY)), cache_hints=hint)
    async with Client(server) as client:
        result = await client.list_tools()
    assert result.cache_scope == "private" and result.ttl_ms == 60_000


# -- rate limits and refunds ------------------------------------------------------------------


@KINDS
@MODES
async def test_rate_limits_and_refunds(kind: str, mode: str, clock: FakeClock) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY, clock=clock))
    async with Client(server, mode=mode) as client:
        for title in ("a", "b"):
            assert not (await client.call_tool("qflow_task_create", {"title": title})).is_error
        limited = await client.call_tool("qflow_task_create", {"title": "c"})
        assert text(limited) == (
            DENIED + "Rate limit 'writes' (2 per minute) exceeded; retry in 30.0 s."
        )
        clock.advance(30.0)
        assert data(await client.call_tool("qflow_task_create", {"title": "d"})) == "created d"

        # A tool that reports a failure: its error unchanged, its token given back.
        failed = await client.call_tool("flaky", {})
        assert failed.is_error and "the backend is down" in text(failed)
        qflow.flaky_fails = False
        assert data(await client.call_tool("flaky", {})) == "fine"  # the limit is 1 a minute
        assert text(await client.call_tool("flaky", {})).startswith(DENIED + "Rate limit 'flaky'")

        # A tool that raises: MCPServer reports an error result, the low-level Server a
        # protocol error; either way the token comes back.
        for _ in range(2):
            if kind == "mcpserver":
                crashed = await client.call_tool("crash", {})
                assert crashed.is_error and not text(crashed).startswith(DENIED)
            else:
                with pytest.raises(MCPError):
                    await client.call_tool("crash", {})
    assert qflow.names() == ["qflow_task_create"] * 3 + ["flaky"] * 2 + ["crash"] * 2


@KINDS
async def test_session_limits_count_per_session_only_where_sessions_exist(kind: str) -> None:
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
    _, server = guarded(kind, PolicyEngine.from_dict(policy, clock=FakeClock()))
    for _ in range(2):
        async with Client(server, mode="legacy") as client:
            assert data(await client.call_tool("qflow_task_list", {})) == ["T-1"]
            second = await client.call_tool("qflow_task_list", {})
            assert text(second).startswith(DENIED + "Rate limit 's'")
    # 2026-07-28: no session, so the identity's one bucket applies across connections.
    _, server = guarded(kind, PolicyEngine.from_dict(policy, clock=FakeClock()))
    async with Client(server) as client:
        assert data(await client.call_tool("qflow_task_list", {})) == ["T-1"]
    async with Client(server) as client:
        second = await client.call_tool("qflow_task_list", {})
        assert text(second).startswith(DENIED + "Rate limit 's'")


# -- approvals ----------------------------------------------------------------------------------


@KINDS
@MODES
async def test_approval_by_callback(kind: str, mode: str, clock: FakeClock) -> None:
    seen: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> bool:
        seen.append(request)
        return len(seen) != 2

    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY, clock=clock), approver=approver)
    async with Client(server, mode=mode) as client:
        assert data(await client.call_tool("qflow_task_batch", BIG)) == "create 3"
        refused = await client.call_tool("qflow_task_batch", BIG)
        assert text(refused) == (
            DENIED + "Large batches need a human. The approver refused this call."
        )
        # approved again, but `batches` allows one a minute: approval skips only approval
        limited = await client.call_tool("qflow_task_batch", BIG)
        assert text(limited) == (
            DENIED + "Rate limit 'batches' (1 per minute) exceeded; retry in 60.0 s."
        )
    request = seen[0]
    assert (request.identity, request.tool, request.args) == ("anonymous", "qflow_task_batch", BIG)
    assert request.decision.effect is Effect.APPROVAL_REQUIRED
    assert request.session is None if mode == "auto" else isinstance(request.session, str)
    assert qflow.names() == ["qflow_task_batch"]


async def test_no_approver_denies_with_the_rule_reason_and_a_failing_one_fails_closed() -> None:
    qflow, server = guarded("mcpserver", PolicyEngine.from_dict(POLICY))
    async with Client(server) as client:
        result = await client.call_tool("qflow_task_batch", BIG)
    assert text(result) == DENIED + "Large batches need a human."

    def broken(request: ApprovalRequest) -> bool:
        raise RuntimeError("the approval service is down")

    qflow, server = guarded("lowlevel", PolicyEngine.from_dict(POLICY), approver=broken)
    async with Client(server) as client:
        result = await client.call_tool("qflow_task_batch", BIG)
    assert text(result) == (
        DENIED + "Large batches need a human. "
        "The approver failed (RuntimeError), so the call is denied."
    )
    assert qflow.runs == []


def test_bad_options_are_refused_at_construction() -> None:
    engine = PolicyEngine.from_dict(POLICY)
    for build in (PolicyMiddleware, PolicyGuard):
        with pytest.raises(ValueError, match="approver must be"):
            build(engine, approver="ask")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="identify must be"):
            build(engine, identify="alice")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="approval_ttl"):
            build(engine, approver="elicit", approval_ttl=0)
    with pytest.raises(TypeError, match="on_call_tool handler"):
        PolicyGuard(engine).call_tool("call_tool")  # type: ignore[arg-type]


@KINDS
@MODES
async def test_elicitation_accepted_declined_and_cancelled(
    kind: str, mode: str, clock: FakeClock
) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit")
    person = Person("decline", "accept", "cancel")
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        declined = await client.call_tool("qflow_task_batch", BIG)
        assert text(declined) == (
            DENIED + "Large batches need a human. The person asked declined this call."
        )
        # A declined call took no token: the one `batches` token is still there.
        assert data(await client.call_tool("qflow_task_batch", BIG)) == "create 3"
        clock.advance(60.0)
        cancelled = await client.call_tool("qflow_task_batch", BIG)
        assert text(cancelled) == (
            DENIED + "Large batches need a human. "
            "The person asked dismissed the question without approving this call."
        )
        # calls that need no approval are not asked about
        assert data(await client.call_tool("qflow_task_list", {})) == ["T-1"]
    assert qflow.names() == ["qflow_task_batch", "qflow_task_list"]
    assert len(person.asked) == 3  # one question per call, on both eras
    message = person.asked[0]
    assert "'qflow_task_batch'" in message
    assert json.dumps(BIG, ensure_ascii=False, sort_keys=True) in message
    assert "Large batches need a human." in message
    assert person.schemas[0] == {"type": "object", "properties": {}}


@KINDS
@MODES
async def test_an_approved_call_takes_its_tokens_once(
    kind: str, mode: str, clock: FakeClock
) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY, clock=clock), approver="elicit")
    person = Person("accept", "accept")
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        assert data(await client.call_tool("qflow_task_batch", BIG)) == "create 3"
        limited = await client.call_tool("qflow_task_batch", BIG)
    assert text(limited).startswith(DENIED + "Rate limit 'batches'")
    assert qflow.names() == ["qflow_task_batch"]


@KINDS
@MODES
async def test_a_client_without_elicitation_gets_a_clean_denial(kind: str, mode: str) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(POLICY), approver="elicit")
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("qflow_task_batch", BIG)
        assert result.is_error
        assert text(result) == (
            DENIED + "Large batches need a human. This client cannot ask a person for "
            "approval (it declared no form elicitation support)."
        )
        assert data(await client.call_tool("qflow_task_list", {})) == ["T-1"]
    assert qflow.names() == ["qflow_task_list"]


async def test_a_failing_elicitation_refuses_the_call() -> None:
    qflow, server = guarded("mcpserver", PolicyEngine.from_dict(POLICY), approver="elicit")

    async def broken(
        context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        raise RuntimeError("the user's screen is locked")

    async with Client(server, mode="legacy", elicitation_callback=broken) as client:
        result = await client.call_tool("qflow_task_batch", BIG)
    assert text(result) == (
        DENIED + "Large batches need a human. Asking a person for approval failed (MCPError)."
    )
    assert qflow.runs == []


@MODES
async def test_audit_events_are_recorded_on_the_round_that_decides(mode: str) -> None:
    sink = MemorySink()
    engine = PolicyEngine.from_dict(POLICY, audit=sink)
    _, server = guarded("mcpserver", engine, approver="elicit")
    seen_while_asking: list[list[str]] = []

    async def person(
        context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        engine.auditor.flush()  # type: ignore[union-attr]
        seen_while_asking.append([str(event.effect) for event in sink.events])
        return mcp_types.ElicitResult(action="accept")

    async with Client(server, mode=mode, elicitation_callback=person) as client:
        assert data(await client.call_tool("qflow_task_batch", BIG)) == "create 3"
    engine.close()
    assert [event.effect for event in sink.events] == ["approval_required", "allow"]
    assert seen_while_asking == ([[]] if mode == "auto" else [["approval_required"]])


# -- the 2026-07-28 round trip: tickets, through the SDK's sealed requestState ------------------


async def _ask(client: Client, args: dict[str, Any]) -> mcp_types.InputRequiredResult:
    first = await client.session.call_tool("qflow_task_batch", args, allow_input_required=True)
    assert isinstance(first, mcp_types.InputRequiredResult), first
    assert first.input_requests is not None and APPROVAL_KEY in first.input_requests
    return first


async def _answer(
    client: Client, args: dict[str, Any], state: str | None, action: Action = "accept"
) -> Any:
    answer: mcp_types.InputResponses = {APPROVAL_KEY: mcp_types.ElicitResult(action=action)}
    return await client.session.call_tool(
        "qflow_task_batch",
        args,
        input_responses=answer,
        request_state=state,
        allow_input_required=True,
    )


@KINDS
async def test_replayed_forged_and_foreign_answers_are_asked_again(
    kind: str, clock: FakeClock
) -> None:
    who = {"name": "alice"}
    qflow, server = guarded(
        kind,
        PolicyEngine.from_dict(POLICY, clock=clock),
        approver="elicit",
        identify=lambda ctx: who["name"],
    )
    async with Client(server, elicitation_callback=Person()) as client:
        first = await _ask(client, BIG)
        answered = await _answer(client, BIG, first.request_state)
        assert isinstance(answered, mcp_types.CallToolResult) and not answered.is_error
        clock.advance(60.0)  # room for another call: only the approval is in question
        # the same answer again: its ticket was used
        assert isinstance(
            await _answer(client, BIG, first.request_state), mcp_types.InputRequiredResult
        )
        # an "accept" without any state
        assert isinstance(await _answer(client, BIG, None), mcp_types.InputRequiredResult)
        # an answer given for alice, sent by mallory
        second = await _ask(client, BIG)
        who["name"] = "mallory"
        stolen = await _answer(client, BIG, second.request_state)
        assert isinstance(stolen, mcp_types.InputRequiredResult)
        # and an answer for other arguments: MCPServer's sealed requestState is bound to
        # them already (the SDK refuses the round); the low-level Server here has no
        # such boundary, and the ticket's own digest of the arguments asks again
        who["name"] = "alice"
        third = await _ask(client, BIG)
        other = {**BIG, "tasks": [*BIG["tasks"], {"title": "t3"}]}
        if kind == "mcpserver":
            with pytest.raises(MCPError, match="Invalid or expired requestState"):
                await _answer(client, other, third.request_state)
        else:
            moved = await _answer(client, other, third.request_state)
            assert isinstance(moved, mcp_types.InputRequiredResult)
    assert qflow.names() == ["qflow_task_batch"]


async def test_a_question_expires_on_the_injected_clock(clock: FakeClock) -> None:
    qflow, server = guarded(
        "lowlevel",
        PolicyEngine.from_dict(POLICY),
        approver="elicit",
        approval_ttl=30.0,
        clock=clock,
    )
    async with Client(server, elicitation_callback=Person()) as client:
        first = await _ask(client, BIG)
        clock.advance(31.0)
        late = await _answer(client, BIG, first.request_state)
        assert isinstance(late, mcp_types.InputRequiredResult)
        on_time = await _answer(client, BIG, late.request_state)
        assert isinstance(on_time, mcp_types.CallToolResult) and not on_time.is_error
    assert qflow.names() == ["qflow_task_batch"]


WIPE_POLICY: dict[str, Any] = {
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


def _confirm(target: str) -> mcp_types.InputRequiredResult:
    question = mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(
            message=f"Type the name of {target} to confirm",
            requested_schema={"type": "object", "properties": {}},
        )
    )
    return mcp_types.InputRequiredResult(
        input_requests={"confirm": question}, request_state="wipe-asked"
    )


@pytest.mark.parametrize("how", ["middleware", "decorator", "lowlevel"])
async def test_a_tool_that_asks_its_own_questions_after_approval(how: str) -> None:
    engine = PolicyEngine.from_dict(WIPE_POLICY, clock=FakeClock())
    rounds: list[str | None] = []

    def wipe_round(target: str, state: str | None, answers: Any) -> Any:
        rounds.append(state)
        confirm = (answers or {}).get("confirm")
        if not isinstance(confirm, mcp_types.ElicitResult):
            return _confirm(target)
        return f"wiped {target} ({confirm.action})"

    server: Any
    if how == "lowlevel":
        guard = PolicyGuard(engine, approver="elicit")

        async def call_tool(
            ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
        ) -> mcp_types.CallToolResult | mcp_types.InputRequiredResult:
            args = params.arguments or {}
            out = wipe_round(args["target"], params.request_state, params.input_responses)
            if isinstance(out, mcp_types.InputRequiredResult):
                return out
            block = mcp_types.TextContent(type="text", text=out)
            return mcp_types.CallToolResult(content=[block], structured_content={"result": out})

        async def list_tools(
            ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
        ) -> mcp_types.ListToolsResult:
            schema = {"type": "object", "properties": {"target": {"type": "string"}}}
            return mcp_types.ListToolsResult(
                tools=[mcp_types.Tool(name="wipe", input_schema=schema)]
            )

        server = Server(
            "wipe",
            on_list_tools=guard.list_tools(list_tools),
            on_call_tool=guard.call_tool(call_tool),
        )
    else:
        middleware = [PolicyMiddleware(engine, approver="elicit")] if how == "middleware" else []
        server = MCPServer("wipe", middleware=middleware)

        async def wipe(target: str, ctx: Context) -> str | mcp_types.InputRequiredResult:
            return wipe_round(target, ctx.request_state, ctx.input_responses)

        tool = wipe if how == "middleware" else policy_guard(engine, approver="elicit")(wipe)
        server.add_tool(tool, name="wipe")

    person = Person("accept", "accept", "accept")
    async with Client(server, elicitation_callback=person) as client:
        assert data(await client.call_tool("wipe", {"target": "db"})) == "wiped db (accept)"
        # The approval was asked once, the tool's own question once; the tool ran twice
        # (asking, then finishing) and saw only its own state; one token was taken.
        assert [m.startswith("Approve this tool call?") for m in person.asked] == [True, False]
        assert rounds == [None, "wipe-asked"]
        again = await client.call_tool("wipe", {"target": "db"})
        assert text(again).startswith(DENIED + "Rate limit 'wipes'")


# -- identities and grants ----------------------------------------------------------------------


BUNDLE: dict[str, Any] = {
    "version": "1",
    "policies": {
        "readonly": {"version": "1", "default": "deny", "tools": {"qflow_task_list": {}}},
        "full": {"version": "1", "default": "allow", "hide": ["flaky", "crash"]},
    },
    "grants": {"alice-*": "full", "ci-*": "readonly"},
}


def client_name(ctx: ServerRequestContext) -> str:
    params = ctx.session.client_params
    return params.client_info.name if params is not None else "unknown"


async def async_client_name(ctx: ServerRequestContext) -> str:
    return client_name(ctx)


@KINDS
@MODES
@pytest.mark.parametrize("identify", [client_name, async_client_name])
async def test_grants_follow_the_identity(
    kind: str, mode: str, identify: Callable[[ServerRequestContext], str | Awaitable[str]]
) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(BUNDLE), identify=identify)

    def named(name: str) -> Client:
        info = mcp_types.Implementation(name=name, version="1")
        return Client(server, mode=mode, client_info=info)

    async with named("alice-laptop") as alice:
        assert "qflow_task_delete" in await listed(alice)
        assert data(await alice.call_tool("qflow_task_delete", {"taskId": "T-1"})) == "ok"
    async with named("ci-runner") as ci:
        assert await listed(ci) == ["qflow_task_list"]
        denied = await ci.call_tool("qflow_task_delete", {"taskId": "T-1"})
        assert text(denied).startswith(DENIED)
    async with named("mallory") as stranger:
        assert await listed(stranger) == []
        denied = await stranger.call_tool("qflow_task_list", {})
        assert text(denied).startswith(DENIED + "No policy applies to the identity 'mallory'")
    assert qflow.names() == ["qflow_task_delete"]


@KINDS
@MODES
async def test_the_default_identity_is_the_access_tokens_client_id(kind: str, mode: str) -> None:
    qflow, server = guarded(kind, PolicyEngine.from_dict(BUNDLE))
    async with Client(server, mode=mode) as client:
        assert await listed(client) == []  # "anonymous" has no grant
    user = AuthenticatedUser(AccessToken(token="t", client_id="alice-laptop", scopes=[]))
    reset = auth_context_var.set(user)  # what the SDK's auth middleware sets for a request
    try:
        async with Client(server, mode=mode) as client:
            assert "qflow_task_delete" in await listed(client)
            assert data(await client.call_tool("qflow_task_delete", {"taskId": "T-1"})) == "ok"
    finally:
        auth_context_var.reset(reset)
    assert qflow.names() == ["qflow_task_delete"]


# -- the decorator ------------------------------------------------------------------------------


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
    """The same three tools with and without `policy_guard`, to compare what MCPServer sees."""

    def __init__(self, engine: PolicyEngine | None, **options: Any) -> None:
        self.runs: list[str] = []
        self.fail = False
        server = MCPServer("decorated")

        def guard(fn: Any, **extra: Any) -> Any:
            return policy_guard(engine, **options, **extra)(fn) if engine is not None else fn

        async def add_tasks(
            action: str, ctx: Context, tasks: list[dict[str, str]] | None = None
        ) -> dict[str, int]:
            """Add tasks in one go."""
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

        server.add_tool(guard(add_tasks))
        server.add_tool(guard(rename))
        server.add_tool(guard(drop, tool="remove"), name="remove")
        self.server = server


async def test_the_decorator_keeps_what_mcpserver_generates() -> None:
    async with Client(Decorated(None).server) as plain:
        expected = [t.model_dump() for t in (await plain.list_tools()).tools]
    async with Client(Decorated(PolicyEngine.from_dict(DECORATED_POLICY)).server) as client:
        assert [t.model_dump() for t in (await client.list_tools()).tools] == expected
    assert expected[0]["input_schema"]["required"] == ["action"]  # ctx is not an argument
    assert "policylayer_context" not in json.dumps(expected)
    assert expected[0]["description"] == "Add tasks in one go."


@MODES
async def test_the_decorator_on_sync_and_async_tools(mode: str, clock: FakeClock) -> None:
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY, clock=clock), approver="elicit")
    big = {"action": "add", "tasks": [{"title": f"t{i}"} for i in range(3)]}
    person = Person("decline", "accept")
    async with Client(server.server, mode=mode, elicitation_callback=person) as client:
        # `tasks` is optional and not sent: the policy sees what the client sent.
        assert data(await client.call_tool("add_tasks", {"action": "add"})) == {"added": 0}
        assert data(await client.call_tool("rename", {"task_id": "T-1"})) == "T-1 is untitled"
        private = await client.call_tool("rename", {"task_id": "T-1", "name": "_x"})
        assert text(private) == DENIED + "Private names are not allowed."
        never = await client.call_tool("remove", {"task_id": "T-1"})
        assert text(never) == DENIED + "Never."
        declined = await client.call_tool("add_tasks", big)
        assert text(declined).endswith("The person asked declined this call.")
        server.fail = True
        failed = await client.call_tool("add_tasks", big)
        assert failed.is_error and not text(failed).startswith(DENIED)
        server.fail = False
        # `adds` allows 2 a minute: the failed call gave its token back
        assert data(await client.call_tool("add_tasks", {"action": "add"})) == {"added": 0}
        limited = await client.call_tool("add_tasks", {"action": "add"})
        assert text(limited).startswith(DENIED + "Rate limit 'adds'")
    assert server.runs == ["add_tasks", "rename", "add_tasks", "add_tasks"]


async def test_the_decorator_outside_a_client_request_judges_what_it_received() -> None:
    server = Decorated(PolicyEngine.from_dict(DECORATED_POLICY)).server
    result = await server.call_tool("rename", {"task_id": "T-1", "name": "ok"})
    assert isinstance(result, mcp_types.CallToolResult)
    assert result.structured_content == {"result": "T-1 is ok"}
    refused = await server.call_tool("rename", {"task_id": "T-1", "name": "_x"})
    assert isinstance(refused, mcp_types.CallToolResult)
    assert text(refused) == DENIED + "Private names are not allowed."


def _fastmcp_guard_on_an_mcpserver_tool(engine: PolicyEngine) -> None:
    from policylayer_core import fastmcp as for_fastmcp  # noqa: PLC0415 - the other extra

    server = MCPServer("misuse")

    @server.tool()
    @for_fastmcp.policy_guard(engine)
    def rename(task_id: str) -> str:
        return task_id


def _sdk_guard_above_server_tool(engine: PolicyEngine) -> None:
    server = MCPServer("misuse")

    @policy_guard(engine)
    @server.tool()
    def remove(task_id: str) -> str:
        return task_id


def _fastmcp_guard_on_a_function_taking_the_sdk_context(engine: PolicyEngine) -> None:
    from policylayer_core import fastmcp as for_fastmcp  # noqa: PLC0415 - the other extra

    def rename(task_id: str, ctx: Context) -> str:
        return task_id

    for_fastmcp.policy_guard(engine)(rename)


def _sdk_guard_on_a_fastmcp_tool(engine: PolicyEngine) -> None:
    from fastmcp import FastMCP  # noqa: PLC0415 - the other integration's server

    mcp = FastMCP("misuse")

    @mcp.tool
    @policy_guard(engine)
    def add_tasks(action: str) -> str:
        return action


@pytest.mark.parametrize(
    ("misuse", "advice"),
    [
        (_fastmcp_guard_on_an_mcpserver_tool, r"use policylayer_core\.mcp\.policy_guard"),
        (_fastmcp_guard_on_a_function_taking_the_sdk_context, r"policylayer_core\.mcp\."),
        (_sdk_guard_above_server_tool, r"below @server\.tool\(\), not above it"),
        (_sdk_guard_on_a_fastmcp_tool, r"use policylayer_core\.fastmcp\.policy_guard"),
    ],
)
def test_the_decorator_is_refused_where_it_cannot_work(
    misuse: Callable[[PolicyEngine], None], advice: str
) -> None:
    """Each integration's decorator on the other's server, or above the server's own
    decorator, fails when the function is decorated, naming what to use instead."""
    pytest.importorskip("fastmcp")
    with pytest.raises(TypeError, match=advice):
        misuse(PolicyEngine.from_dict(DECORATED_POLICY))


async def test_a_fastmcp_guard_decorated_out_of_sight_says_what_to_use_when_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Decorated where no server is in scope, FastMCP's guard cannot tell it is headed for
    an MCPServer; its calls fail, and the server's log names the right integration."""
    pytest.importorskip("fastmcp")
    from policylayer_core import fastmcp as for_fastmcp  # noqa: PLC0415 - the other extra

    def rename(task_id: str) -> str:
        return task_id

    guarded_rename = for_fastmcp.policy_guard(PolicyEngine.from_dict(DECORATED_POLICY))(rename)
    server = MCPServer("misuse")
    server.add_tool(guarded_rename)
    async with Client(server) as client:
        result = await client.call_tool("rename", {"task_id": "T-1"})
    assert result.is_error and text(result) == "Error executing tool rename"
    causes = [str(r.exc_info[1].__cause__) for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert any("use policylayer_core.mcp.policy_guard" in cause for cause in causes), causes


async def _confirm_wipe(ctx: Context) -> bool:
    return True


def _wipe_with_a_resolver(target: str, sure: Annotated[bool, Resolve(_confirm_wipe)]) -> str:
    return target


def test_the_decorator_cannot_ask_for_approval_beside_resolvers() -> None:
    engine = PolicyEngine.from_dict(WIPE_POLICY)
    with pytest.raises(TypeError, match=r"Resolve\(\.\.\.\) parameters own"):
        policy_guard(engine, approver="elicit")(_wipe_with_a_resolver)
    policy_guard(engine)(_wipe_with_a_resolver)  # other approvers are fine


# -- off the event loop, packaging --------------------------------------------------------------


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


@KINDS
async def test_a_blocking_store_is_called_off_the_event_loop(kind: str) -> None:
    store = ThreadRecordingStore()
    _, server = guarded(kind, PolicyEngine(POLICY, store=store))
    async with Client(server) as client:
        assert data(await client.call_tool("qflow_task_create", {"title": "a"})) == "created a"
    assert store.threads and threading.get_ident() not in store.threads


def test_the_demo_shows_allow_deny_rate_limit_and_approval() -> None:
    demo = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "mcp_sdk_demo.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    out = demo.stdout
    assert "MCPServer + PolicyMiddleware, protocol 2026-07-28" in out
    assert "low-level Server + PolicyGuard, protocol 2025-11-25" in out
    assert "error: [POLICY DENIED] Merging or deleting workspaces" in out
    assert "error: [POLICY DENIED] The tool 'qflow_task_delete' is not available" in out
    assert "error: [POLICY DENIED] Large batches need a human. The person asked declined" in out
    assert "[POLICY DENIED] Rate limit 'writes' (30 per minute) exceeded; retry in 2.0 s." in out
    assert out.count("the user answers: accept") == 2
    assert "result: applied C-7" in out


def test_the_core_package_does_not_import_the_sdk() -> None:
    code = (
        "import sys, policylayer_core, policylayer_core.audit, policylayer_core.cli; "
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
