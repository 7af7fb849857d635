"""The options of `policylayer proxy`, checked before FastMCP is imported (docs/proxy.md).

`policylayer_core.cli` registers them; the proxy itself (`policylayer_core.proxy`, which
imports FastMCP) is imported only when the command runs, so `policylayer check` and the
other commands work without the `fastmcp` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "parse_address", "run_command"]

USAGE = (
    "%(prog)s --policy FILE [--http HOST:PORT] [--audit FILE] [--no-approvals]\n"
    "       [--identity NAME | --identity-from-auth] [--redis URL]\n"
    "       (-- COMMAND [ARG ...] | --upstream URL)"
)
EPILOG = """\
The upstream server is a command to start (after --, with the proxy's environment) or a
streamable-HTTP URL (--upstream). Exit status: 0 after a normal end, 2 when the command
line or the policy cannot be used, 3 when the upstream server (or Redis) cannot be started
or reached, 4 when the upstream command exits while the proxy serves. See docs/proxy.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the proxy's options to its subparser."""
    parser.usage = USAGE
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--policy", required=True, metavar="FILE", help="the policy file")
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (PORT alone: "
        "127.0.0.1; port 0: any free port, named on stderr)",
    )
    parser.add_argument("--upstream", metavar="URL", help="guard the streamable-HTTP server at URL")
    parser.add_argument("--audit", metavar="FILE", help="append every decision to FILE (JSONL)")
    parser.add_argument(
        "--no-approvals",
        action="store_true",
        help="deny calls that need approval instead of asking the client's user",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--identity", metavar="NAME", help="the identity of every caller (default: anonymous)"
    )
    who.add_argument(
        "--identity-from-auth",
        action="store_true",
        help="each caller is the client id of its bearer token (needs --http and --auth-*)",
    )
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--auth-public-key",
        metavar="PEM_FILE",
        help="check bearer tokens (JWT) on the HTTP front with this public key",
    )
    key.add_argument(
        "--auth-jwks-uri", metavar="URL", help="check bearer tokens with the keys at URL"
    )
    parser.add_argument("--auth-issuer", metavar="ISS", help="the tokens' required issuer")
    parser.add_argument("--auth-audience", metavar="AUD", help="the tokens' required audience")
    parser.add_argument(
        "--redis", metavar="URL", help="keep rate limits in Redis, shared by several proxies"
    )
    parser.add_argument(
        "--redis-prefix",
        default="policylayer",
        metavar="PREFIX",
        help="the first part of every Redis key (default: policylayer)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the upstream server has to answer at start (default: 60)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `PORT` (on 127.0.0.1) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (a port is a number from 0 to 65535)")
    return host, int(port)


def run_command(args: argparse.Namespace) -> int:
    """Check the options, then run the proxy; return its exit status."""
    parser: argparse.ArgumentParser = args.parser
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command and command[0].startswith("-") and args.command[:1] != ["--"]:
        parser.error(f"unknown option {command[0]!r}; the server's command goes after --")
    if bool(command) == (args.upstream is not None):
        parser.error("give the upstream server: its command after --, or --upstream URL (not both)")
    if args.upstream is not None and not args.upstream.startswith(("http://", "https://")):
        parser.error(f"--upstream {args.upstream!r} is not an http:// or https:// URL")
    http = None
    if args.http is not None:
        try:
            http = parse_address(args.http)
        except ValueError as exc:
            parser.error(f"--http: {exc}")
    checks_tokens = args.auth_public_key is not None or args.auth_jwks_uri is not None
    if (checks_tokens or args.auth_issuer or args.auth_audience) and http is None:
        parser.error("--auth-* options check tokens on the HTTP front: add --http HOST:PORT")
    if (args.auth_issuer or args.auth_audience) and not checks_tokens:
        parser.error("--auth-issuer and --auth-audience need --auth-public-key or --auth-jwks-uri")
    if args.identity_from_auth and not checks_tokens:
        parser.error(
            "--identity-from-auth needs tokens to read: add --http HOST:PORT and "
            "--auth-public-key PEM_FILE or --auth-jwks-uri URL"
        )
    if args.identity is not None and not args.identity.strip():
        parser.error("--identity needs a name")
    if not args.start_timeout > 0:
        parser.error("--start-timeout must be a positive number of seconds")
    public_key = None
    if args.auth_public_key is not None:
        try:
            public_key = Path(args.auth_public_key).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            parser.error(f"the public key file {args.auth_public_key!r} cannot be read ({reason})")
    try:
        from policylayer_core.proxy import ProxySettings, run_proxy  # noqa: PLC0415
    except ImportError as exc:
        sys.stderr.write(
            "policylayer proxy: the proxy needs FastMCP, which is not installed "
            f"({exc}): pip install 'policylayer-core[fastmcp]'.\n"
        )
        return 2
    named = {"identity": args.identity} if args.identity is not None else {}
    settings = ProxySettings(
        **named,
        policy=Path(args.policy),
        command=tuple(command),
        upstream_url=args.upstream,
        http=http,
        audit=Path(args.audit) if args.audit is not None else None,
        approvals=not args.no_approvals,
        identity_from_auth=args.identity_from_auth,
        auth_public_key=public_key,
        auth_jwks_uri=args.auth_jwks_uri,
        auth_issuer=args.auth_issuer,
        auth_audience=args.auth_audience,
        redis=args.redis,
        redis_prefix=args.redis_prefix,
        start_timeout=args.start_timeout,
    )
    return run_proxy(settings)
