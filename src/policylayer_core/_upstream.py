"""The upstream server of `policylayer proxy` when it is a command: a child process it owns.

FastMCP's `StdioTransport` starts its server on the first request and, when it finds the
process dead, quietly starts another at the next one. A proxy needs more: it starts the
server before it serves anyone (so a command that does not start is a one-line error and
an exit code, not a failed first call), and it notices at once when the server exits, with
its exit status, so that it can say so and stop. `ChildServer` is that transport: one
process and one MCP session over its pipes for the proxy's whole life, shared by every
proxied request (requests are JSON-RPC messages with their own ids, so they interleave).

Lifecycle: `await task_group.start(child.run)` spawns the process (an `OSError` from the
spawn propagates); `child.gone` is set when the server can no longer answer (it exited,
or closed its stdout), with `child.returncode`; cancelling `run` stops the server as the
MCP specification says (close its stdin, wait, then terminate its process group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anyio
import mcp_types
from anyio.abc import Process, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from fastmcp.client.transports import ClientTransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp import ClientSession
from mcp.shared.message import SessionMessage
from typing_extensions import Unpack

__all__ = ["ChildServer"]

_EXIT_GRACE = 2.0  # seconds a server has to exit after its stdin closes (then SIGTERM)
_KILL_GRACE = 2.0  # seconds after SIGTERM before SIGKILL
_POLL = 0.05  # seconds between looks at the exit status while waiting for it


class ChildServer(ClientTransport):
    """An MCP server run as a child process, speaking MCP on its stdin and stdout.

    `argv` is the command; `env` its whole environment (None: the proxy's own). Its
    stderr is the proxy's stderr, so its own messages reach the same log.
    """

    # Over stdio only the handshake era exists; a client in "auto" mode skips the probe.
    legacy_only = True

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("the command of the upstream server is empty")
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.returncode: int | None = None
        self.pid: int | None = None
        self._failure: Exception | None = None
        self._session: ClientSession | None = None
        self._wanted: tuple[TransportOptions, dict[str, Any]] | None = None
        # Events belong to the running event loop: made in run().
        self._gone: anyio.Event | None = None
        self._want: anyio.Event | None = None
        self._ready: anyio.Event | None = None

    @property
    def gone(self) -> anyio.Event:
        """Set once the server can no longer answer (after `run` has started)."""
        if self._gone is None:
            raise RuntimeError("the upstream server has not been started")
        return self._gone

    def describe_exit(self) -> str:
        """How the server ended, as the end of a sentence: 'exited with status 1'."""
        code = self.returncode
        if code is None:
            return "closed its output and was stopped"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with status {code}"

    def terminate(self) -> None:
        """SIGTERM to the server's process group, when it may still run (on the way out)."""
        if self.pid is not None and self.returncode is None:
            _signal_group_of(self.pid, signal.SIGTERM)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the server and serve its session until it ends or this is cancelled."""
        self._gone, self._want, self._ready = anyio.Event(), anyio.Event(), anyio.Event()
        process = await anyio.open_process(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the proxy's own stderr
            env=self.env,
            cwd=self.cwd,
            # Its own process group, so that stopping it stops what it started (npx
            # starts node, a shell script starts its server).
            start_new_session=sys.platform != "win32",
        )
        self.pid = process.pid
        to_session, from_server = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        to_server, from_session = anyio.create_memory_object_stream[SessionMessage](0)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_write_stdin, process, from_session)
                tasks.start_soon(self._hold_session, from_server, to_server)
                task_status.started()
                await _read_stdout(process, to_session)
                tasks.cancel_scope.cancel()
        finally:
            # Shielded: the server must not outlive the proxy, even on cancellation.
            with anyio.CancelScope(shield=True):
                self.returncode = await _stop(process)
                self._session = None
                self._gone.set()
                self._ready.set()  # release any request still waiting for the session
                for stream in (to_session, from_server, to_server, from_session):
                    await stream.aclose()

    async def _hold_session(
        self,
        from_server: MemoryObjectReceiveStream[SessionMessage | Exception],
        to_server: MemoryObjectSendStream[SessionMessage],
    ) -> None:
        """Open the one MCP session when the first client asks for it, and keep it open."""
        assert self._want is not None and self._ready is not None
        await self._want.wait()
        assert self._wanted is not None
        options, kwargs = self._wanted
        try:
            async with options.session_class(from_server, to_server, **kwargs) as session:
                self._session = session
                self._ready.set()
                await anyio.sleep_forever()
        except Exception as exc:  # the requests waiting for it get the reason
            self._failure = exc
        finally:
            self._session = None
            self._ready.set()

    @contextlib.asynccontextmanager
    async def connect_session(
        self,
        *,
        transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncGenerator[ClientSession, None]:
        """The shared session. The first client's options and callbacks make it: the
        proxy's clients are copies of one `ProxyClient`, whose callbacks forward to
        whichever front request is current."""
        if self._want is None or self._ready is None or self._gone is None:
            raise RuntimeError("the upstream server has not been started")
        if self._gone.is_set():
            raise RuntimeError(f"the upstream server {self.describe_exit()}")
        if self._wanted is None:
            self._wanted = (transport_options or TransportOptions(), dict(session_kwargs))
            self._want.set()
        await self._ready.wait()
        session = self._session
        if session is None:
            if self._failure is not None and not self._gone.is_set():
                raise RuntimeError(f"the upstream session failed: {self._failure}")
            raise RuntimeError(f"the upstream server {self.describe_exit()}")
        yield session

    def __repr__(self) -> str:
        return f"<ChildServer {self.argv!r}>"


async def _read_stdout(
    process: Process, to_session: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    """Pass each line the server writes to the session; return at the end of its output."""
    assert process.stdout is not None
    buffer = ""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        async for chunk in TextReceiveStream(process.stdout, encoding="utf-8", errors="replace"):
            lines = (buffer + chunk).split("\n")
            buffer = lines.pop()
            for line in lines:
                if line.strip():
                    await to_session.send(_parse(line))


def _parse(line: str) -> SessionMessage | Exception:
    # A line that is not JSON-RPC goes to the session as a value, as the SDK's stdio
    # client does: the session reports it and the connection goes on.
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


async def _write_stdin(
    process: Process, from_session: MemoryObjectReceiveStream[SessionMessage]
) -> None:
    assert process.stdin is not None
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        async for message in from_session:
            text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
            await process.stdin.send((text + "\n").encode("utf-8"))


async def _stop(process: Process) -> int | None:
    """Stop the server as the MCP specification says, and return its exit status: close
    its stdin and give it time to exit, then SIGTERM its process group, then SIGKILL."""
    if process.stdin is not None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    if await _exited(process, _EXIT_GRACE):
        return process.returncode
    _signal_group(process, signal.SIGTERM)
    if await _exited(process, _KILL_GRACE):
        return process.returncode
    _signal_group(process, getattr(signal, "SIGKILL", signal.SIGTERM))
    await _exited(process, _KILL_GRACE)
    return process.returncode


async def _exited(process: Process, within: float) -> bool:
    # Polls returncode rather than process.wait(), which on asyncio also waits for the
    # pipes to close: a grandchild that inherited them would make it wait forever.
    with anyio.move_on_after(within):
        while process.returncode is None:
            await anyio.sleep(_POLL)
    return process.returncode is not None


def _signal_group(process: Process, signum: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - no process groups there
        with contextlib.suppress(OSError):
            process.terminate()
    else:
        _signal_group_of(process.pid, signum)


def _signal_group_of(pid: int, signum: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - no process groups there
        return
    with contextlib.suppress(OSError):  # gone already, or not ours to signal
        os.killpg(pid, signum)
