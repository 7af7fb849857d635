"""MCP Python SDK integration: a middleware, a decorator and a handler guard.

    pip install 'policylayer-core[mcp]'

    from mcp.server.mcpserver import MCPServer
    from policylayer_core import PolicyEngine
    from policylayer_core.mcp import PolicyMiddleware

    engine = PolicyEngine.from_file("policy.json")
    server = MCPServer("qflow", middleware=[PolicyMiddleware(engine, approver="elicit")])

For servers built on the official SDK (`mcp` 2.x), on both protocol eras:

* `PolicyMiddleware`: the SDK's own middleware form, `async (ctx, call_next)`, for
  `MCPServer(middleware=[...])` or `server.middleware` of either server class: every
  `tools/call` is decided before the tool runs, and `tools/list` shows each caller only
  the tools its policy lets it see;
* `policy_guard`: a decorator for one `MCPServer` tool function, below `@server.tool()`;
* `PolicyGuard`: wraps the `on_call_tool` and `on_list_tools` handlers of a low-level
  `mcp.server.Server`.

A refusal (denied, rate limited, approval refused) is a `CallToolResult` with
`isError: true` whose only text is `"[POLICY DENIED] " + reason`; the tool never runs.
When the tool fails, the tokens the call took are given back and its error goes through
unchanged. docs/mcp-sdk.md describes identities, sessions, approvals and every error text.

Importing this module imports the SDK; `import policylayer_core` never does.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

try:
    import mcp_types
    from mcp.server.context import CallNext, HandlerResult
    from mcp.server.mcpserver import MCPServer  # noqa: F401  (2.x: where FastMCP was renamed)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "policylayer_core.mcp needs the MCP Python SDK 2.3 or newer (where servers take "
        "`middleware` and FastMCP is named MCPServer): pip install 'policylayer-core[mcp]'"
    ) from exc

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from policylayer_core._approvals import (
    DENIED,
    ApprovalRequest,
    Approver,
    Call,
    Results,
    Run,
    View,
    decide_off_loop,
    is_modern,
)
from policylayer_core._mcp_calls import (
    APPROVAL_TTL,
    MAX_PENDING,
    MODEL_RESULTS,
    Identify,
    RequestContext,
    WireResults,
    caller,
    costs_nothing,
    default_identity,
    make_gate,
    parse_responses,
    session_of,
    visible_only,
    wire_params,
)
from policylayer_core._mcp_decorator import policy_guard
from policylayer_core.decision import Decision, Effect
from policylayer_core.engine import PolicyEngine

__all__ = [
    "DENIED",
    "ApprovalRequest",
    "Approver",
    "Identify",
    "PolicyGuard",
    "PolicyMiddleware",
    "policy_guard",
]

CallToolHandler: TypeAlias = Callable[
    [RequestContext, mcp_types.CallToolRequestParams],
    Awaitable[mcp_types.CallToolResult | mcp_types.InputRequiredResult],
]
ListToolsHandler: TypeAlias = Callable[
    [RequestContext, mcp_types.PaginatedRequestParams | None],
    Awaitable[mcp_types.ListToolsResult],
]


class _Policy:
    """The options both `PolicyMiddleware` and `PolicyGuard` take, and the call they share."""

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        identify: Identify | None = None,
        approver: Approver = None,
        approval_ttl: float = APPROVAL_TTL,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self._identify = identify
        self._gate = make_gate(
            engine, identify, approver, approval_ttl=approval_ttl, max_pending=max_pending,
            clock=clock,
        )  # fmt: skip

    async def _who(self, rc: RequestContext) -> tuple[str, str | None]:
        """The caller's identity and session."""
        if self._identify is None:
            identity = default_identity()
        else:
            identity = await caller(self._identify, rc)
        return identity, session_of(rc)

    def _common(self, rc: RequestContext, state: Any) -> bool:
        """True for the common round: nothing to resume, nothing to ask across rounds."""
        return state is None and not (self._gate.elicit and is_modern(rc))

    async def _not_allowed(
        self, d: Decision, call: Call, run: Run[Any], results: Results[Any]
    ) -> Any:
        """Refuse `d`, or get its approval and run the call."""
        if d.effect is not Effect.APPROVAL_REQUIRED or self._gate.approver is None:
            return results.refused(d, "")
        return await self._gate.settle(d, call, run, results)

    async def _across_rounds(
        self, call: Call, state: Any, raw_responses: Any, run: Run[Any], results: Results[Any]
    ) -> Any:
        """A round that resumes one of ours, or may end in a question: the gate's."""
        state = state if isinstance(state, str) else None
        responses = parse_responses(raw_responses)
        return await self._gate.call(call, run, results, state=state, responses=responses)

    async def _list(self, rc: RequestContext, result: Any) -> Any:
        identity = await caller(self._identify, rc)
        return visible_only(self.engine, identity, result)


async def _ran(d: Decision, pending: Awaitable[Any]) -> Any:
    """The allowed call's result; its tokens back when it fails or only asks a question."""
    try:
        result = await pending
    except BaseException:
        d.refund()
        raise
    if costs_nothing(result):
        d.refund()
    return result


class PolicyMiddleware(_Policy):
    """Decides every tool call of an MCP SDK server against a policy engine.

    The SDK's middleware form, `async (ctx, call_next)`: pass it to
    `MCPServer(middleware=[...])`, or append it to `server.middleware` of an `MCPServer`
    or a low-level `Server`.

    - `identify(ctx)`: sync or async, given the SDK's `ServerRequestContext`, returns the
      caller's identity. Default: the authenticated access token's client id (the SDK's
      auth context), else "anonymous".
    - `approver`: what happens to a call that needs approval. `None`: it is denied with
      the rule's reason. A callable (sync or async) given an `ApprovalRequest`: True
      approves. `"elicit"`: the MCP client asks its user (accept approves; decline,
      cancel, or a client without elicitation denies), on both protocol eras.
    - `approval_ttl`, `max_pending`: how long a 2026-07-28 approval question stays
      answerable, and how many may wait at once; `clock` is the clock of that expiry
      (default: the engine's clock).

    An approved call is decided again with `approved=True`, so every other rule and
    every limit still applies. Every other method passes through untouched.
    """

    async def __call__(self, ctx: RequestContext, call_next: CallNext) -> HandlerResult:
        # Every request and notification of the server passes here: the common allowed
        # tools/call is kept to plain reads and one decide() (no helper coroutines).
        method = ctx.method
        if method == "tools/call":
            params = ctx.params
            if params.__class__ is dict or isinstance(params, Mapping):
                name = params.get("name")
            else:
                name = None
            if name.__class__ is not str:
                # Not a call the policy can judge: the SDK refuses it (INVALID_PARAMS)
                # before any handler runs.
                return await call_next(ctx)
            assert params is not None  # for mypy: a name was read from it
            args, state = params.get("arguments"), params.get("requestState")
            modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            if self._identify is None:
                identity = default_identity()
            else:
                identity = await caller(self._identify, ctx)
            session = None if modern else session_of(ctx)
            common = state is None and not (modern and self._gate.elicit)
            if common:
                d = await decide_off_loop(self.engine, identity, name, args, session=session)
                if d.allowed:
                    try:
                        result = await call_next(ctx)
                    except BaseException:
                        d.refund()
                        raise
                    if costs_nothing(result):
                        d.refund()
                    return result
            # Past the common allowed call: a refusal, an approval, or a round across rounds.
            call = Call(ctx, identity, session, name, args)
            run = _middleware_runner(ctx, call_next)
            results = WireResults(ctx.protocol_version)
            if common:
                return await self._not_allowed(d, call, run, results)  # type: ignore[no-any-return]
            raw = params.get("inputResponses")
            return await self._across_rounds(call, state, raw, run, results)  # type: ignore[no-any-return]
        if method == "tools/list":
            return await self._list(ctx, await call_next(ctx))  # type: ignore[no-any-return]
        return await call_next(ctx)


def _middleware_runner(ctx: RequestContext, call_next: CallNext) -> Run[Any]:
    """`call_next`, showing the rest of the chain the round as the tool is to see it."""

    async def run(view: View | None) -> Any:
        if view is None:
            return await call_next(ctx)
        return await call_next(dataclasses.replace(ctx, params=wire_params(ctx.params, view)))

    return run


class PolicyGuard(_Policy):
    """Guards the tool handlers of a low-level `mcp.server.Server`:

        guard = PolicyGuard(engine, approver="elicit")
        server = Server(
            "qflow",
            on_list_tools=guard.list_tools(list_tools),
            on_call_tool=guard.call_tool(call_tool),
        )

    `call_tool(handler)` decides every call before `handler` runs; `list_tools(handler)`
    keeps in each `ListToolsResult` only the tools the caller may see. Both also work as
    decorators on the handlers. The options mean what they mean for `PolicyMiddleware`.
    """

    def call_tool(self, handler: CallToolHandler) -> CallToolHandler:
        """`handler` for `Server(on_call_tool=...)`, run only for calls the policy allows."""
        if not callable(handler):
            raise TypeError(
                f"PolicyGuard.call_tool takes the on_call_tool handler, not {handler!r}"
            )

        @functools.wraps(handler)
        async def guarded(
            ctx: RequestContext, params: mcp_types.CallToolRequestParams
        ) -> mcp_types.CallToolResult | mcp_types.InputRequiredResult:
            name, args, state = params.name, params.arguments, params.request_state
            identity, session = await self._who(ctx)

            async def run(view: View | None) -> Any:
                if view is None:
                    return await handler(ctx, params)
                shown = params.model_copy(
                    update={
                        "request_state": view.request_state,
                        "input_responses": view.input_responses,
                    }
                )
                return await handler(
                    dataclasses.replace(ctx, params=wire_params(ctx.params, view)), shown
                )

            if self._common(ctx, state):
                d = await decide_off_loop(self.engine, identity, name, args, session=session)
                if d.allowed:
                    return await _ran(d, handler(ctx, params))  # type: ignore[no-any-return]
                call = Call(ctx, identity, session, name, args)
                return await self._not_allowed(d, call, run, MODEL_RESULTS)  # type: ignore[no-any-return]
            call = Call(ctx, identity, session, name, args)
            raw = params.input_responses
            return await self._across_rounds(call, state, raw, run, MODEL_RESULTS)  # type: ignore[no-any-return]

        return guarded

    def list_tools(self, handler: ListToolsHandler) -> ListToolsHandler:
        """`handler` for `Server(on_list_tools=...)`, its result filtered per caller."""
        if not callable(handler):
            raise TypeError(
                f"PolicyGuard.list_tools takes the on_list_tools handler, not {handler!r}"
            )

        @functools.wraps(handler)
        async def guarded(
            ctx: RequestContext, params: mcp_types.PaginatedRequestParams | None
        ) -> mcp_types.ListToolsResult:
            return await self._list(ctx, await handler(ctx, params))  # type: ignore[no-any-return]

        return guarded
