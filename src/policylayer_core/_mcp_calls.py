"""The parts of `policylayer_core.mcp` every one of its guards uses.

Who calls (identity), in which session, how the client is asked (the gate's `Peer`), and
how results and refusals look to the SDK: models for a handler or a tool function, wire
dicts for middleware.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import mcp_types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import ServerRequestContext
from mcp_types.methods import is_input_required, serialize_server_result
from pydantic import ValidationError

from policylayer_core._approvals import (
    Approver,
    Gate,
    Results,
    View,
    can_elicit_form,
    is_modern,
    refusal_text,
)
from policylayer_core.decision import Decision
from policylayer_core.engine import PolicyEngine

RequestContext: TypeAlias = ServerRequestContext[Any, Any]
Identify: TypeAlias = Callable[[RequestContext], str | Awaitable[str]]

APPROVAL_TTL = 600.0  # seconds a 2026-07-28 approval question stays answerable
MAX_PENDING = 10_000  # questions waiting for an answer, at most (oldest forgotten first)
_SESSION_KEY = "policylayer_core.session"  # our id of a stdio or in-memory connection

_log = logging.getLogger("policylayer_core.mcp")


# -- who is calling, in which session --------------------------------------------------------


def default_identity() -> str:
    """The authenticated access token's client id (the SDK's auth context), else "anonymous"."""
    token = get_access_token()
    return token.client_id if token is not None and token.client_id else "anonymous"


async def caller(identify: Identify | None, rc: RequestContext | None) -> str:
    if identify is None:
        return default_identity()
    if rc is None:
        raise RuntimeError(
            "policy_guard was called outside a client request, so there is no request "
            "context to give identify(): call the tool through a client"
        )
    who = identify(rc)
    return await who if inspect.isawaitable(who) else who


def session_of(rc: RequestContext | None) -> str | None:
    """The transport session of this call, or None where the protocol has none.

    A handshake-era connection has one: the `mcp-session-id` of streamable HTTP, or an
    id minted here once per stdio or in-memory connection (kept in the connection's
    `state`). HTTP without sessions and every 2026-07-28 request have none: each request
    is a connection of its own there, whose id would give every call a fresh bucket.
    """
    if rc is None or is_modern(rc):
        return None
    # ServerSession is built per request; the Connection behind it lives as long as the
    # client's connection (FastMCP reads the same attribute for its session ids).
    connection = getattr(rc.session, "_connection", None)
    if connection is None:
        return None
    session_id = connection.session_id
    if isinstance(session_id, str):
        return session_id
    if rc.request is not None:
        return None  # HTTP without a session id: stateless, one connection per request
    state = connection.state
    minted = state.get(_SESSION_KEY)
    if not isinstance(minted, str):
        minted = state[_SESSION_KEY] = secrets.token_hex(16)
    return minted


class _SDKPeer:
    """How the gate reaches the client: through the SDK's `ServerRequestContext`."""

    log = _log

    def modern(self, rc: RequestContext | None) -> bool:
        return is_modern(rc)

    def can_elicit(self, rc: RequestContext | None) -> bool:
        return rc is not None and can_elicit_form(rc.session.client_capabilities)

    async def elicit(
        self, rc: RequestContext | None, message: str, schema: dict[str, Any]
    ) -> mcp_types.ElicitResult:
        if rc is None:
            raise RuntimeError("no request context to ask the client through")
        return await rc.session.elicit_form(message, schema, related_request_id=rc.request_id)


_PEER = _SDKPeer()


def make_gate(engine: PolicyEngine, identify: Any, approver: Approver, **options: Any) -> Gate:
    if identify is not None and not callable(identify):
        raise TypeError(f"identify must be a callable, not {identify!r}")
    return Gate(engine, approver, peer=_PEER, **options)


# -- results: models, wire dicts, refusals ---------------------------------------------------


def denial(decision: Decision, why: str) -> mcp_types.CallToolResult:
    text = mcp_types.TextContent(type="text", text=refusal_text(decision, why))
    return mcp_types.CallToolResult(content=[text], is_error=True)


def costs_nothing(result: Any) -> bool:
    """True when an allowed call's result says its tokens go back: the tool failed (an
    `isError` result), or the round only asks a question (`input_required`)."""
    if result.__class__ is dict:  # what the SDK's handler chain hands middleware
        return result.get("isError") is True or result.get("resultType") == "input_required"
    return is_error(result) or is_input_required(result)


def is_error(result: Any) -> bool:
    if isinstance(result, mcp_types.CallToolResult):
        return result.is_error
    return isinstance(result, Mapping) and result.get("isError") is True


def _as_input_required(result: Any) -> mcp_types.InputRequiredResult | None:
    if isinstance(result, mcp_types.InputRequiredResult):
        return result
    if isinstance(result, Mapping) and is_input_required(result):
        try:
            return mcp_types.InputRequiredResult.model_validate(result, by_name=False)
        except ValidationError:
            return None
    return None


class ModelResults(Results[Any]):
    """Results as a handler or a tool function returns them: `CallToolResult` (or its wire
    dict), an ask is `InputRequiredResult`, a refusal is an `isError` `CallToolResult`
    (MCPServer hands a tool's `CallToolResult` to the client unchanged)."""

    def refused(self, decision: Decision, why: str) -> Any:
        return denial(decision, why)

    def asking(self, question: mcp_types.InputRequiredResult) -> Any:
        return question

    def input_required(self, result: Any) -> mcp_types.InputRequiredResult | None:
        return _as_input_required(result)

    def rewrap(self, result: Any, question: mcp_types.InputRequiredResult) -> Any:
        return question

    def failed(self, result: Any) -> bool:
        return is_error(result)


class WireResults(ModelResults):
    """Results as middleware sees them: wire dicts, shaped for the connection's protocol
    version (middleware that answers without `call_next` owns the result's shape)."""

    __slots__ = ("version",)

    def __init__(self, version: str) -> None:
        self.version = version

    def _wire(self, result: mcp_types.Result) -> dict[str, Any]:
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        try:
            return serialize_server_result("tools/call", self.version, dumped)
        except (KeyError, ValueError):  # a version this SDK has no surface for: as dumped
            return dumped

    def refused(self, decision: Decision, why: str) -> Any:
        return self._wire(denial(decision, why))

    def asking(self, question: mcp_types.InputRequiredResult) -> Any:
        return self._wire(question)

    def rewrap(self, result: Any, question: mcp_types.InputRequiredResult) -> Any:
        return self._wire(question)


MODEL_RESULTS = ModelResults()


def wire_params(params: Mapping[str, Any] | None, view: View) -> dict[str, Any]:
    """Raw tools/call params showing `view` as the round's state and answers."""
    shown = {
        key: value
        for key, value in (params or {}).items()
        if key not in ("requestState", "inputResponses")
    }
    if view.request_state is not None:
        shown["requestState"] = view.request_state
    if view.input_responses:
        shown["inputResponses"] = {
            key: response.model_dump(by_alias=True, mode="json", exclude_none=True)
            for key, response in view.input_responses.items()
        }
    return shown


def parse_responses(raw: Any) -> mcp_types.InputResponses | None:
    """The round's answers as the SDK parses them, or None (the SDK refuses what fails)."""
    if raw is None:
        return None
    try:
        parsed = mcp_types.InputResponseRequestParams.model_validate(
            {"inputResponses": raw}, by_name=False
        )
    except ValidationError:
        return None
    return parsed.input_responses


def visible_only(engine: PolicyEngine, identity: str, result: Any) -> Any:
    """A tools/list result (a model or its wire dict) with only the caller's tools."""
    if isinstance(result, mcp_types.ListToolsResult):
        names = [tool.name for tool in result.tools]
        visible = set(engine.visible_tools(identity, names))
        update: dict[str, Any] = {"tools": [t for t in result.tools if t.name in visible]}
        if result.cache_scope == "public":  # the list is this caller's now
            update["cache_scope"] = "private"
        return result.model_copy(update=update)
    if isinstance(result, Mapping) and isinstance(result.get("tools"), list):
        tools = result["tools"]
        named = [(t, t.get("name") if isinstance(t, Mapping) else None) for t in tools]
        visible = set(engine.visible_tools(identity, [n for _, n in named if isinstance(n, str)]))
        shown = {**result, "tools": [t for t, n in named if n in visible]}
        if shown.get("cacheScope") == "public":
            shown["cacheScope"] = "private"
        return shown
    return result
