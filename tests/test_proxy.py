"""`policylayer proxy` end to end: the command as a subprocess, spoken to by the real
`fastmcp.Client`, in front of the official filesystem reference server (Node.js, from the
npm registry; see node_servers.py) and of Python servers over stdio and HTTP.

Every subprocess is started by the test and gone when it ends (the `marker` fixture).
Waits have deadlines and look at the world (a line on stderr, a file); none is an
assertion about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("fastmcp")

import mcp_types
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from conftest import EXAMPLES
from node_servers import FILESYSTEM_VERSION, MISSING, REQUIRED_BY, filesystem_server
from policylayer_core._proxy_output import Reporter
from policylayer_core.audit import AuditEvent
from policylayer_core.cli import main

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
POLICY = EXAMPLES / "filesystem-policy.json"
DENIED = "[POLICY DENIED] "
PREFIX = "policylayer proxy: "
# The filesystem server's tools (this version), less move_file, which the policy hides.
VISIBLE = {
    "read_file", "read_text_file", "read_media_file", "read_multiple_files", "write_file",
    "edit_file", "create_directory", "list_directory", "list_directory_with_sizes",
    "directory_tree", "search_files", "get_file_info", "list_allowed_directories",
}  # fmt: skip
DEADLINE = 60.0  # seconds any one wait may last before the test gives up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def source_env(**extra: str) -> dict[str, str]:
    # The source tree comes first on the path, so the subprocess runs this checkout's code.
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def proxy_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "policylayer_core", "proxy", *map(str, args)]


def over_stdio(*args: object, log: Path, cwd: Path = ROOT) -> StdioTransport:
    """The proxy as the client's stdio server; its stderr (and its upstream's) go to `log`."""
    argv = proxy_argv(*args)
    return StdioTransport(
        argv[0], argv[1:], env=source_env(), cwd=str(cwd), keep_alive=False, log_file=log
    )


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


def lines(log: Path) -> list[str]:
    return log.read_text("utf-8").splitlines() if log.exists() else []


async def wait_for_line(log: Path, pattern: str, after: int = 0) -> re.Match[str]:
    """The first line of `log` past line `after` that matches `pattern`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for line in lines(log)[after:]:
            found = re.search(pattern, line)
            if found:
                return found
        assert time.monotonic() < deadline, f"no line matching {pattern!r} in:\n{lines(log)}"
        await asyncio.sleep(0.1)


Action = Literal["accept", "decline", "cancel"]


class Person:
    """The client's user, answering approval questions in order."""

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
def marker(tmp_path: Path) -> Iterator[Path]:
    """The test's folder, which the command lines of its subprocesses name; at the end,
    no process may still name it (no proxy, no upstream server left behind)."""
    yield tmp_path
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 15.0
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(tmp_path)) == []


@pytest.fixture
def files(marker: Path) -> Path:
    """The one folder the filesystem server may touch, with a file in it."""
    folder = marker / "files"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n", "utf-8")
    return folder


def decisions(audit: Path) -> list[tuple[str, str, str]]:
    events = [json.loads(line) for line in audit.read_text("utf-8").splitlines()]
    return [(e["tool"], e["effect"], e["rule"]) for e in events if e["kind"] == "decision"]


# -- the filesystem reference server, behind the proxy over stdio -----------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_filesystem_server_behind_the_proxy(mode: str, files: Path) -> None:
    """Reads pass, the third write is rate limited, the hidden move_file is neither listed
    nor run (the file stays where it is), and edits are put to the client's user, on the
    2026-07-28 protocol (auto) and the handshake era (legacy)."""
    server = filesystem_server()
    audit, log = files.parent / "audit.jsonl", files.parent / "stderr.log"
    notes = files / "notes.txt"
    person = Person("accept", "decline")
    transport = over_stdio("--policy", POLICY, "--audit", audit, "--", *server, files, log=log)
    async with Client(transport, mode=mode, elicitation_handler=person) as client:
        assert {tool.name for tool in await client.list_tools()} == VISIBLE
        assert text(await client.call_tool("read_text_file", {"path": str(notes)})) == "hello\n"

        for name in ("a.txt", "b.txt"):
            await client.call_tool("write_file", {"path": str(files / name), "content": name})
        third = await client.call_tool(
            "write_file", {"path": str(files / "c.txt"), "content": "c"}, raise_on_error=False
        )
        assert text(third).startswith(DENIED + "Rate limit 'writes' (2 per minute) exceeded")
        assert sorted(p.name for p in files.iterdir()) == ["a.txt", "b.txt", "notes.txt"]

        moved = await client.call_tool(
            "move_file",
            {"source": str(notes), "destination": str(files / "moved.txt")},
            raise_on_error=False,
        )
        assert text(moved) == (
            DENIED + "The tool 'move_file' is not available: the policy hides it."
        )
        assert notes.exists() and not (files / "moved.txt").exists()

        edit = {"path": str(notes), "edits": [{"oldText": "hello", "newText": "hi"}]}
        await client.call_tool("edit_file", edit)
        assert notes.read_text("utf-8") == "hi\n"
        undo = {"path": str(notes), "edits": [{"oldText": "hi", "newText": "hello"}]}
        declined = await client.call_tool("edit_file", undo, raise_on_error=False)
        assert text(declined) == (
            DENIED + "Edits to existing files need a person's approval. The person asked "
            "declined this call."
        )
        assert notes.read_text("utf-8") == "hi\n"
        assert len(person.asked) == 2 and "'edit_file'" in person.asked[0]

    # The client has gone, so has the proxy, and its audit file is complete.
    assert ("write_file", "rate_limited", "/tools/write_file/limits/0") in decisions(audit)
    assert ("move_file", "deny", "/hide/0") in decisions(audit)
    assert ("edit_file", "approval_required", "/tools/edit_file/action") in decisions(audit)
    said = [line for line in lines(log) if line.startswith(PREFIX)]
    assert said[0].startswith(PREFIX + "serving stdio in front of the upstream server ")
    assert PREFIX + (
        "rate limited 'write_file' for 'anonymous' (/tools/write_file/limits/0): Rate limit "
        "'writes' (2 per minute) exceeded; retry in "
    ) in "\n".join(said)
    assert (
        PREFIX
        + (
            "denied 'move_file' for 'anonymous' (/hide/0): The tool 'move_file' is not "
            "available: the policy hides it."
        )
        in said
    )
    assert "Traceback" not in log.read_text("utf-8")


# -- the README's example and the client configuration of docs/proxy.md ---------------------


def readme_example() -> list[str]:
    """The shell lines of the README's `policylayer proxy` example."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S)
    example = [block for block in blocks if "policylayer proxy" in block]
    assert len(example) == 1, "the README has one sh block with the proxy example"
    return [line for line in example[0].splitlines() if line.strip()]


def client_configuration() -> dict[str, Any]:
    """The MCP client configuration in docs/proxy.md (one "mcpServers" entry)."""
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs/proxy.md").read_text("utf-8"), re.S)
    found = [json.loads(block) for block in blocks if '"mcpServers"' in block]
    assert len(found) == 1, "docs/proxy.md has one client configuration"
    (server,) = found[0]["mcpServers"].values()
    assert isinstance(server, dict)
    return server


@pytest.fixture
def npx() -> str:
    found = shutil.which("npx")
    if found is None:
        if any(os.environ.get(name) for name in REQUIRED_BY):
            pytest.fail(f"{MISSING}; CI must run this test")
        pytest.skip(MISSING)
    return found


@pytest.fixture
def policylayer_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `policylayer` is this checkout's, run by this Python."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "policylayer"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m policylayer_core "$@"\n')
    script.chmod(0o755)
    return source_env(PATH=os.pathsep.join([str(folder), os.environ.get("PATH", "")]))


@pytest.mark.parametrize("where", ["README.md", "docs/proxy.md"])
async def test_the_documented_examples_run(
    where: str, npx: str, policylayer_on_path: dict[str, str], tmp_path: Path
) -> None:
    """The README's command line and the client configuration of docs/proxy.md, run as
    written from the repository's root: npx fetches the filesystem server (the version
    the tests pin), and the proxy guards it with examples/filesystem-policy.json."""
    log = tmp_path / "stderr.log"
    if where == "README.md":
        *before, line = readme_example()
        for step in before:  # such as mkdir -p for the folder the server may use
            subprocess.run(step, shell=True, check=True, cwd=ROOT, env=policylayer_on_path)
        argv = shlex.split(line)
    else:
        server = client_configuration()
        argv = [server["command"], *server["args"]]
    assert argv[:2] == ["policylayer", "proxy"]
    assert f"@modelcontextprotocol/server-filesystem@{FILESYSTEM_VERSION}" in argv
    folder = Path(argv[-1])
    folder.mkdir(parents=True, exist_ok=True)
    transport = StdioTransport(
        argv[0], argv[1:], env=policylayer_on_path, cwd=str(ROOT), keep_alive=False, log_file=log
    )
    async with Client(transport, init_timeout=DEADLINE * 3) as client:
        listed = {tool.name for tool in await client.list_tools()}
        assert listed == VISIBLE
        allowed = await client.call_tool("list_allowed_directories", {})
        assert str(folder.resolve()) in text(allowed)
        moved = await client.call_tool(
            "move_file", {"source": "a", "destination": "b"}, raise_on_error=False
        )
        assert text(moved).startswith(DENIED)


# -- HTTP: the front, tokens as identities, an HTTP upstream ---------------------------------


@contextlib.contextmanager
def running(argv: list[str], log: Path, cwd: Path = ROOT) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess with its stderr in `log`, stopped (SIGTERM) at the end of the block."""
    with log.open("ab") as err:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=source_env(), cwd=cwd,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def served_url(log: Path, process: subprocess.Popen[bytes]) -> str:
    """The URL the proxy's ready line names (it listens on a free port)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for line in lines(log):
            found = re.match(re.escape(PREFIX) + r"serving (http://\S+/mcp) ", line)
            if found:
                return found.group(1)
        assert process.poll() is None, f"the proxy exited:\n{lines(log)}"
        assert time.monotonic() < deadline, f"the proxy did not start:\n{lines(log)}"
        await asyncio.sleep(0.1)


async def test_http_front_with_identities_from_bearer_tokens(files: Path) -> None:
    """Over streamable HTTP with JWT bearer tokens, each caller is its token's client id:
    alice's writes run out, bob's do not; without a token there is no way in; an edit is
    put to the user on either era (alice accepts, bob declines); SIGTERM ends it with 0."""
    server = filesystem_server()
    keys = RSAKeyPair.generate()
    public_key = files.parent / "key.pem"
    public_key.write_text(keys.public_key, "utf-8")
    issuer, audience = "https://issuer.example", "policylayer-proxy"
    log = files.parent / "stderr.log"
    argv = proxy_argv(
        "--policy", POLICY, "--http", "127.0.0.1:0",
        "--identity-from-auth", "--auth-public-key", public_key,
        "--auth-issuer", issuer, "--auth-audience", audience, "--", *server, files,
    )  # fmt: skip

    def token(who: str) -> str:
        return keys.create_token(
            subject=who, issuer=issuer, audience=audience, additional_claims={"client_id": who}
        )

    with running(argv, log) as proxy:
        url = await served_url(log, proxy)
        notes = files / "notes.txt"
        for who, mode, answer in (("alice", "auto", "accept"), ("bob", "legacy", "decline")):
            person = Person(answer)
            async with Client(
                url, auth=token(who), mode=mode, elicitation_handler=person
            ) as client:
                assert {tool.name for tool in await client.list_tools()} == VISIBLE
                for n in (1, 2):
                    name = f"{who}{n}.txt"
                    await client.call_tool("write_file", {"path": str(files / name), "content": ""})
                if who == "alice":
                    third = await client.call_tool(
                        "write_file", {"path": str(files / "x.txt"), "content": ""},
                        raise_on_error=False,
                    )  # fmt: skip
                    assert text(third).startswith(DENIED + "Rate limit 'writes'")
                edit = {"path": str(notes), "edits": [{"oldText": "h", "newText": "j"}]}
                edited = await client.call_tool("edit_file", edit, raise_on_error=False)
                assert len(person.asked) == 1
                if who == "bob":
                    assert text(edited).startswith(DENIED + "Edits to existing files need")
        assert notes.read_text("utf-8") == "jello\n"  # alice's edit, not bob's
        assert sorted(p.name for p in files.iterdir()) == [
            "alice1.txt", "alice2.txt", "bob1.txt", "bob2.txt", "notes.txt",
        ]  # fmt: skip
        assert unauthenticated_status(url) == 401
        await wait_for_line(log, re.escape("rate limited 'write_file' for 'alice'"))
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=DEADLINE) == 0
    assert "Traceback" not in log.read_text("utf-8")


def unauthenticated_status(url: str) -> int:
    """The HTTP status of an initialize request sent without a token."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    }}  # fmt: skip
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            status: int = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_an_http_upstream(marker: Path) -> None:
    """--upstream URL: the proxy guards a streamable-HTTP server (the Python example
    server) with the qflow policy, for a stdio client of either era."""
    port = _free_port()
    server_policy = marker / "server-policy.json"
    server_policy.write_text(json.dumps({"version": "1", "default": "allow"}), "utf-8")
    upstream = [sys.executable, str(EXAMPLES / "guarded_server.py"), "--http", str(port)]
    upstream += ["--policy", str(server_policy)]
    with running(upstream, marker / "server.log"):
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the example server did not start"
                await asyncio.sleep(0.1)
        log = marker / "stderr.log"
        url = f"http://127.0.0.1:{port}/mcp"
        for mode in ("auto", "legacy"):
            transport = over_stdio(
                "--policy", EXAMPLES / "qflow-policy.json", "--upstream", url, log=log
            )
            async with Client(transport, mode=mode) as client:
                listed = {tool.name for tool in await client.list_tools()}
                assert "qflow_task_list" in listed and "qflow_task_delete" not in listed
                assert (await client.call_tool("qflow_task_list", {})).data == []
                merge = await client.call_tool(
                    "qflow_workspace", {"action": "merge"}, raise_on_error=False
                )
                assert text(merge) == (
                    DENIED + "Merging or deleting workspaces is done by people, not agents."
                )
        assert any(
            line.startswith(PREFIX + f"serving stdio in front of the upstream server at {url}")
            for line in lines(log)
        )


ASKING_SERVER = """
from fastmcp import Context, FastMCP

mcp = FastMCP("asking")


@mcp.tool
async def ask(ctx: Context) -> str:
    try:
        answer = await ctx.elicit("May I?", response_type=bool)
    except Exception as exc:
        return f"refused: {exc}"
    return f"answered: {answer.action}"


mcp.run(show_banner=False)
"""


async def test_a_command_upstream_cannot_ask_the_proxys_clients(marker: Path) -> None:
    """The one session with a command upstream belongs to no client: the server's own
    elicitation is refused, never put to whichever client is calling."""
    script = marker / "asking_server.py"
    script.write_text(ASKING_SERVER, "utf-8")
    policy = marker / "policy.json"
    policy.write_text(json.dumps({"version": "1", "default": "allow"}), "utf-8")
    person = Person("accept")
    transport = over_stdio("--policy", policy, "--", sys.executable, script, log=marker / "log")
    async with Client(transport, mode="legacy", elicitation_handler=person) as client:
        answer = await client.call_tool("ask", {})
    assert answer.data == "refused: No active context found."
    assert person.asked == []


# -- live reload ------------------------------------------------------------------------------


async def test_a_broken_edit_keeps_the_last_good_policy(files: Path) -> None:
    server = filesystem_server()
    policy = files.parent / "policy.json"
    policy.write_text(POLICY.read_text("utf-8"), "utf-8")
    log = files.parent / "stderr.log"
    transport = over_stdio("--policy", policy, "--", *server, files, log=log)
    async with Client(transport) as client:
        assert "move_file" not in {tool.name for tool in await client.list_tools()}
        seen = len(lines(log))
        policy.write_text('{"version": "1",\n "default": "maybe"}', "utf-8")
        said = await wait_for_line(log, re.escape(PREFIX) + ".*cannot be used.*", seen)
        assert said.group(0) == PREFIX + (
            "the policy file changed but cannot be used; the last good policy stays in force: "
            f"""{policy}:2:2: /default: This value must be 'allow' or 'deny', but it is "maybe"."""
        )
        # The last good policy is in force: move_file is still hidden and refused.
        assert "move_file" not in {tool.name for tool in await client.list_tools()}
        moved = await client.call_tool(
            "move_file",
            {"source": str(files / "notes.txt"), "destination": str(files / "moved.txt")},
            raise_on_error=False,
        )
        assert text(moved).startswith(DENIED + "The tool 'move_file' is not available")

        seen = len(lines(log))
        fixed = json.loads(POLICY.read_text("utf-8"))
        fixed["hide"] = []
        fixed["tools"]["move_file"] = {}
        policy.write_text(json.dumps(fixed), "utf-8")
        await wait_for_line(
            log, re.escape(PREFIX + "the policy file changed and was reloaded"), seen
        )
        assert "move_file" in {tool.name for tool in await client.list_tools()}
        await client.call_tool(
            "move_file",
            {"source": str(files / "notes.txt"), "destination": str(files / "moved.txt")},
        )
        assert (files / "moved.txt").exists()


# -- Redis: two replicas, one set of limits ---------------------------------------------------


async def test_two_proxies_share_limits_through_redis(files: Path) -> None:
    from redis_server import redis_server, require_redis_server  # noqa: PLC0415

    require_redis_server()
    server = filesystem_server()
    with redis_server() as store:
        args = ["--policy", POLICY, "--redis", store.url, "--", *server, files]
        transports = [over_stdio(*args, log=files.parent / f"stderr{n}.log") for n in (1, 2)]
        async with Client(transports[0]) as first, Client(transports[1]) as second:
            written = []
            for n, client in enumerate((first, second, first, second)):
                result = await client.call_tool(
                    "write_file", {"path": str(files / f"{n}.txt"), "content": ""},
                    raise_on_error=False,
                )  # fmt: skip
                written.append(not result.is_error)
            # two writes a minute in all, whichever replica takes them
            assert written == [True, True, False, False]


async def test_no_approvals_denies_with_the_rules_reason(files: Path) -> None:
    server = filesystem_server()
    person = Person()
    transport = over_stdio(
        "--policy", POLICY, "--no-approvals", "--", *server, files, log=files.parent / "log"
    )
    async with Client(transport, elicitation_handler=person) as client:
        edit = {"path": str(files / "notes.txt"), "edits": [{"oldText": "h", "newText": "j"}]}
        refused = await client.call_tool("edit_file", edit, raise_on_error=False)
    assert text(refused) == DENIED + "Edits to existing files need a person's approval."
    assert person.asked == [] and (files / "notes.txt").read_text("utf-8") == "hello\n"


# -- what goes wrong: one line and a stated exit status ---------------------------------------

CRASHING_SERVER = """
import os
from fastmcp import FastMCP

mcp = FastMCP("crashing")


@mcp.tool
def crash() -> str:
    os._exit(7)


mcp.run(show_banner=False)
"""


@pytest.mark.parametrize("front", ["stdio", "http"])
async def test_an_upstream_that_exits_stops_the_proxy_with_status_4(
    front: str, marker: Path
) -> None:
    """The upstream exits while the proxy serves (over stdio, a client that keeps its
    stdin open): the proxy says so in one line and exits with 4, leaving nothing running."""
    script = marker / "crashing_server.py"
    script.write_text(CRASHING_SERVER, "utf-8")
    policy = marker / "policy.json"
    policy.write_text(json.dumps({"version": "1", "default": "allow"}), "utf-8")
    log = marker / "stderr.log"
    if front == "stdio":
        status = marker / "status"
        # The proxy's exit status, written down by the shell that runs it.
        wrapper = f'"$@"; echo $? > {shlex.quote(str(status))}'
        argv = ["-c", wrapper, "sh", *proxy_argv("--policy", policy, "--", sys.executable, script)]
        transport = StdioTransport("sh", argv, env=source_env(), keep_alive=False, log_file=log)
        async with Client(transport, mode="legacy") as client:
            assert [tool.name for tool in await client.list_tools()] == ["crash"]
            with contextlib.suppress(Exception):  # the connection may end before an answer
                await client.call_tool("crash", {}, raise_on_error=False)
            deadline = time.monotonic() + DEADLINE
            while not status.exists() or not status.read_text():
                assert time.monotonic() < deadline, f"the proxy did not stop:\n{lines(log)}"
                await asyncio.sleep(0.1)
        assert status.read_text().strip() == "4"
    else:
        argv = proxy_argv("--policy", policy, "--http", "0", "--", sys.executable, script)
        with running(argv, log) as proxy:
            async with Client(await served_url(log, proxy)) as client:
                with contextlib.suppress(Exception):
                    await client.call_tool("crash", {}, raise_on_error=False)
            assert proxy.wait(timeout=DEADLINE) == 4
    said = [line for line in lines(log) if line.startswith(PREFIX)]
    exited = PREFIX + (
        f"the upstream server {shlex.join([sys.executable, str(script)])!r} exited with "
        "status 7; the proxy stops (exit status 4). Its own messages, if any, are above."
    )
    # The in-flight call's own failure line may come before or after the exit line: two
    # tasks report them, in whichever order the event loop runs them.
    assert exited in said
    others = [line for line in said if line != exited]
    assert all(
        line.startswith((PREFIX + "serving ", PREFIX + "Error calling tool 'crash'"))
        for line in others
    ), said
    assert "Traceback" not in log.read_text("utf-8")


async def test_sigterm_stops_a_stdio_proxy_and_its_upstream_with_0(files: Path) -> None:
    """A stdio client that keeps stdin open: SIGTERM still ends the proxy at once, with
    status 0, and its upstream with it (the marker fixture sees no process left)."""
    server = filesystem_server()
    log = files.parent / "stderr.log"
    argv = proxy_argv("--policy", POLICY, "--", *server, files)
    with log.open("ab") as err:
        proxy = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=source_env()
        )
    try:
        await wait_for_line(log, re.escape(PREFIX + "serving stdio"))
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=DEADLINE) == 0
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()
        assert proxy.stdin is not None
        proxy.stdin.close()


def test_each_stderr_line_is_one_line() -> None:
    """What a caller sent (a tool name, an identity from a token) cannot start a new line
    of the proxy's stderr; shadow mode says the refusal was not enforced."""
    reporter = Reporter(io.StringIO(), approvals=False)
    event = AuditEvent(
        kind="decision", time="2026-01-01T00:00:00.000Z", event_id="1", policy_hash="h",
        identity="eve\r\nforged", tool="x\npolicylayer proxy: allowed", effect="deny",
        allowed=False, enforced=True, rule="", reason="The tool 'x\npolicylayer' is hidden.",
    )  # fmt: skip
    line = reporter.line(event)
    assert line == (
        "denied 'x\\npolicylayer proxy: allowed' for 'eve\\r\\nforged' (/): "
        "The tool 'x\\npolicylayer' is hidden."
    )
    shadow = dataclasses.replace(event, allowed=True, enforced=False, effect="approval_required")
    assert reporter.line(shadow) == "shadow mode, not enforced: " + line


def run_proxy(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        proxy_argv(*args), capture_output=True, text=True, env=source_env(), cwd=ROOT,
        timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["/nonexistent/mcp-server"], "the upstream server '/nonexistent/mcp-server' could "
         "not be started: No such file or directory. Check the command after --."),
        ([sys.executable, "-c", "raise SystemExit(5)"], "the upstream server {command} did "
         "not start: it exited with status 5 before it answered."),
        (["--start-timeout", "1", "--", sys.executable, "-c", "import time; time.sleep(60)"],
         "the upstream server {command} did not start: it did not answer within 1 second "
         "(--start-timeout)."),
    ],
    ids=["not-found", "exits", "silent"],
)  # fmt: skip
def test_an_upstream_command_that_does_not_start(
    command: list[str], said: str, marker: Path
) -> None:
    args = ["--policy", POLICY, *(command if "--" in command else ["--", *command])]
    done = run_proxy(*args)
    upstream = command[command.index("--") + 1 :] if "--" in command else command
    assert done.stderr.splitlines() == [PREFIX + said.format(command=repr(shlex.join(upstream)))]
    assert done.returncode == 3


def test_an_http_upstream_that_cannot_be_reached() -> None:
    port = _free_port()  # nothing listens there
    done = run_proxy("--policy", POLICY, "--upstream", f"http://127.0.0.1:{port}/mcp")
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        PREFIX + f"the upstream server at http://127.0.0.1:{port}/mcp did not start: the MCP "
        "handshake failed ("
    )
    assert done.returncode == 3


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "the policy cannot be used: The policy file '{path}' does not exist."),
        ('{"version": "1", "default": "maybe"}', "the policy cannot be used: {path}:1:18: "
         """/default: This value must be 'allow' or 'deny', but it is "maybe"."""),
    ],
    ids=["missing", "broken"],
)  # fmt: skip
def test_a_policy_that_cannot_be_used(tmp_path: Path, content: str | None, said: str) -> None:
    policy = tmp_path / "policy.json"
    if content is not None:
        policy.write_text(content, "utf-8")
    done = run_proxy("--policy", policy, "--", "true")
    assert done.stderr.splitlines() == [PREFIX + said.format(path=policy)]
    assert done.returncode == 2


def test_redis_that_cannot_be_reached() -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    done = run_proxy("--policy", POLICY, "--redis", url, "--", "true")
    (line,) = done.stderr.splitlines()
    assert line.startswith(PREFIX + f"Redis at {url!r} cannot be reached (")
    assert done.returncode == 3


def test_without_fastmcp_the_command_says_what_to_install() -> None:
    """`import policylayer_core.cli` does not import FastMCP; the proxy, without it,
    names the extra to install."""
    code = (
        "import sys; sys.modules['fastmcp'] = None\n"
        "import policylayer_core.cli as cli\n"
        "raise SystemExit(cli.main(['proxy', '--policy', 'p.json', '--', 'true']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=source_env(),
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(PREFIX + "the proxy needs FastMCP, which is not installed (")
    assert line.endswith("): pip install 'policylayer-core[fastmcp]'.")
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, policylayer_core.cli; print('fastmcp' in sys.modules)"],
        capture_output=True, text=True, env=source_env(), timeout=60, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "p.json"], "give the upstream server: its command after --, or "
         "--upstream URL (not both)"),
        (["--policy", "p.json", "--upstream", "http://x/mcp", "--", "cmd"],
         "give the upstream server"),
        (["--policy", "p.json", "--upstream", "ftp://x"], "is not an http:// or https:// URL"),
        (["--policy", "p.json", "--http", "localhost:http", "--", "cmd"],
         "--http: 'localhost:http' is not HOST:PORT"),
        (["--policy", "p.json", "--identity-from-auth", "--", "cmd"],
         "--identity-from-auth needs tokens to read"),
        (["--policy", "p.json", "--auth-jwks-uri", "https://x/jwks", "--", "cmd"],
         "--auth-* options check tokens on the HTTP front: add --http HOST:PORT"),
        (["--policy", "p.json", "--identity", "a", "--identity-from-auth", "--", "cmd"],
         "not allowed with argument"),
    ],
)  # fmt: skip
def test_command_line_mistakes(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["proxy", *args])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
