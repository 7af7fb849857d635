"""`policy_guard`: one tool function of an MCP SDK `MCPServer`, guarded below `@server.tool()`.

MCPServer hands a tool the request's `Context` only through a parameter annotated with
it; the guard asks for one (a keyword-only parameter of its own, hidden from the input
schema as every `Context` parameter is) unless the function has its own, and shows the
function the signature it had otherwise. Exported by `policylayer_core.mcp`.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable, Coroutine, Mapping
from types import FrameType
from typing import Any

import anyio.to_thread
import mcp_types
from mcp.server.mcpserver import Context
from pydantic_core import to_jsonable_python

from policylayer_core._approvals import Approver, Call, Guard, View
from policylayer_core._mcp_calls import (
    APPROVAL_TTL,
    MAX_PENDING,
    MODEL_RESULTS,
    Identify,
    RequestContext,
    caller,
    make_gate,
    session_of,
)
from policylayer_core._which_server import decorated_for, servers_in_scope
from policylayer_core.engine import PolicyEngine

_CONTEXT_PARAMETER = "policylayer_context"  # the Context the guard asks MCPServer for


def policy_guard(
    engine: PolicyEngine,
    *,
    identify: Identify | None = None,
    approver: Approver = None,
    tool: str | None = None,
    approval_ttl: float = APPROVAL_TTL,
    max_pending: int = MAX_PENDING,
    clock: Callable[[], float] | None = None,
) -> Guard:
    """Guard one tool function (sync or async) of an `MCPServer`, below `@server.tool()`:

        @server.tool()
        @policy_guard(engine, approver="elicit")
        def qflow_task_delete(taskId: str) -> str: ...

    The options mean what they mean for `PolicyMiddleware`; `tool` is the name the
    policy knows the tool by (default: the function's name). The signature, docstring
    and annotations are kept, so MCPServer generates the same input and output schemas;
    the guard gets the call's `Context` from MCPServer through a parameter of its own
    (hidden from the schema, as every `Context` parameter is) unless the function has
    one. The guarded function is a coroutine function; a sync function runs in a worker
    thread after the decision, as MCPServer runs sync tools. The arguments judged are
    those the client sent (outside a client request, such as `await
    server.call_tool(...)`, those the function received, as JSON).

    Used where it cannot work (on a FastMCP tool, or above `@server.tool()`), it raises
    TypeError when the function is decorated.
    """
    gate = make_gate(
        engine, identify, approver, approval_ttl=approval_ttl, max_pending=max_pending,
        clock=clock,
    )  # fmt: skip

    def decorate(fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        if not callable(fn):
            raise TypeError(f"policy_guard takes the tool's function, not {fn!r}")
        frame = sys._getframe(1)
        if decorated_for(fn, frame) == "fastmcp":
            raise TypeError(_FOR_FASTMCP.format(fn=fn))
        _refuse_registered(fn, frame)
        name = tool if tool is not None else getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f"policy_guard cannot tell the tool's name of {fn!r}: pass tool=")
        if gate.elicit and _has_resolvers(fn):
            raise TypeError(_RESOLVERS.format(name=name))
        signature, own, added = _with_context_parameter(fn)
        is_async = _is_async(fn)

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            # MCPServer passes every argument, the Context too, by keyword.
            ctx = kwargs.pop(added, None) if added is not None else kwargs.get(own or "")
            rc = _request_context(ctx)
            identity = await caller(identify, rc)
            sent, state, responses = _wire_call(ctx, rc, name)
            if sent is None:
                sent = _received_arguments(fn, args, kwargs)

            async def run(view: View | None) -> Any:
                call_kwargs = kwargs
                if view is not None and own is not None and ctx is not None:
                    call_kwargs = {**kwargs, own: _shown(ctx, view)}
                if is_async:
                    return await fn(*args, **call_kwargs)
                return await anyio.to_thread.run_sync(functools.partial(fn, *args, **call_kwargs))

            call = Call(rc, identity, session_of(rc), name, sent)
            return await gate.call(call, run, MODEL_RESULTS, state=state, responses=responses)

        guarded.__signature__ = signature  # type: ignore[attr-defined]
        if added is not None:
            guarded.__annotations__ = {**getattr(fn, "__annotations__", {}), added: Context}
        return guarded

    return decorate


_FOR_FASTMCP = (
    "policylayer_core.mcp.policy_guard guards tools of the MCP SDK's MCPServer, but {fn!r} "
    "is being decorated for a FastMCP server: use policylayer_core.fastmcp.policy_guard "
    "(pip install 'policylayer-core[fastmcp]'), below @mcp.tool, or "
    "policylayer_core.fastmcp.PolicyMiddleware"
)
_ABOVE = (
    "policy_guard must wrap the function before MCPServer registers it: put "
    "@policy_guard(...) below @server.tool(), not above it ({fn!r} is already a tool of "
    "{server!r}, which would go on calling it unguarded)"
)
_RESOLVERS = (
    "policy_guard(approver='elicit') cannot ask for approval on the tool {name!r}: its "
    "Resolve(...) parameters own the tool's input_required round trip on 2026-07-28. "
    "Guard it with policylayer_core.mcp.PolicyMiddleware, which decides before the "
    "resolvers run, or pass another approver"
)


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether MCPServer would await `fn` (a coroutine function, also behind a partial or
    as a callable object's `__call__`) rather than run it in a worker thread."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = type(fn).__call__ if not inspect.isfunction(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _refuse_registered(fn: Callable[..., Any], frame: FrameType | None) -> None:
    """TypeError when an MCPServer in scope already has `fn` as a tool (guard above)."""
    for server in servers_in_scope(frame)["mcp"]:
        manager = getattr(server, "_tool_manager", None)
        listed = getattr(manager, "list_tools", None)
        if callable(listed) and any(getattr(t, "fn", None) is fn for t in listed()):
            raise TypeError(_ABOVE.format(fn=fn, server=server))


def _has_resolvers(fn: Callable[..., Any]) -> bool:
    try:
        from mcp.server.mcpserver.resolve import find_resolved_parameters  # noqa: PLC0415

        return bool(find_resolved_parameters(fn))
    except Exception:  # MCPServer reports a broken signature itself, at registration
        return False


def _context_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of `fn`'s own `Context` parameter, as MCPServer finds it, if it has one."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    for name, hint in hints.items():
        arms = typing.get_args(hint) or (hint,)
        if name != "return" and any(
            isinstance(arm, type) and issubclass(arm, Context) for arm in arms
        ):
            return name
    return None


def _with_context_parameter(
    fn: Callable[..., Any],
) -> tuple[inspect.Signature, str | None, str | None]:
    """The signature MCPServer is to see, `fn`'s own Context parameter, and ours if added.

    MCPServer hands the request's `Context` only to a parameter annotated with it, and
    leaves that parameter out of the input schema; a function without one gets a
    keyword-only one here (with a default, so the function can still be called directly).
    """
    try:
        signature = inspect.signature(fn, eval_str=True)  # what MCPServer would read
    except NameError:
        signature = inspect.signature(fn)
    own = _context_parameter(fn)
    if own is not None:
        return signature, own, None
    taken = set(signature.parameters)
    added = _CONTEXT_PARAMETER
    while added in taken:
        added += "_"
    parameters = list(signature.parameters.values())
    ours = inspect.Parameter(
        added, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context
    )
    at = len(parameters)
    if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    parameters.insert(at, ours)
    return signature.replace(parameters=parameters), None, added


def _request_context(ctx: Any) -> RequestContext | None:
    """The SDK request context behind an MCPServer `Context`, or None outside a request."""
    if not isinstance(ctx, Context):
        return None
    try:
        return ctx.request_context
    except ValueError:  # "Context is not available outside of a request"
        return None


def _wire_call(
    ctx: Any, rc: RequestContext | None, name: str
) -> tuple[dict[str, Any] | None, str | None, mcp_types.InputResponses | None]:
    """The arguments, state and answers of the client's tools/call, when it calls `name`."""
    if rc is None or rc.method != "tools/call" or rc.params is None:
        return None, None, None
    if rc.params.get("name") != name:
        return None, None, None
    raw = rc.params.get("arguments")
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


def _shown(ctx: Context[Any, Any], view: View) -> Context[Any, Any]:
    """`ctx` with `view` as the round's `request_state` and `input_responses`."""
    shown = ctx.model_copy()
    shown._input_params = mcp_types.InputResponseRequestParams(
        request_state=view.request_state, input_responses=view.input_responses
    )
    return shown
