"""A qflow-like MCP server on the official MCP Python SDK, guarded by a policy.

It serves a toy, in-memory version of a few tools of the qflow MCP server, with the
argument names of the real ones, so `examples/qflow-policy.json` applies as written. It
comes in the SDK's two server classes, each guarded in one line:

* `build_server`: an `MCPServer` with `PolicyMiddleware` (every tool, `tools/list`
  filtered per caller), and one tool that also guards itself with `policy_guard` and
  the server's own policy (`SERVER_POLICY`: at most 100 new tasks a minute in all,
  whoever calls);
* `build_lowlevel_server`: a low-level `Server` whose `on_call_tool` and
  `on_list_tools` handlers are wrapped by `PolicyGuard`.

    python examples/mcp_sdk_server.py                      # MCPServer over stdio
    python examples/mcp_sdk_server.py --lowlevel           # the low-level Server over stdio
    python examples/mcp_sdk_server.py --policy my.json     # another policy
    python examples/mcp_sdk_server.py --no-approvals       # deny what needs approval

Approvals are asked of the client's user (`approver="elicit"`) on either protocol era.
`examples/mcp_sdk_demo.py` calls both servers in memory. Requires the `mcp` extra:
pip install -e '.[mcp]'.
"""

# The tools' argument names are the real qflow server's (camelCase), so that
# examples/qflow-policy.json applies as written.
# ruff: noqa: N803

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types
from mcp.server import Server, ServerRequestContext
from mcp.server.mcpserver import MCPServer, RequestStateBoundary, RequestStateSecurity
from mcp.server.stdio import stdio_server
from pydantic import BaseModel, Field

from policylayer_core import PolicyEngine
from policylayer_core.mcp import Approver, PolicyGuard, PolicyMiddleware, policy_guard

POLICY = Path(__file__).resolve().parent / "qflow-policy.json"

SERVER_POLICY: dict[str, Any] = {
    "version": "1",
    "description": "The server's own guard: 100 new tasks a minute in all, whoever calls.",
    "default": "allow",
    "tools": {
        "qflow_task_batch": {
            "limits": [
                {
                    "counter": "server_tasks",
                    "window": "minute",
                    "max": 100,
                    "scope": "global",
                    "cost": "args.tasks",
                }
            ]
        }
    },
}


class NewTask(BaseModel):
    title: str = Field(min_length=1)
    priority: int | None = Field(default=None, ge=1, le=10)


class Tasks:
    """The toy qflow: an in-memory task list behind the tools of both servers."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def add(self, title: str, priority: int | None = None) -> dict[str, Any]:
        task_id = f"T-{next(self._ids)}"
        task = {"id": task_id, "title": title, "status": "pending", "priority": priority}
        self.tasks[task_id] = task
        return task

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if status is None or t["status"] == status]

    def batch(self, action: str, tasks: Sequence[NewTask] | None) -> dict[str, Any]:
        if action != "create":
            return {"action": action, "changed": 0}
        created = [self.add(t.title, t.priority) for t in tasks or ()]
        return {"action": action, "created": [t["id"] for t in created]}

    def delete(self, taskId: str) -> str:
        if self.tasks.pop(taskId, None) is None:
            raise ValueError(f"no task {taskId}")
        return f"deleted {taskId}"


def build_server(engine: PolicyEngine, *, approver: Approver = "elicit") -> MCPServer:
    """An `MCPServer` guarded by `PolicyMiddleware`, with a fresh task list."""
    server = MCPServer("qflow-sdk-demo", middleware=[PolicyMiddleware(engine, approver=approver)])
    qflow = Tasks()
    own = PolicyEngine(SERVER_POLICY)

    @server.tool()
    def qflow_task_list(
        status: str | None = None, projectRoot: str | None = None
    ) -> list[dict[str, Any]]:
        """List the project's tasks, optionally only those with one status."""
        return qflow.list(status)

    @server.tool()
    def qflow_task_create(
        title: str, description: str = "", projectRoot: str | None = None
    ) -> dict[str, Any]:
        """Create one task."""
        return qflow.add(title)

    @server.tool()
    @policy_guard(own)
    async def qflow_task_batch(
        action: Literal["create", "update", "status", "rewrite"],
        projectRoot: str,
        tasks: list[NewTask] | None = None,
    ) -> dict[str, Any]:
        """Create, update or re-status many tasks at once."""
        return qflow.batch(action, tasks)

    @server.tool()
    def qflow_task_delete(
        taskId: str, cascade: bool = False, projectRoot: str | None = None
    ) -> str:
        """Delete a task (and, with cascade, its subtasks)."""
        return qflow.delete(taskId)

    @server.tool()
    def qflow_workspace(
        action: Literal["list", "create", "switch", "merge", "delete"],
        tagName: str | None = None,
        source: str | None = None,
        target: str | None = None,
        projectRoot: str | None = None,
    ) -> str:
        """Manage tag workspaces."""
        return f"workspace {action} done"

    @server.tool()
    def qflow_spec_apply(changeId: str, projectRoot: str | None = None) -> str:
        """Apply an approved spec change."""
        return f"applied {changeId}"

    return server


def _tool(name: str, description: str, properties: dict[str, Any], *required: str) -> Any:
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return mcp_types.Tool(name=name, description=description, input_schema=schema)


_TEXT = {"type": "string"}
_ROOT = {"projectRoot": _TEXT}
LOWLEVEL_TOOLS = [
    _tool("qflow_task_list", "List the project's tasks.", {"status": _TEXT, **_ROOT}),
    _tool("qflow_task_create", "Create one task.", {"title": _TEXT, **_ROOT}, "title"),
    _tool(
        "qflow_task_batch",
        "Create, update or re-status many tasks at once.",
        {"action": _TEXT, "tasks": {"type": "array"}, **_ROOT},
        "action",
        "projectRoot",
    ),
    _tool("qflow_task_delete", "Delete a task.", {"taskId": _TEXT, **_ROOT}, "taskId"),
    _tool("qflow_workspace", "Manage tag workspaces.", {"action": _TEXT, **_ROOT}, "action"),
    _tool("qflow_spec_apply", "Apply a spec change.", {"changeId": _TEXT, **_ROOT}, "changeId"),
]


def build_lowlevel_server(engine: PolicyEngine, *, approver: Approver = "elicit") -> Server:
    """A low-level `Server` whose tool handlers `PolicyGuard` wraps, with a fresh task list."""
    qflow = Tasks()
    guard = PolicyGuard(engine, approver=approver)

    @guard.list_tools
    async def list_tools(
        ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=LOWLEVEL_TOOLS)

    @guard.call_tool
    async def call_tool(
        ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult | mcp_types.InputRequiredResult:
        args = params.arguments or {}
        try:
            result: Any
            match params.name:
                case "qflow_task_list":
                    result = qflow.list(args.get("status"))
                case "qflow_task_create":
                    result = qflow.add(str(args["title"]))
                case "qflow_task_batch":
                    tasks = [NewTask.model_validate(t) for t in args.get("tasks") or ()]
                    result = qflow.batch(str(args["action"]), tasks)
                case "qflow_task_delete":
                    result = qflow.delete(str(args["taskId"]))
                case "qflow_workspace":
                    result = f"workspace {args['action']} done"
                case "qflow_spec_apply":
                    result = f"applied {args['changeId']}"
                case _:
                    result = None
        except (KeyError, ValueError) as exc:  # a failed tool: its tokens are given back
            return _text(f"{params.name} failed: {exc}", error=True)
        if result is None:
            return _text(f"Unknown tool: {params.name}", error=True)
        return _text(result if isinstance(result, str) else json.dumps(result))

    server = Server("qflow-sdk-lowlevel", on_list_tools=list_tools, on_call_tool=call_tool)
    # MCPServer seals the 2026-07-28 requestState itself; a low-level Server adds the
    # boundary (the policy's approval tickets are one-time server-side secrets either way).
    security = RequestStateSecurity.ephemeral()
    server.middleware.append(RequestStateBoundary(security, default_audience=server.name))
    return server


def _text(text: str, *, error: bool = False) -> mcp_types.CallToolResult:
    block = mcp_types.TextContent(type="text", text=text)
    return mcp_types.CallToolResult(content=[block], is_error=error)


async def _serve_lowlevel(server: Server) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy", default=str(POLICY), help="the policy file (default: %(default)s)"
    )
    parser.add_argument("--lowlevel", action="store_true", help="serve the low-level Server")
    parser.add_argument("--no-approvals", action="store_true", help="deny calls that need approval")
    args = parser.parse_args(argv)
    engine = PolicyEngine.from_file(args.policy)
    approver: Approver = None if args.no_approvals else "elicit"
    if args.lowlevel:
        anyio.run(_serve_lowlevel, build_lowlevel_server(engine, approver=approver))
    else:
        build_server(engine, approver=approver).run("stdio")


if __name__ == "__main__":
    main()
