r"""A policy gateway: a FastMCP proxy in front of a stdio MCP server, guarded by a policy file.

Start it with the policy and, after `--`, the command of the MCP server to guard (from the
repository's root):

    python examples/gateway.py --policy examples/qflow-policy.json \
        -- python examples/guarded_server.py

It speaks MCP on stdio (point an MCP client's server command at the line above), or with
`--http PORT` streamable HTTP on 127.0.0.1:PORT/mcp. Every tools/call is decided by the
policy before it reaches the server: denials and rate limits come back as an error result
whose text starts with `[POLICY DENIED] `, tools/list shows only what the caller may see,
and calls that need approval are put to the client's user (elicitation, on either protocol
era); `--no-approvals` denies them instead. The policy file is watched: edit it and the
gateway reloads it (a broken edit keeps the last good policy). The guarded server can be
written in any language; `examples/guarded_server.py` is a small Python one.

Callers are identified by their OAuth client id when the gateway runs behind
authentication, else as "anonymous"; pass your own `identify` to `PolicyMiddleware` to do
better. Requires the `fastmcp` extra: pip install -e '.[fastmcp]'.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy

from policylayer_core import PolicyEngine, PolicyError
from policylayer_core.fastmcp import PolicyMiddleware

HERE = Path(__file__).resolve().parent


def build_gateway(
    command: Sequence[str],
    policy: str | Path,
    *,
    approvals: bool = True,
    keep_alive: bool = True,
) -> FastMCP:
    """A proxy to the stdio server started by `command`, guarded by the policy file."""
    if not command:
        raise ValueError("the command of the MCP server to guard is missing")
    engine = PolicyEngine.from_file(policy, watch=True)
    backend = StdioTransport(command[0], list(command[1:]), keep_alive=keep_alive)
    gateway = create_proxy(backend, name="policylayer-gateway")
    gateway.add_middleware(PolicyMiddleware(engine, approver="elicit" if approvals else None))
    return gateway


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A FastMCP proxy in front of a stdio MCP server, guarded by a policy file.",
        usage="%(prog)s [--policy FILE] [--http PORT] [--no-approvals] -- COMMAND [ARG ...]",
    )
    parser.add_argument(
        "--policy",
        default=str(HERE / "qflow-policy.json"),
        help="the policy file (default: examples/qflow-policy.json)",
    )
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT"
    )
    parser.add_argument(
        "--no-approvals",
        action="store_true",
        help="deny calls that need approval instead of asking the client's user",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="the MCP server to guard, after --"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the MCP server's command after --")
    try:
        gateway = build_gateway(command, args.policy, approvals=not args.no_approvals)
    except PolicyError as error:
        # Every problem with its line:column, and no traceback: the policy is what to fix.
        sys.stderr.write(f"gateway.py: the policy cannot be used.\n{error}\n")
        raise SystemExit(2) from None
    if args.http is None:
        gateway.run(show_banner=False)
    else:
        gateway.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)


if __name__ == "__main__":
    main()
