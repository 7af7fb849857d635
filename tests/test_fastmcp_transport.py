"""The FastMCP integration over real transports: a guarded proxy in front of a stdio server
(the gateway of examples/), in memory and as a process of its own spoken to over stdio.

Every subprocess is started by the test and gone when it ends.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("fastmcp")

import anyio
import mcp_types
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy

from conftest import EXAMPLES, FakeClock
from policylayer_core import PolicyEngine
from policylayer_core.fastmcp import PolicyMiddleware

pytestmark = pytest.mark.anyio

DENIED = "[POLICY DENIED] "
ROOT = {"projectRoot": "/srv/projects/demo"}

GATEWAY_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "hide": ["qflow_task_batch"],
    "tools": {
        "qflow_task_list": {},
        "qflow_task_create": {},
        "qflow_task_delete": {"limits": [{"counter": "deletes", "window": "minute", "max": 1}]},
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


Action = Literal["accept", "decline", "cancel"]


class Person:
    def __init__(self, *answers: Action) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(message)
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


def _server_command(marker: str) -> list[str]:
    """The example server over stdio, with its own policy in a file under `marker`."""
    spec = Path(marker) / "server-policy.json"
    sys.path.insert(0, str(EXAMPLES))
    try:
        from guarded_server import SERVER_POLICY  # noqa: PLC0415 - the example itself
    finally:
        sys.path.remove(str(EXAMPLES))
    spec.write_text(json.dumps(SERVER_POLICY), "utf-8")
    return [sys.executable, str(EXAMPLES / "guarded_server.py"), "--policy", str(spec)]


async def test_a_guarded_proxy_in_front_of_a_stdio_server(marker: str) -> None:
    command = _server_command(marker)
    backend = StdioTransport(command[0], command[1:])
    gateway = create_proxy(backend, name="gateway")
    clock = FakeClock()
    gateway.add_middleware(
        PolicyMiddleware(PolicyEngine.from_dict(GATEWAY_POLICY, clock=clock), approver="elicit")
    )
    try:
        for mode in ("auto", "legacy"):
            person = Person("accept", "decline")
            async with Client(gateway, mode=mode, elicitation_handler=person) as client:
                listed = [tool.name for tool in await client.list_tools()]
                assert listed == [
                    "qflow_task_list",
                    "qflow_task_create",
                    "qflow_task_delete",
                    "qflow_workspace",
                    "qflow_spec_apply",
                ]
                hidden = await client.call_tool("qflow_task_batch", {**ROOT, "action": "create"},
                                                 raise_on_error=False)  # fmt: skip
                assert text(hidden).startswith(DENIED)
                merge = await client.call_tool(
                    "qflow_workspace", {"action": "merge"}, raise_on_error=False
                )
                assert text(merge) == DENIED + "Merging workspaces is done by people, not agents."
                assert (await client.call_tool("qflow_workspace", {"action": "list"})).data

                # The approval is asked through the proxy's own client, on either era.
                applied = await client.call_tool("qflow_spec_apply", {"changeId": "C-1"})
                assert applied.data == "applied C-1"
                refused = await client.call_tool(
                    "qflow_spec_apply", {"changeId": "C-2"}, raise_on_error=False
                )
                assert text(refused) == (
                    DENIED + "Spec changes need a human. The person asked declined this call."
                )
                assert len(person.asked) == 2 and "'qflow_spec_apply'" in person.asked[0]

                # The server's own guard refuses a cascading delete: its error comes
                # through the proxy unchanged, and the failed call costs no token...
                created = await client.call_tool("qflow_task_create", {"title": "x"})
                task_id = created.structured_content["id"]
                cascade = await client.call_tool(
                    "qflow_task_delete", {"taskId": task_id, "cascade": True}, raise_on_error=False
                )
                assert text(cascade) == (
                    DENIED + "Cascading deletes are disabled on this server; "
                    "delete subtasks one by one."
                )
                # ... so the one delete a minute is still there.
                deleted = await client.call_tool("qflow_task_delete", {"taskId": task_id})
                assert deleted.data == f"deleted {task_id}"
                limited = await client.call_tool(
                    "qflow_task_delete", {"taskId": task_id}, raise_on_error=False
                )
                assert text(limited).startswith(DENIED + "Rate limit 'deletes'")
            clock.advance(60.0)
    finally:
        await backend.close()  # type: ignore[no-untyped-call]


async def test_the_gateway_example_over_stdio(marker: str) -> None:
    policy = Path(marker) / "policy.json"
    policy.write_text((EXAMPLES / "qflow-policy.json").read_text("utf-8"), "utf-8")
    command = [str(EXAMPLES / "gateway.py"), "--policy", str(policy), "--"]
    command += _server_command(marker)
    for mode in ("auto", "legacy"):
        transport = StdioTransport(sys.executable, command, keep_alive=False)
        person = Person("accept", "decline")
        async with Client(transport, mode=mode, elicitation_handler=person) as client:
            listed = {tool.name for tool in await client.list_tools()}
            assert "qflow_task_list" in listed and "qflow_task_delete" not in listed
            assert (await client.call_tool("qflow_task_list", {})).data == []
            merge = await client.call_tool(
                "qflow_workspace", {"action": "merge"}, raise_on_error=False
            )
            assert text(merge) == (
                DENIED + "Merging or deleting workspaces is done by people, not agents."
            )
            big = {**ROOT, "action": "create", "tasks": [{"title": f"t{i}"} for i in range(21)]}
            created = await client.call_tool("qflow_task_batch", big)
            assert len(created.structured_content["created"]) == 21
            refused = await client.call_tool("qflow_spec_apply", {"changeId": "C-1"},
                                             raise_on_error=False)  # fmt: skip
            assert text(refused) == (
                DENIED + "Spec changes need a human's approval. The person asked declined "
                "this call."
            )
        assert len(person.asked) == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_sessions_over_streamable_http(marker: str) -> None:
    """The gateway over HTTP: a handshake-era client has a session (its `mcp-session-id`)
    and its own bucket; a 2026-07-28 client has none, so its identity's bucket applies."""
    policy = Path(marker) / "policy.json"
    policy.write_text(json.dumps({
        "version": "1",
        "default": "deny",
        "tools": {"qflow_task_list": {
            "limits": [{"counter": "lists", "window": "hour", "max": 1, "scope": "session"}]
        }},
    }), "utf-8")  # fmt: skip
    port = _free_port()
    command = [sys.executable, str(EXAMPLES / "gateway.py"), "--policy", str(policy)]
    command += ["--http", str(port), "--", *_server_command(marker)]
    gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert gateway.poll() is None, "the gateway exited"
                assert time.monotonic() < deadline, "the gateway did not start"
                await anyio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        seen = []
        for mode in ("legacy", "legacy", "auto", "auto"):
            async with Client(url, mode=mode) as client:
                first = await client.call_tool("qflow_task_list", {}, raise_on_error=False)
                second = await client.call_tool("qflow_task_list", {}, raise_on_error=False)
                assert text(second).startswith(DENIED + "Rate limit 'lists'")
                seen.append(first.is_error)
        # two sessions, one bucket each; then no session: the identity's one bucket, which
        # the first 2026-07-28 call takes and the second connection finds empty
        assert seen == [False, False, False, True]
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)


@pytest.mark.parametrize("content", [None, '{"version": "1", "default": "maybe"}'])
def test_the_gateway_example_says_what_is_wrong_with_its_policy(
    tmp_path: Path, content: str | None
) -> None:
    """A missing or broken policy is a short message with line:column, not a traceback."""
    policy = tmp_path / "policy.json"
    if content is not None:
        policy.write_text(content, "utf-8")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "gateway.py"), "--policy", str(policy), "--", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("gateway.py: the policy cannot be used.\n")
    if content is None:
        assert "does not exist" in done.stderr
    else:
        assert f"{policy}:1:18: /default: This value must be 'allow' or 'deny'" in done.stderr
