"""FastMCP integration: `PolicyMiddleware` for a server or a proxy, `policy_guard` for one tool.

    pip install 'policylayer-core[fastmcp]'

    from fastmcp import FastMCP
    from policylayer_core import PolicyEngine
    from policylayer_core.fastmcp import PolicyMiddleware

    engine = PolicyEngine.from_file("policy.json")
    mcp = FastMCP("qflow")
    mcp.add_middleware(PolicyMiddleware(engine, approver="elicit"))

Every `tools/call` is decided before the tool runs. A refusal (denied, rate limited,
approval refused) raises `fastmcp.exceptions.ToolError("[POLICY DENIED] " + reason)`,
which the client receives as an `isError` result with exactly that text; the tool never
runs. When the tool itself fails, the tokens the call took are given back and the
tool's error goes through unchanged. `tools/list` shows each caller only the tools its
policy lets it see. docs/fastmcp.md describes identities, sessions, approvals on both
protocol eras and every error text.

Importing this module imports fastmcp; `import policylayer_core` never does.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

try:
    import fastmcp  # noqa: F401  (the check that the extra is installed)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "policylayer_core.fastmcp needs FastMCP: pip install 'policylayer-core[fastmcp]'"
    ) from exc

import mcp_types
from fastmcp.decorators import get_fastmcp_meta
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from fastmcp.server.dependencies import (
    FastMCPRequestContext,
    bind_request_context,
    fastmcp_request_ctx,
    get_access_token,
    get_context,
)
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import InputRequiredToolResult, Tool, ToolResult
from fastmcp.utilities.async_utils import call_sync_fn_in_threadpool
from fastmcp.utilities.components import FastMCPComponent
from mcp.server.auth.middleware.auth_context import get_access_token as sdk_access_token
from mcp.server.auth.provider import AccessToken
from pydantic_core import to_jsonable_python

from policylayer_core._approvals import (
    DENIED,
    ApprovalRequest,
    Approver,
    Call,
    Gate,
    Guard,
    Results,
    View,
    can_elicit_form,
    decide_off_loop,
    is_modern,
    refusal_text,
)
from policylayer_core._which_server import decorated_for
from policylayer_core.decision import Decision, Effect
from policylayer_core.engine import PolicyEngine

__all__ = ["DENIED", "ApprovalRequest", "Approver", "Identify", "PolicyMiddleware", "policy_guard"]

Identify: TypeAlias = Callable[[Context], str | Awaitable[str]]


_APPROVAL_TTL = 600.0  # seconds a 2026-07-28 approval question stays answerable
_MAX_PENDING = 10_000  # questions waiting for an answer, at most (oldest forgotten first)

_log = logging.getLogger("policylayer_core.fastmcp")


# -- who is calling, in which session --------------------------------------------------------


def default_identity(rc: FastMCPRequestContext | None) -> str:
    """The authenticated access token's client id, else "anonymous"."""
    if rc is not None and rc.request is None:
        # A request without HTTP (stdio, in memory): FastMCP's get_access_token() finds
        # no HTTP request (raising and catching on the way) and reads the SDK's context
        # variable; reading that directly costs a tenth.
        token: AccessToken | None = sdk_access_token()
    else:
        token = get_access_token()
    return token.client_id if token is not None and token.client_id else "anonymous"


def session_of(ctx: Context | None, rc: FastMCPRequestContext | None) -> str | None:
    """The transport session of this call, or None where the protocol has none.

    Handshake-era connections have one: the `mcp-session-id` of streamable HTTP, or an id
    FastMCP mints once per stdio or in-memory connection. Stateless HTTP has none, and on
    2026-07-28 FastMCP gives every request a new id, which must never key a counter
    (every call would get a fresh bucket): both give None.
    """
    if ctx is None or rc is None or is_modern(rc):
        return None
    if rc.request is not None and rc.request.headers.get("mcp-session-id") is None:
        return None  # streamable HTTP without sessions (stateless_http)
    try:
        return ctx.session_id
    except RuntimeError:
        return None


async def _identity(identify: Identify | None, ctx: Context | None) -> str:
    if identify is None:
        return default_identity(ctx.request_context if ctx is not None else None)
    if ctx is None:
        raise RuntimeError("no FastMCP Context: cannot identify the caller")
    who = identify(ctx)
    return await who if inspect.isawaitable(who) else who


def refuse(decision: Decision, why: str = "") -> ToolError:
    """The error a client sees: `[POLICY DENIED] ` and the reason (and why no approval)."""
    # A refusal is the policy working, not a failing tool: FastMCP logs a ToolError raised
    # inside a tool at its `log_level`, ERROR unless told otherwise ("Error calling tool"
    # for every denial of a decorated tool). The audit log is where refusals are recorded.
    return ToolError(refusal_text(decision, why), log_level=logging.DEBUG)


class _FastMCPPeer:
    """How the gate reaches a FastMCP client: through the call's FastMCP `Context`."""

    log = _log

    def modern(self, ctx: Context | None) -> bool:
        return is_modern(ctx.request_context if ctx is not None else None)

    def can_elicit(self, ctx: Context | None) -> bool:
        try:
            capabilities = ctx.session.client_capabilities if ctx is not None else None
        except RuntimeError:  # no session
            return False
        return can_elicit_form(capabilities)

    async def elicit(
        self, ctx: Context | None, message: str, schema: dict[str, Any]
    ) -> mcp_types.ElicitResult:
        if ctx is None:
            raise RuntimeError("no FastMCP Context to ask the client through")
        return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


_PEER = _FastMCPPeer()


def _gate(engine: PolicyEngine, identify: Any, approver: Approver, **options: Any) -> Gate:
    if identify is not None and not callable(identify):
        raise TypeError(f"identify must be a callable, not {identify!r}")
    return Gate(engine, approver, peer=_PEER, **options)


@contextmanager
def _bound_view(ctx: Context | None, view: View | None) -> Iterator[None]:
    """Show what runs below `view` instead of the round's wire `requestState` and answers.

    FastMCP reads `ctx.request_state` and `ctx.input_responses` (and a proxy forwards them
    to its backend) from the SDK request context bound for the request; this binds a copy
    whose params carry the view, for the duration of the block.
    """
    rc = ctx.request_context if ctx is not None and view is not None else None
    if rc is None or view is None or not isinstance(rc._srctx.params, Mapping):
        yield
        return
    params = {
        k: v for k, v in rc._srctx.params.items() if k not in ("requestState", "inputResponses")
    }
    if view.request_state is not None:
        params["requestState"] = view.request_state
    if view.input_responses:
        params["inputResponses"] = {
            key: response.model_dump(by_alias=True, mode="json", exclude_none=True)
            for key, response in view.input_responses.items()
        }
    with bind_request_context(dataclasses.replace(rc._srctx, params=params)):
        yield


# -- the middleware -------------------------------------------------------------------------------


class _ToolResults(Results[ToolResult]):
    """Results as the middleware sees them: `ToolResult`, an ask is `InputRequiredToolResult`."""

    def refused(self, decision: Decision, why: str) -> ToolResult:
        raise refuse(decision, why)

    def asking(self, question: mcp_types.InputRequiredResult) -> ToolResult:
        return InputRequiredToolResult(question)

    def input_required(self, result: ToolResult) -> mcp_types.InputRequiredResult | None:
        return result.input_required if isinstance(result, InputRequiredToolResult) else None

    def rewrap(self, result: ToolResult, question: mcp_types.InputRequiredResult) -> ToolResult:
        return InputRequiredToolResult(question)

    def failed(self, result: ToolResult) -> bool:
        return isinstance(result, ToolResult) and result.is_error


class _RawResults(Results[Any]):
    """Results as a tool function returns them: anything, an ask is `InputRequiredResult`."""

    def refused(self, decision: Decision, why: str) -> Any:
        raise refuse(decision, why)

    def asking(self, question: mcp_types.InputRequiredResult) -> Any:
        return question  # FastMCP wraps what a tool returns into InputRequiredToolResult

    def input_required(self, result: Any) -> mcp_types.InputRequiredResult | None:
        return result if isinstance(result, mcp_types.InputRequiredResult) else None

    def rewrap(self, result: Any, question: mcp_types.InputRequiredResult) -> Any:
        return question

    def failed(self, result: Any) -> bool:
        return isinstance(result, ToolResult | mcp_types.CallToolResult) and result.is_error


_TOOL_RESULTS = _ToolResults()
_RAW_RESULTS = _RawResults()


class PolicyMiddleware(Middleware):
    """Decides every tool call of a FastMCP server (or proxy) against a policy engine.

    - `identify(ctx)`: sync or async, given the FastMCP `Context`, returns the caller's
      identity. Default: the authenticated access token's client id, else "anonymous".
    - `approver`: what happens to a call that needs approval. `None`: it is denied with
      the rule's reason. A callable (sync or async) given an `ApprovalRequest`: True
      approves. `"elicit"`: the MCP client asks its user (accept approves; decline,
      cancel, or a client without elicitation denies), on both protocol eras.
    - `approval_ttl`, `max_pending`: how long a 2026-07-28 approval question stays
      answerable, and how many may wait at once; `clock` is the clock of that expiry
      (default: the engine's clock).

    An approved call is decided again with `approved=True`, so every other rule and
    every limit still applies.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        identify: Identify | None = None,
        approver: Approver = None,
        approval_ttl: float = _APPROVAL_TTL,
        max_pending: int = _MAX_PENDING,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self._identify = identify
        self._gate = _gate(
            engine,
            identify,
            approver,
            approval_ttl=approval_ttl,
            max_pending=max_pending,
            clock=clock,
        )

    async def on_call_tool(
        self,
        context: MiddlewareContext[mcp_types.CallToolRequestParams],
        call_next: CallNext[mcp_types.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        ctx = context.fastmcp_context
        rc = fastmcp_request_ctx.get()  # what ctx.request_context reads, without the property
        gate = self._gate
        if self._identify is None:
            identity = default_identity(rc)
        else:
            identity = await _identity(self._identify, ctx)
        session = session_of(ctx, rc)
        message = context.message
        if message.request_state is None and not (gate.elicit and is_modern(rc)):
            # The common round: nothing to resume and nothing to ask across rounds.
            d = await decide_off_loop(
                self.engine, identity, message.name, message.arguments, session=session
            )
            if d.allowed:
                try:
                    result = await call_next(context)
                except BaseException:
                    d.refund()
                    raise
                if result.__class__ is ToolResult:
                    if result.is_error:
                        d.refund()
                elif _TOOL_RESULTS.failed(result) or isinstance(result, InputRequiredToolResult):
                    d.refund()
                return result
            if d.effect is not Effect.APPROVAL_REQUIRED or gate.approver is None:
                raise refuse(d)
            call = Call(ctx, identity, session, message.name, message.arguments)
            return await gate.settle(d, call, _runner(context, call_next), _TOOL_RESULTS)
        return await gate.call(
            Call(ctx, identity, session, message.name, message.arguments),
            _runner(context, call_next),
            _TOOL_RESULTS,
            state=message.request_state,
            responses=message.input_responses,
        )

    async def on_list_tools(
        self,
        context: MiddlewareContext[mcp_types.ListToolsRequest],
        call_next: CallNext[mcp_types.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        tools = await call_next(context)
        identity = await _identity(self._identify, context.fastmcp_context)
        visible = set(self.engine.visible_tools(identity, [tool.name for tool in tools]))
        return [tool for tool in tools if tool.name in visible]


def _runner(
    context: MiddlewareContext[mcp_types.CallToolRequestParams],
    call_next: CallNext[mcp_types.CallToolRequestParams, ToolResult],
) -> Callable[[View | None], Awaitable[ToolResult]]:
    """`call_next`, showing what runs below the round as the tool is to see it."""

    async def run(view: View | None) -> ToolResult:
        if view is None:
            return await call_next(context)
        message = context.message.model_copy(
            update={"request_state": view.request_state, "input_responses": view.input_responses}
        )
        with _bound_view(context.fastmcp_context, view):
            return await call_next(context.copy(message=message))

    return run


# -- the decorator -----------------------------------------------------------------------------


def policy_guard(
    engine: PolicyEngine,
    *,
    identify: Identify | None = None,
    approver: Approver = None,
    tool: str | None = None,
    approval_ttl: float = _APPROVAL_TTL,
    max_pending: int = _MAX_PENDING,
    clock: Callable[[], float] | None = None,
) -> Guard:
    """Guard one tool function (sync or async) with the policy, below `@mcp.tool`:

        @mcp.tool
        @policy_guard(engine, approver="elicit")
        def qflow_task_delete(taskId: str) -> str: ...

    The options mean what they mean for `PolicyMiddleware`; `tool` is the name the
    policy knows the tool by (default: the function's name). The signature, docstring
    and annotations are kept, so FastMCP generates the same input and output schemas.
    The guarded function is a coroutine function; a sync function runs in a worker
    thread after the decision, as FastMCP runs sync tools. The call's `Context` comes
    from `fastmcp.server.dependencies.get_context()`, and the arguments judged are
    those the client sent (outside a client request, such as `await mcp.call_tool(...)`
    on a mounted or renamed tool, those the function received, as JSON).
    """
    gate = _gate(
        engine, identify, approver, approval_ttl=approval_ttl, max_pending=max_pending,
        clock=clock,
    )  # fmt: skip

    def decorate(fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        # `@mcp.tool` registers the function it decorates and returns it marked with its
        # metadata: a guard above it would wrap a function FastMCP no longer calls.
        if isinstance(fn, FastMCPComponent) or get_fastmcp_meta(fn) is not None:
            raise TypeError(
                "policy_guard must wrap the function before FastMCP registers it: put "
                f"@policy_guard(...) below @mcp.tool, not above it (got {fn!r})"
            )
        if not callable(fn):
            raise TypeError(f"policy_guard takes the tool's function, not {fn!r}")
        if decorated_for(fn, sys._getframe(1)) == "mcp":
            raise TypeError(_FOR_THE_SDK.format(fn=fn))
        name = tool if tool is not None else getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f"policy_guard cannot tell the tool's name of {fn!r}: pass tool=")
        is_async = inspect.iscoroutinefunction(fn)

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                ctx = get_context()
            except RuntimeError as exc:
                raise RuntimeError(_NO_CONTEXT.format(name=name)) from exc
            identity = await _identity(identify, ctx)
            sent, state, responses = _wire_call(ctx, name)
            if sent is None:
                sent = _received_arguments(fn, args, kwargs)

            async def run(view: View | None) -> Any:
                with _bound_view(ctx, view):
                    if is_async:
                        return await fn(*args, **kwargs)
                    return await call_sync_fn_in_threadpool(fn, *args, **kwargs)

            call = Call(ctx, identity, session_of(ctx, ctx.request_context), name, sent)
            return await gate.call(call, run, _RAW_RESULTS, state=state, responses=responses)

        return guarded

    return decorate


_FOR_THE_SDK = (
    "policylayer_core.fastmcp.policy_guard guards FastMCP tools, but {fn!r} is being "
    "decorated for the MCP SDK's MCPServer (mcp.server.mcpserver), where it could never "
    "find its FastMCP context: use policylayer_core.mcp.policy_guard (pip install "
    "'policylayer-core[mcp]'), below @server.tool(), or policylayer_core.mcp.PolicyMiddleware"
)
_NO_CONTEXT = (
    "policy_guard on {name!r} found no FastMCP request context: "
    "policylayer_core.fastmcp.policy_guard guards tools of a FastMCP server called by a "
    "client. For a tool of the MCP SDK's MCPServer use policylayer_core.mcp.policy_guard."
)


def _wire_call(
    ctx: Context, name: str
) -> tuple[dict[str, Any] | None, str | None, mcp_types.InputResponses | None]:
    """The arguments, state and answers of the client's tools/call, when it calls `name`."""
    rc = ctx.request_context
    if rc is None:
        return None, None, None
    request = rc._srctx
    params = request.params
    if request.method != "tools/call" or not isinstance(params, Mapping):
        return None, None, None
    if params.get("name") != name:
        return None, None, None
    raw = params.get("arguments")
    sent = dict(raw) if isinstance(raw, Mapping) else {}
    return sent, ctx.request_state, ctx.input_responses


def _received_arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The function's arguments as JSON, without the injected Context."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = dict(kwargs)
    return {
        key: to_jsonable_python(value, fallback=repr)
        for key, value in bound.items()
        if not isinstance(value, Context)
    }
