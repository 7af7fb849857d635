"""`PolicyMiddleware` alone above a bare `call_next`, next to FastMCP's RateLimitingMiddleware.

The rows await a `MiddlewareContext` as a middleware sees a tools/call before it reaches
the tool, with a FastMCP `Context` and, bound for the whole run, the request context of a
2026-07-28 call without HTTP (stdio or in memory, what `Client`'s default mode
negotiates): no session, no access token. `call_next` is a coroutine function returning a
prebuilt `ToolResult`, so the rows differ only by the hook in front of it:

* the bare `await call_next(context)`;
* `PolicyMiddleware.on_call_tool` with the default identity ("anonymous" here) over the
  realistic policy (bursts raised, as in the engine rows) and the arguments of the
  engine's realistic row: the call is ALLOWED and takes its tokens. This is what a user
  pays; it includes the realistic `decide()` (its own row above);
* the same over the static policy, calling qflow_task_get (a static allow): the
  integration's own cost with the cheapest decision;
* FastMCP's `RateLimitingMiddleware.on_request`, per-client token buckets (the default
  "global" client id), at 10^9 requests a second so that it never refuses;
* `policylayer_core.mcp.PolicyMiddleware`, the MCP SDK's middleware form
  `(ctx, call_next)`, over the same two policies and calls: its `ctx` is the SDK's
  `ServerRequestContext` of a 2026-07-28 tools/call without HTTP (raw params, no
  session, no access token), and `call_next` returns the prebuilt wire dict the SDK's
  handler chain returns.

Each row awaits the same adapter shape, `fn(context, call_next, middleware)`, so the
medians minus the bare row's median are what each middleware adds to a call. FastMCP is
the `fastmcp` extra and the SDK the `mcp` extra: without one its rows show as "not
installed".
"""

from __future__ import annotations

from typing import Any

from benchmarks import policies
from benchmarks.harness import Case, Feed, Shape
from benchmarks.suite import Row, Sizes, optional

__all__ = [
    "BARE",
    "KEYS",
    "NAMES",
    "POLICY",
    "POLICY_STATIC",
    "RATE_LIMITING",
    "SDK_KEYS",
    "SDK_POLICY",
    "SDK_POLICY_STATIC",
    "middleware_rows",
]

BARE = "mw.bare_call_next"
POLICY = "mw.policy_middleware"
POLICY_STATIC = "mw.policy_middleware_static"
RATE_LIMITING = "mw.fastmcp_rate_limiting"
SDK_POLICY = "mw.sdk_policy_middleware"
SDK_POLICY_STATIC = "mw.sdk_policy_middleware_static"

NAMES = {
    BARE: "middleware: bare await call_next (the base)",
    POLICY: "middleware: PolicyMiddleware, realistic qflow_task_batch (allowed)",
    POLICY_STATIC: "middleware: PolicyMiddleware, static allow (qflow_task_get)",
    RATE_LIMITING: "middleware: FastMCP RateLimitingMiddleware (per client)",
    SDK_POLICY: "middleware: MCP SDK PolicyMiddleware, realistic qflow_task_batch (allowed)",
    SDK_POLICY_STATIC: "middleware: MCP SDK PolicyMiddleware, static allow (qflow_task_get)",
}
KEYS = [BARE, POLICY, POLICY_STATIC, RATE_LIMITING]
SDK_KEYS = [SDK_POLICY, SDK_POLICY_STATIC]


async def _bare(context: Any, call_next: Any, middleware: Any) -> Any:
    return await call_next(context)


async def _policy(context: Any, call_next: Any, middleware: Any) -> Any:
    return await middleware.on_call_tool(context, call_next)


async def _rate_limiting(context: Any, call_next: Any, middleware: Any) -> Any:
    return await middleware.on_request(context, call_next)


async def _sdk_policy(context: Any, call_next: Any, middleware: Any) -> Any:
    return await middleware(context, call_next)


def _build() -> list[Case]:
    import mcp_types  # noqa: PLC0415 - the fastmcp extra
    from fastmcp import FastMCP  # noqa: PLC0415
    from fastmcp.server.context import Context  # noqa: PLC0415
    from fastmcp.server.dependencies import (  # noqa: PLC0415
        FastMCPRequestContext,
        fastmcp_request_ctx,
    )
    from fastmcp.server.middleware import MiddlewareContext  # noqa: PLC0415
    from fastmcp.server.middleware.rate_limiting import RateLimitingMiddleware  # noqa: PLC0415
    from fastmcp.tools.base import ToolResult  # noqa: PLC0415

    from policylayer_core import PolicyEngine  # noqa: PLC0415
    from policylayer_core.fastmcp import PolicyMiddleware  # noqa: PLC0415

    # What FastMCP binds for a 2026-07-28 tools/call over stdio: no HTTP request, and a
    # per-request session the fast path never touches. Set in this (the benchmark's) main
    # context and left there: every task the harness creates copies it.
    fastmcp_request_ctx.set(
        FastMCPRequestContext(
            session=None,  # type: ignore[arg-type]
            request_id="1",
            meta=None,
            request=None,
            protocol_version="2026-07-28",
            close_sse_stream=None,
            lifespan_context={},
            _srctx=None,  # type: ignore[arg-type]
        )
    )
    server = FastMCP("benchmark")

    def context(tool: str, args: dict[str, Any]) -> Any:
        return MiddlewareContext(
            message=mcp_types.CallToolRequestParams(name=tool, arguments=args),
            fastmcp_context=Context(fastmcp=server),
            source="client",
            type="request",
            method="tools/call",
        )

    batch = Feed.const(context("qflow_task_batch", dict(policies.BATCH_ARGS)))
    get = Feed.const(context("qflow_task_get", {}))
    done = ToolResult(content=[mcp_types.TextContent(type="text", text="ok")])

    async def call_next(_: Any) -> Any:
        return done

    realistic = PolicyMiddleware(PolicyEngine.from_dict(policies.realistic_policy()))
    static = PolicyMiddleware(PolicyEngine.from_dict(policies.static_policy()))
    rate_limiting = RateLimitingMiddleware(max_requests_per_second=1e9)

    def returns_result(result: Any) -> str | None:
        return None if result is done else f"expected the tool's result, got {result!r}"

    return [
        Case(BARE, NAMES[BARE], _bare, Shape.AWAIT3, batch, (call_next, None),
             returns_result, group="middleware"),
        Case(POLICY, NAMES[POLICY], _policy, Shape.AWAIT3, batch, (call_next, realistic),
             returns_result, group="middleware"),
        Case(POLICY_STATIC, NAMES[POLICY_STATIC], _policy, Shape.AWAIT3, get,
             (call_next, static), returns_result, group="middleware"),
        Case(RATE_LIMITING, NAMES[RATE_LIMITING], _rate_limiting, Shape.AWAIT3, batch,
             (call_next, rate_limiting), returns_result, group="middleware"),
    ]  # fmt: skip


def _build_sdk() -> list[Case]:
    import mcp_types  # noqa: PLC0415 - the mcp extra
    from mcp.server.context import ServerRequestContext  # noqa: PLC0415

    from policylayer_core import PolicyEngine  # noqa: PLC0415
    from policylayer_core.mcp import PolicyMiddleware  # noqa: PLC0415

    def context(tool: str, args: dict[str, Any]) -> Any:
        # What the SDK's runner hands middleware for a 2026-07-28 tools/call over stdio:
        # raw params, and a per-request session the allowed path never touches.
        return ServerRequestContext(
            session=None,  # type: ignore[arg-type]
            lifespan_context={},
            protocol_version="2026-07-28",
            method="tools/call",
            params={"name": tool, "arguments": args},
            request_id=1,
        )

    batch = Feed.const(context("qflow_task_batch", dict(policies.BATCH_ARGS)))
    get = Feed.const(context("qflow_task_get", {}))
    text = mcp_types.TextContent(type="text", text="ok")
    done = mcp_types.CallToolResult(content=[text]).model_dump(
        by_alias=True, mode="json", exclude_none=True
    )

    async def call_next(_: Any) -> Any:
        return done

    realistic = PolicyMiddleware(PolicyEngine.from_dict(policies.realistic_policy()))
    static = PolicyMiddleware(PolicyEngine.from_dict(policies.static_policy()))

    def returns_result(result: Any) -> str | None:
        return None if result is done else f"expected the tool's result, got {result!r}"

    return [
        Case(SDK_POLICY, NAMES[SDK_POLICY], _sdk_policy, Shape.AWAIT3, batch,
             (call_next, realistic), returns_result, group="middleware"),
        Case(SDK_POLICY_STATIC, NAMES[SDK_POLICY_STATIC], _sdk_policy, Shape.AWAIT3, get,
             (call_next, static), returns_result, group="middleware"),
    ]  # fmt: skip


def middleware_rows(sizes: Sizes) -> list[Row]:
    fastmcp = optional(NAMES, KEYS, _build, group="middleware")
    sdk = optional(NAMES, SDK_KEYS, _build_sdk, group="middleware")
    # The SDK's rows beside FastMCP's PolicyMiddleware rows, above its RateLimitingMiddleware.
    return fastmcp[:3] + sdk + fastmcp[3:]
