"""A plain FastMCP server whose tools guard themselves with `policy_guard`.

It serves a toy, in-memory version of a few tools of the qflow MCP server, with the
argument names of the real ones, so `examples/qflow-policy.json` applies to it as
written. Its own policy (`SERVER_POLICY` below) is the server's last line of defence:
it refuses cascading deletes and caps how many tasks a minute the whole server creates,
whoever calls and whatever gateway sits in front of it.

    python examples/guarded_server.py                  # MCP over stdio
    python examples/guarded_server.py --http 8000      # streamable HTTP on 127.0.0.1:8000/mcp
    python examples/guarded_server.py --policy my.json # another policy for its guards

`examples/gateway.py` runs it as the stdio server behind a guarded proxy. Requires the
`fastmcp` extra: pip install -e '.[fastmcp]'.
"""

# The tools' argument names are the real qflow server's (camelCase), so that
# examples/qflow-policy.json applies as written.
# ruff: noqa: N803

from __future__ import annotations

import argparse
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastmcp import FastMCP
from pydantic import BaseModel, Field

from policylayer_core import PolicyEngine
from policylayer_core.fastmcp import policy_guard

SERVER_POLICY: dict[str, Any] = {
    "version": "1",
    "description": "The server's own guards: no cascading deletes, 100 new tasks a minute in all.",
    "default": "allow",
    "tools": {
        "qflow_task_delete": {
            "deny_if": [
                {
                    "conditions": [{"path": "args.cascade", "op": "eq", "value": True}],
                    "on_deny": (
                        "Cascading deletes are disabled on this server; delete subtasks one by one."
                    ),
                }
            ]
        },
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
        },
    },
}


class NewTask(BaseModel):
    title: str = Field(min_length=1)
    priority: int | None = Field(default=None, ge=1, le=10)


def build_server(policy: Mapping[str, Any] | str = SERVER_POLICY) -> FastMCP:
    """The server, with a fresh in-memory task list; `policy` is a document or a path."""
    engine = PolicyEngine(policy)
    mcp = FastMCP("qflow-demo")
    tasks: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    def add(title: str, priority: int | None = None) -> dict[str, Any]:
        task_id = f"T-{next(ids)}"
        tasks[task_id] = {"id": task_id, "title": title, "status": "pending", "priority": priority}
        return tasks[task_id]

    @mcp.tool
    def qflow_task_list(
        status: str | None = None, projectRoot: str | None = None
    ) -> list[dict[str, Any]]:
        """List the project's tasks, optionally only those with one status."""
        return [t for t in tasks.values() if status is None or t["status"] == status]

    @mcp.tool
    def qflow_task_create(
        title: str, description: str = "", projectRoot: str | None = None
    ) -> dict[str, Any]:
        """Create one task."""
        return add(title)

    @mcp.tool
    @policy_guard(engine)
    async def qflow_task_batch(
        action: Literal["create", "update", "status", "rewrite"],
        projectRoot: str,
        tasks: list[NewTask] | None = None,
    ) -> dict[str, Any]:
        """Create, update or re-status many tasks at once."""
        if action != "create":
            return {"action": action, "changed": 0}
        created = [add(t.title, t.priority) for t in tasks or ()]
        return {"action": action, "created": [t["id"] for t in created]}

    @mcp.tool
    @policy_guard(engine)
    def qflow_task_delete(
        taskId: str, cascade: bool = False, projectRoot: str | None = None
    ) -> str:
        """Delete a task (and, with cascade, its subtasks)."""
        if tasks.pop(taskId, None) is None:
            raise ValueError(f"no task {taskId}")
        return f"deleted {taskId}"

    @mcp.tool
    def qflow_workspace(
        action: Literal["list", "create", "switch", "merge", "delete"],
        tagName: str | None = None,
        source: str | None = None,
        target: str | None = None,
        projectRoot: str | None = None,
    ) -> str:
        """Manage tag workspaces."""
        return f"workspace {action} done"

    @mcp.tool
    def qflow_spec_apply(changeId: str, projectRoot: str | None = None) -> str:
        """Apply an approved spec change."""
        return f"applied {changeId}"

    return mcp


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT"
    )
    parser.add_argument(
        "--policy", help="a policy file for the tools' guards (default: SERVER_POLICY)"
    )
    args = parser.parse_args(argv)
    server = build_server(args.policy or SERVER_POLICY)
    if args.http is None:
        server.run(show_banner=False)
    else:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)


if __name__ == "__main__":
    main()
