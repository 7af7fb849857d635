"""Allow, deny, rate limit and approval through a real `fastmcp.Client`, in memory.

    python examples/fastmcp_demo.py

The server is `examples/guarded_server.py`; `PolicyMiddleware` guards it with
`examples/qflow-policy.json` and asks a person (here, a scripted one) through the client
when the policy wants approval. The calls go over the 2026-07-28 protocol that `Client`
negotiates by default, then once more over the 2025-11-25 handshake (`mode="legacy"`),
where the question travels the older way. The engine's clock stands still, so the rate
limit's wait is the same on every run. Requires the `fastmcp` extra:
pip install -e '.[fastmcp]'.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Literal

import mcp_types
from fastmcp import Client

from policylayer_core import PolicyEngine
from policylayer_core.fastmcp import PolicyMiddleware

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from guarded_server import build_server  # noqa: E402 - the example next to this one

ROOT = {"projectRoot": "/srv/projects/demo"}


class ScriptedPerson:
    """An elicitation handler standing in for the user: prints the question, answers it."""

    def __init__(self, *answers: Literal["accept", "decline", "cancel"]) -> None:
        self.answers = list(answers)

    async def __call__(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        answer = self.answers.pop(0)
        shown = message if len(message) <= 200 else f"{message[:120]} … {message[-80:]}"
        print(f"    the client asks its user: {shown}")
        print(f"    the user answers: {answer}")
        return mcp_types.ElicitResult(action=answer)


async def call(client: Client[Any], tool: str, args: dict[str, Any], note: str) -> None:
    print(f"- {note}: {tool}")
    result = await client.call_tool(tool, args, raise_on_error=False)
    block = result.content[0] if result.content else None
    data = block.text if isinstance(block, mcp_types.TextContent) else result.structured_content
    shown = str(data)
    if len(shown) > 100:
        shown = shown[:99] + "…"
    print(f"    {'error' if result.is_error else 'result'}: {shown}")


def tasks(n: int) -> list[dict[str, str]]:
    return [{"title": f"t{i + 1}"} for i in range(n)]


async def main() -> None:
    engine = PolicyEngine.from_file(HERE / "qflow-policy.json", clock=lambda: 0.0)
    server = build_server()
    server.add_middleware(PolicyMiddleware(engine, approver="elicit"))
    person = ScriptedPerson("accept", "decline", "accept")

    async with Client(server, elicitation_handler=person) as client:
        print(f"protocol {client.protocol_version}")
        listed = [tool.name for tool in await client.list_tools()]
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

    async with Client(server, mode="legacy", elicitation_handler=person) as client:
        print(f"protocol {client.protocol_version}")
        await call(client, "qflow_spec_apply", {**ROOT, "changeId": "C-7"},
                   "spec changes always need approval (approved)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
