"""`policylayer proxy`: a policy in front of any MCP server, run as a command (docs/proxy.md).

    policylayer proxy --policy policy.json -- npx -y @modelcontextprotocol/server-filesystem DIR

The proxy is a FastMCP proxy guarded by `PolicyMiddleware`. It speaks MCP on stdio (or
streamable HTTP with `--http HOST:PORT`) to its clients and to an upstream server that is
a command it starts (after `--`) or a streamable-HTTP URL (`--upstream`). Every
`tools/call` is decided by the policy before it reaches the server; `tools/list` shows
only what the caller may see; a call that needs approval is put to the client's user.
The policy file is watched and reloaded; every refusal is one line on stderr, and every
decision a line of the `--audit` file.

What it reports, and its exit status (`EXIT_*`): 0 after a normal end (the client closed
stdin, or SIGINT/SIGTERM); 2 when the command line, the policy or another input cannot be
used (nothing was started); 3 when the upstream server (or Redis) could not be started or
reached; 4 when the upstream command exited while the proxy was serving. Every one of
them comes with one line on stderr that says what happened, never a traceback.

Importing this module imports FastMCP (the `fastmcp` extra); `policylayer_core.cli` imports
it only when the `proxy` command runs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import uvicorn
from fastmcp.client.transports import ClientTransport, StreamableHttpTransport
from fastmcp.server.auth import AuthProvider
from fastmcp.server.context import Context
from fastmcp.server.providers.proxy import FastMCPProxy, ProxyClient

from policylayer_core._proxy_output import ProxySink, Reporter, describe, quiet_libraries, say
from policylayer_core._upstream import ChildServer
from policylayer_core.audit_jsonl import JsonlSink
from policylayer_core.engine import PolicyEngine
from policylayer_core.errors import PolicyError
from policylayer_core.fastmcp import PolicyMiddleware
from policylayer_core.ratelimit import RateLimitStore

__all__ = [
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UPSTREAM_EXITED",
    "EXIT_USAGE",
    "ProxySettings",
    "run_proxy",
]

EXIT_OK = 0
EXIT_USAGE = 2  # the command line, the policy or another input cannot be used
EXIT_UNAVAILABLE = 3  # the upstream server (or Redis) could not be started or reached
EXIT_UPSTREAM_EXITED = 4  # the upstream command exited while the proxy was serving

ANONYMOUS = "anonymous"
_RELOAD_INTERVAL = 2.0  # seconds between looks at the policy file
_EXIT_REPORT_WAIT = 5.0  # seconds to wait for a failed upstream's exit status


@dataclass(frozen=True)
class ProxySettings:
    """What `policylayer proxy` was asked to do (docs/proxy.md lists every option).

    Exactly one of `command` (argv of the upstream server to start) and `upstream_url`
    (a streamable-HTTP MCP endpoint) is given. `http` is the (host, port) of the HTTP
    front, None for stdio. `identity` names every caller unless `identity_from_auth`,
    where each caller is the client id of its verified bearer token (`auth_public_key`
    or `auth_jwks_uri`, with `auth_issuer` and `auth_audience` when given).
    """

    policy: Path
    command: tuple[str, ...] = ()
    upstream_url: str | None = None
    http: tuple[str, int] | None = None
    audit: Path | None = None
    approvals: bool = True
    identity: str = ANONYMOUS
    identity_from_auth: bool = False
    auth_public_key: str | None = None
    auth_jwks_uri: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    redis: str | None = None
    redis_prefix: str = "policylayer"
    start_timeout: float = 60.0
    reload_interval: float = _RELOAD_INTERVAL


class _ProxyError(Exception):
    """A reason the proxy cannot start or go on: one sentence for stderr, and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_proxy(settings: ProxySettings, *, stderr: TextIO | None = None) -> int:
    """Run the proxy until its client goes away, a signal, or its upstream ends; return
    the exit status (`EXIT_*`). Problems are reported on `stderr` as one line each."""
    err = stderr if stderr is not None else sys.stderr
    quiet_libraries(err)
    try:
        engine = _engine(settings, err)
    except _ProxyError as failure:
        say(err, str(failure))
        return failure.code
    try:
        auth = _auth(settings)
        listener = _listen(settings.http) if settings.http is not None else None
    except _ProxyError as failure:
        engine.close()
        say(err, str(failure))
        return failure.code
    runner = _Runner(settings, engine, auth, listener, err)
    try:
        return anyio.run(runner.main)
    finally:
        engine.close()


# -- the engine: policy, store, audit --------------------------------------------------------


def _engine(settings: ProxySettings, err: TextIO) -> PolicyEngine:
    store = _store(settings) if settings.redis is not None else None
    jsonl = None
    if settings.audit is not None:
        folder = settings.audit.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise _ProxyError(
                f"the audit file {str(settings.audit)!r} cannot be written: its folder does "
                "not exist or is not writable; give a path in a writable folder.",
                EXIT_USAGE,
            )
        jsonl = JsonlSink(settings.audit)
    sink = ProxySink(jsonl, Reporter(err, approvals=settings.approvals))
    try:
        return PolicyEngine.from_file(
            settings.policy,
            watch=True,
            watch_interval=settings.reload_interval,
            audit=sink,
            store=store,
        )
    except PolicyError as error:
        sink.close()
        # Every problem with its line:column; the policy is what to fix.
        raise _ProxyError(_policy_problems(error), EXIT_USAGE) from None


def _policy_problems(error: PolicyError) -> str:
    """One line for one problem, else a line per problem under a heading."""
    lines = [
        issue.message if issue.line is None and not issue.pointer else issue.format(error.source)
        for issue in error.issues
    ]
    if len(lines) == 1:
        return f"the policy cannot be used: {lines[0]}"
    return f"the policy cannot be used; it has {len(lines)} problems:\n" + "\n".join(
        "  " + line for line in lines
    )


def _store(settings: ProxySettings) -> RateLimitStore:
    try:
        import redis  # noqa: PLC0415 - the redis extra is optional

        from policylayer_core.redis_store import RedisStore  # noqa: PLC0415
    except ImportError:
        raise _ProxyError(
            "--redis needs the redis client: pip install 'policylayer-core[redis]'.", EXIT_USAGE
        ) from None
    assert settings.redis is not None
    try:
        store = RedisStore(settings.redis, prefix=settings.redis_prefix)
    except ValueError as exc:
        raise _ProxyError(
            f"--redis {settings.redis!r} is not a Redis URL ({exc}); write it as "
            "redis://HOST:PORT/DB.",
            EXIT_USAGE,
        ) from None
    try:
        store.client.ping()  # and the connection is open for the first call
    except redis.RedisError as exc:
        raise _ProxyError(
            f"Redis at {settings.redis!r} cannot be reached ({exc}); start it, or fix the URL.",
            EXIT_UNAVAILABLE,
        ) from None
    return store


# -- the front: auth and listening socket -----------------------------------------------------


def _auth(settings: ProxySettings) -> AuthProvider | None:
    if settings.auth_public_key is None and settings.auth_jwks_uri is None:
        return None
    from fastmcp.server.auth.providers.jwt import JWTVerifier  # noqa: PLC0415

    try:
        return JWTVerifier(
            public_key=settings.auth_public_key,
            jwks_uri=settings.auth_jwks_uri,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
        )
    except ValueError as exc:
        raise _ProxyError(f"the token check cannot be set up: {exc}.", EXIT_USAGE) from None


def _listen(address: tuple[str, int]) -> socket.socket:
    """Bind the HTTP front now, so a taken port is a one-line error before anything starts
    (and port 0 gets a free port, which the ready line names)."""
    host, port = address
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(info[0], socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(info[4])
    except OSError as exc:
        raise _ProxyError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
            "--http HOST:PORT.",
            EXIT_USAGE,
        ) from None
    listener.listen(128)
    return listener


# -- running ------------------------------------------------------------------------------


class _Runner:
    """The async part: start the upstream, check it, serve the front, watch everything."""

    def __init__(
        self,
        settings: ProxySettings,
        engine: PolicyEngine,
        auth: AuthProvider | None,
        listener: socket.socket | None,
        err: TextIO,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.auth = auth
        self.listener = listener
        self.err = err
        self.code = EXIT_OK
        self.child: ChildServer | None = None
        self.server: uvicorn.Server | None = None
        self._signals: anyio.CancelScope | None = None  # made on the event loop, in main()

    def upstream(self) -> ClientTransport:
        if self.settings.upstream_url is not None:
            return StreamableHttpTransport(self.settings.upstream_url)
        self.child = ChildServer(self.settings.command)  # with the proxy's environment
        return self.child

    def describe_upstream(self) -> str:
        if self.settings.upstream_url is not None:
            return f"the upstream server at {self.settings.upstream_url}"
        return f"the upstream server {shlex.join(self.settings.command)!r}"

    async def main(self) -> int:
        transport = self.upstream()
        # One ProxyClient, copied for each request. Handshake era towards the upstream:
        # every server speaks it, and one stdio session can only be one era (the front
        # may speak either; the policy's approvals work on both). The front's own
        # headers (its Authorization above all) are never passed on to the upstream.
        backend = ProxyClient(transport, forward_incoming_headers=False)
        proxy = FastMCPProxy(client_factory=backend.new, name="policylayer-proxy", auth=self.auth)
        proxy.add_middleware(
            PolicyMiddleware(
                self.engine,
                identify=self._identify(),
                approver="elicit" if self.settings.approvals else None,
            )
        )
        self._signals = anyio.CancelScope()
        async with anyio.create_task_group() as tasks:
            signals_done = anyio.Event()
            tasks.start_soon(self._on_signals, signals_done)
            try:
                await self._start(tasks, backend)
            except _ProxyError as failure:
                say(self.err, str(failure))
                tasks.cancel_scope.cancel()
                return failure.code
            tasks.start_soon(self._reload_policy)
            if self.child is not None:
                tasks.start_soon(self._watch_child, self.child)
            say(self.err, self._ready_line())
            if self.listener is None:
                await proxy.run_stdio_async(show_banner=False)
            else:
                # Uvicorn takes the signals while it serves (below): let go of them first.
                self._signals.cancel()
                await signals_done.wait()
                await self._serve_http(proxy, self.listener)
            tasks.cancel_scope.cancel()
        return self.code

    def _identify(self) -> Callable[[Context], str | Awaitable[str]] | None:
        if self.settings.identity_from_auth:
            return None  # PolicyMiddleware's default: the verified token's client id
        name = self.settings.identity
        return lambda _ctx: name

    async def _start(self, tasks: anyio.abc.TaskGroup, backend: ProxyClient[Any]) -> None:
        """Start the upstream and list its tools once, or say why it cannot be used."""
        child = self.child
        if child is not None:
            try:
                await tasks.start(child.run)
            except OSError as exc:
                raise _ProxyError(
                    f"{self.describe_upstream()} could not be started: "
                    f"{exc.strerror or exc}. Check the command after --.",
                    EXIT_UNAVAILABLE,
                ) from None
        timeout = self.settings.start_timeout
        problem = None
        with anyio.move_on_after(timeout) as waited:
            try:
                async with backend.new() as client:
                    await client.list_tools()
            except Exception as exc:
                problem = f"the MCP handshake failed ({describe(exc)})"
        if waited.cancelled_caught:
            seconds = f"{timeout:g} second{'s' * (timeout != 1)}"
            problem = f"it did not answer within {seconds} (--start-timeout)"
        elif problem is not None and child is not None:
            # A server that exits at once closes its output first: the handshake fails
            # before its exit status is in. Wait for it, briefly, to say how it ended.
            with anyio.move_on_after(_EXIT_REPORT_WAIT):
                await child.gone.wait()
            if child.gone.is_set():
                problem = f"it {child.describe_exit()} before it answered"
        if problem is not None:
            raise _ProxyError(
                f"{self.describe_upstream()} did not start: {problem}.", EXIT_UNAVAILABLE
            )

    def _ready_line(self) -> str:
        front = "stdio"
        if self.listener is not None:
            host, port = self.listener.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            front = f"http://{shown}:{port}/mcp"
        return (
            f"serving {front} in front of {self.describe_upstream()}, "
            f"policy {self.settings.policy} ({self.engine.policy.digest})."
        )

    async def _serve_http(self, proxy: FastMCPProxy, listener: socket.socket) -> None:
        # Uvicorn run here rather than by FastMCP's run_http_async, so that the proxy can
        # ask it for a graceful shutdown when the upstream exits.
        app = proxy.http_app(transport="http", host_origin_protection="auto")
        config = uvicorn.Config(
            app, log_config=None, access_log=False, log_level="warning", lifespan="on",
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        if threading.current_thread() is threading.main_thread():
            # Uvicorn takes SIGINT and SIGTERM while it serves, shuts down gracefully and
            # then raises the signal again, for the handler it found: this one, which
            # must not kill the proxy before it has stopped its upstream.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._signalled)
        await self.server.serve(sockets=[listener])

    def _signalled(self, signum: int, frame: object) -> None:
        if self.server is not None:
            self.server.should_exit = True

    async def _reload_policy(self) -> None:
        """Look at the policy file now and then, so an edit takes effect (or a broken one
        is reported) even while no call comes; decide() also looks, between calls."""
        while True:
            await anyio.sleep(self.settings.reload_interval)
            with contextlib.suppress(Exception):  # the engine logs what went wrong
                await anyio.to_thread.run_sync(self.engine.poll)

    async def _watch_child(self, child: ChildServer) -> None:
        await child.gone.wait()
        say(
            self.err,
            f"{self.describe_upstream()} {child.describe_exit()}; the proxy stops "
            f"(exit status {EXIT_UPSTREAM_EXITED}). Its own messages, if any, are above.",
        )
        self._stop(EXIT_UPSTREAM_EXITED)

    async def _on_signals(self, done: anyio.Event) -> None:
        """SIGINT and SIGTERM stop the proxy (status 0), until uvicorn takes them over."""
        try:
            if sys.platform == "win32" or self._signals is None:  # pragma: no cover
                return  # no signal receiver on Windows
            with (
                self._signals,
                anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
            ):
                async for _ in signals:
                    self._stop(EXIT_OK)
                    return
        finally:
            done.set()

    def _stop(self, code: int) -> None:
        self.code = code
        if self.server is not None:
            self.server.should_exit = True  # uvicorn returns, and main() cleans up
            return
        # The stdio front reads stdin in a worker thread that nothing can interrupt: with
        # a client that keeps stdin open, main() would wait for its next line forever.
        # Stop the upstream, write out the audit log, and leave.
        if self.child is not None:
            self.child.terminate()
        self.engine.close()
        with contextlib.suppress(Exception):
            self.err.flush()
        os._exit(code)
