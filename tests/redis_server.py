"""A real, throwaway `redis-server` for tests and benchmarks: free loopback port, temp dir.

`RedisServer` starts `redis-server` on 127.0.0.1 with persistence off (`--save ""
--appendonly no`), in a temporary directory, and waits until it answers PING. `kill()`
ends it abruptly (SIGKILL: a crash, not a shutdown), `start()` brings it back on the
same port, `pause()`/`resume()` freeze it (SIGSTOP/SIGCONT: a server that accepts
connections and never answers), and `stop()` ends it and removes the directory. It uses
only the standard library, so the benchmark loads it too.

`redis_server()` (a context manager) always stops it. In pytest, `require_redis_server()`
skips the test with a clear message when the binary is missing, but fails it when the
environment variable `CI` or `POLICYLAYER_REQUIRE_REDIS` is set (.ci/run sets the latter):
CI must run these tests, never silently skip them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "MISSING",
    "REQUIRED_BY",
    "RedisServer",
    "redis_server",
    "redis_server_binary",
    "require_redis_server",
]

REQUIRED_BY = ("CI", "POLICYLAYER_REQUIRE_REDIS")  # environment variables that forbid a skip
_PR_SET_PDEATHSIG = 1
MISSING = "redis-server not installed (apt-get install redis-server); the Redis tests need it"


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def require_redis_server() -> str:
    """The binary's path; without one, skip the test (or fail it when CI must run it)."""
    import pytest  # noqa: PLC0415 - only the test helper needs pytest

    binary = redis_server_binary()
    if binary is None:
        required = [name for name in REQUIRED_BY if os.environ.get(name)]
        if required:
            pytest.fail(f"{MISSING}; {required[0]} is set, so this is a failure, not a skip")
        pytest.skip(MISSING)
    return binary


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGKILL when the parent dies, so a test run that
    is itself killed leaves no server behind. Elsewhere the `finally` blocks must do."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process that this object owns."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(MISSING)
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="policylayer-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server: on a free port the first time, on the same port afterwards."""
        if self.process is not None and self.process.poll() is None:
            return
        attempts = 5 if self.port == 0 else 1
        for attempt in range(attempts):
            port = self.port or _free_port()
            log = (self.dir / "redis.log").open("ab")
            # Popen keeps its own handle on the log; ours can close now.
            with log:
                process = subprocess.Popen(
                    [
                        self.binary,
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(self.dir),
                        "--daemonize", "no",
                        "--databases", "1",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
                )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                if _answers_ping(port):
                    self.port, self.process = port, process
                    return
                time.sleep(0.01)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
            if attempt == attempts - 1:
                tail = (self.dir / "redis.log").read_text("utf-8", "replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {port}:\n{tail}")

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would; the port stays ours to reuse."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a paused server dies just the same
                process.kill()
        if process is not None:
            process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, no answers, until `resume()`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(binary: str | None = None) -> Iterator[RedisServer]:
    """A started server, always stopped at the end of the block."""
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()
