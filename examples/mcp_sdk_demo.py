"""Allow, deny, rate limit and approval through the official MCP SDK's `Client`, in memory.

    python examples/mcp_sdk_demo.py

The servers are `examples/mcp_sdk_server.py`: an `MCPServer` guarded by
`PolicyMiddleware`, then a low-level `Server` guarded by `PolicyGuard`, both with
`examples/qflow-policy.json`, asking a person (here, a scripted one) through the client
when the policy wants approval. The `MCPServer` is called over the 2026-07-28 protocol
that `Client` negotiates by default, the low-level `Server` over the 2025-11-25
handshake (`mode="legacy"`), where the question travels the older way. The engine's
clock stands still, so the rate limit's wait is the same on every run. Requires the
`mcp` extra: pip install -e '.[mcp]'.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Literal

import mcp_types
from mcp import Client
from mcp.client import ClientRequestContext

from policylayer_core import PolicyEngine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mcp_sdk_server import build_lowlevel_server, build_server  # noqa: E402 - the example next to this one

ROOT = {"projectRoot": "/srv/projects/demo"}


class ScriptedPerson:
    """An elicitation callback standing in for the user: prints the question, answers it."""

    def __init__(self, *answers: Literal["accept", "decline", "cancel"]) -> None:
        self.answers = list(answers)

    async def __call__(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        answer = self.answers.pop(0)
        message = params.message
        shown = message if len(message) <= 200 else f"{message[:120]} … {message[-80:]}"
        print(f"    the client asks its user: {shown}")
        print(f"    the user answers: {answer}")
        return mcp_types.ElicitResult(action=answer)


async def call(client: Client, tool: str, args: dict[str, Any], note: str) -> None:
    print(f"- {note}: {tool}")
    result = await client.call_tool(tool, args)
    block = result.content[0] if result.content else None
    if result.structured_content is not None and not result.is_error:
        shown = json.dumps(result.structured_content)
    else:
        shown = block.text if isinstance(block, mcp_types.TextContent) else str(block)
    if len(shown) > 100:
        shown = shown[:99] + "…"
    print(f"    {'error' if result.is_error else 'result'}: {shown}")


def tasks(n: int) -> list[dict[str, str]]:
    return [{"title": f"t{i + 1}"} for i in range(n)]


async def main() -> None:
    policy = HERE / "qflow-policy.json"
    person = ScriptedPerson("accept", "decline", "accept")

    server = build_server(PolicyEngine.from_file(policy, clock=lambda: 0.0))
    async with Client(server, elicitation_callback=person) as client:
        print(f"MCPServer + PolicyMiddleware, protocol {client.protocol_version}")
        listed = [tool.name for tool in (await client.list_tools()).tools]
        print(f"- tools/list shows {len(listed)} tools; qflow_task_delete is hidden: {listed}")
        await call(client, "qflow_task_list", {**ROOT}, "allowed")
        await call(client, "qflow_workspace", {"action": "merge", "source": "a", "target": "b"},
                   "denied by a deny_if rule")  # fmt: skip
        await call(client, "qflow_task_delete", {"taskId": "T-1"}, "hidden, so denied")
        batch = {**ROOT, "action": "create", "tasks": tasks(25)}
        await call(client, "qflow_task_batch", batch, "25 tasks need approval (approved)")
        await call(client, "qflow_task_batch", batch, "25 tasks need approval (declined)")
        small = {**ROOT, "action": "create", "tasks": tasks(5)}
        await call(client, "qflow_task_batch", small, "5 more tasks: 30 of 30 writes a minute")
        one = {**ROOT, "action": "create", "tasks": tasks(1)}
        await call(client, "qflow_task_batch", one, "rate limited")

    lowlevel = build_lowlevel_server(PolicyEngine.from_file(policy, clock=lambda: 0.0))
    async with Client(lowlevel, mode="legacy", elicitation_callback=person) as client:
        print(f"low-level Server + PolicyGuard, protocol {client.protocol_version}")
        listed = [tool.name for tool in (await client.list_tools()).tools]
        print(f"- tools/list shows {len(listed)} tools: {listed}")
        await call(client, "qflow_workspace", {"action": "delete"}, "denied by a deny_if rule")
        await call(client, "qflow_spec_apply", {**ROOT, "changeId": "C-7"},
                   "spec changes always need approval (approved)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
