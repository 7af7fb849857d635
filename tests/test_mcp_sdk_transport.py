"""The MCP SDK integration over a real transport: examples/mcp_sdk_server.py (an `MCPServer`
with `PolicyMiddleware`, or a low-level `Server` with `PolicyGuard`) as a process of its
own, spoken to over stdio by the SDK's `mcp.Client`, on both protocol eras.

Every subprocess is started by the test and gone when it ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("mcp.server.mcpserver")

import mcp_types
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.stdio import StdioServerParameters

from conftest import EXAMPLES

pytestmark = pytest.mark.anyio

DENIED = "[POLICY DENIED] "
SRC = Path(__file__).resolve().parent.parent / "src"

POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "hide": ["qflow_task_batch"],
    "tools": {
        "qflow_task_list": {},
        "qflow_task_create": {},
        "qflow_task_delete": {"limits": [{"counter": "deletes", "window": "hour", "max": 1}]},
        "qflow_workspace": {
            "deny_if": [
                {
                    "conditions": [{"path": "args.action", "op": "eq", "value": "merge"}],
                    "on_deny": "Merging workspaces is done by people, not agents.",
                }
            ]
        },
        "qflow_spec_apply": {"action": "approve", "on_deny": "Spec changes need a human."},
    },
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


class Person:
    def __init__(self, *answers: Literal["accept", "decline", "cancel"]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        self.asked.append(params.message)
        return mcp_types.ElicitResult(action=self.answers.pop(0))


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in arg for arg in args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    """A path unique to this test that the command lines of its subprocesses contain; at
    the end, no process may still mention it."""
    yield str(tmp_path)
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 10.0
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(tmp_path)) == []


def server(marker: str, kind: str) -> StdioServerParameters:
    """The example server of `kind` over stdio, with POLICY in a file under `marker`."""
    policy = Path(marker) / "policy.json"
    policy.write_text(json.dumps(POLICY), "utf-8")
    args = [str(EXAMPLES / "mcp_sdk_server.py"), "--policy", str(policy)]
    if kind == "lowlevel":
        args.append("--lowlevel")
    # This checkout's code first on the path (the SDK's default environment for a stdio
    # server keeps only a few variables, PYTHONPATH not among them).
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    return StdioServerParameters(
        command=sys.executable, args=args, env={**os.environ, "PYTHONPATH": path}
    )


@pytest.mark.parametrize("kind", ["mcpserver", "lowlevel"])
async def test_a_guarded_sdk_server_over_stdio(marker: str, kind: str) -> None:
    for mode in ("auto", "legacy"):
        person = Person("accept", "decline")
        async with Client(server(marker, kind), mode=mode, elicitation_callback=person) as client:
            assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
            listed = [tool.name for tool in (await client.list_tools()).tools]
            assert listed == [
                "qflow_task_list",
                "qflow_task_create",
                "qflow_task_delete",
                "qflow_workspace",
                "qflow_spec_apply",
            ]
            hidden = await client.call_tool("qflow_task_batch", {"action": "create"})
            assert text(hidden) == (
                DENIED + "The tool 'qflow_task_batch' is not available: the policy hides it."
            )
            merge = await client.call_tool("qflow_workspace", {"action": "merge"})
            assert merge.is_error
            assert text(merge) == DENIED + "Merging workspaces is done by people, not agents."
            listing = await client.call_tool("qflow_workspace", {"action": "list"})
            assert not listing.is_error and "workspace list done" in text(listing)

            # Approval, asked of the client's user on either era (on 2026-07-28 across two
            # rounds, through the server's sealed requestState).
            applied = await client.call_tool("qflow_spec_apply", {"changeId": "C-1"})
            assert not applied.is_error and "applied C-1" in text(applied)
            refused = await client.call_tool("qflow_spec_apply", {"changeId": "C-2"})
            assert text(refused) == (
                DENIED + "Spec changes need a human. The person asked declined this call."
            )
            assert len(person.asked) == 2 and "'qflow_spec_apply'" in person.asked[0]
            assert '{"changeId": "C-2"}' in person.asked[1]

            # A delete that fails gives its token back: the one delete an hour is still
            # there for a task that exists; the next is rate limited, with the wait.
            missing = await client.call_tool("qflow_task_delete", {"taskId": "T-404"})
            assert missing.is_error and not text(missing).startswith(DENIED)
            created = await client.call_tool("qflow_task_create", {"title": "x"})
            assert not created.is_error
            deleted = await client.call_tool("qflow_task_delete", {"taskId": "T-1"})
            assert not deleted.is_error and "deleted T-1" in text(deleted)
            limited = await client.call_tool("qflow_task_delete", {"taskId": "T-1"})
            assert text(limited).startswith(
                DENIED + "Rate limit 'deletes' (1 per hour) exceeded; retry in "
            )

    # A client that declared no elicitation cannot approve anything.
    async with Client(server(marker, kind)) as client:
        unasked = await client.call_tool("qflow_spec_apply", {"changeId": "C-3"})
        assert text(unasked) == (
            DENIED + "Spec changes need a human. This client cannot ask a person for approval "
            "(it declared no form elicitation support)."
        )
