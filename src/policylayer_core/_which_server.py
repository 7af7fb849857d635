"""Which MCP server a tool function is being decorated for, told at decoration time.

`policylayer_core.fastmcp.policy_guard` works only on FastMCP tools and
`policylayer_core.mcp.policy_guard` only on tools of the MCP SDK's `MCPServer`; each
would register fine on the other server and then fail every call. A decorator sees only
the function, so each asks this module what it can see from where it is applied:

* the function's own parameters: one annotated with a server's `Context` names it;
* the scope the decorator is applied in (the local and global names of the frame that
  applies it): a server object of one kind and none of the other names it too.

Neither imports FastMCP or the SDK: a server of a kind can only be in scope when its
module has been imported already, so only `sys.modules` is read.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Literal

Kind = Literal["fastmcp", "mcp"]

# (module, class) of the server classes and of the Context classes of each kind.
_SERVERS: dict[Kind, tuple[tuple[str, str], ...]] = {
    "fastmcp": (("fastmcp.server.server", "FastMCP"),),
    "mcp": (("mcp.server.mcpserver.server", "MCPServer"), ("mcp.server.lowlevel.server", "Server")),
}
_CONTEXTS: dict[Kind, tuple[str, str]] = {
    "fastmcp": ("fastmcp.server.context", "Context"),
    "mcp": ("mcp.server.mcpserver.context", "Context"),
}


def _loaded(module: str, name: str) -> type | None:
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _classes(kind: Kind) -> tuple[type, ...]:
    return tuple(c for c in (_loaded(m, n) for m, n in _SERVERS[kind]) if c is not None)


def context_kind(fn: Callable[..., Any]) -> Kind | None:
    """The kind whose `Context` annotates one of `fn`'s parameters, if one does."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations say nothing either way
        return None
    for kind, (module, name) in _CONTEXTS.items():
        context = _loaded(module, name)
        if context is None:
            continue
        for hint in hints.values():
            arms = typing.get_args(hint) or (hint,)
            if any(isinstance(arm, type) and issubclass(arm, context) for arm in arms):
                return kind
    return None


def servers_in_scope(frame: FrameType | None) -> dict[Kind, list[Any]]:
    """The server objects of each kind among the frame's local and global names."""
    found: dict[Kind, list[Any]] = {"fastmcp": [], "mcp": []}
    if frame is None:
        return found
    kinds = [(kind, classes) for kind in found if (classes := _classes(kind))]
    if not kinds:
        return found
    for value in _values(frame):
        for kind, classes in kinds:
            try:
                match = isinstance(value, classes)
            except Exception:  # a proxy whose __class__ raises says nothing
                match = False
            if match and not any(value is v for v in found[kind]):
                found[kind].append(value)
    return found


def _values(frame: FrameType) -> Iterator[Any]:
    yield from list(frame.f_locals.values())
    if frame.f_globals is not frame.f_locals:
        yield from list(frame.f_globals.values())


def decorated_for(fn: Callable[..., Any], frame: FrameType | None) -> Kind | None:
    """The kind of server `fn` is being decorated for, when that can be told; else None."""
    kind = context_kind(fn)
    if kind is not None:
        return kind
    found = servers_in_scope(frame)
    if found["fastmcp"] and not found["mcp"]:
        return "fastmcp"
    if found["mcp"] and not found["fastmcp"]:
        return "mcp"
    return None
