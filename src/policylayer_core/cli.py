"""The `policylayer` command: check, explain, schema, suggest, test and proxy (docs/cli.md).

Output for people is plain text on stdout; `--json` prints the same facts for machines.
Exit status: 0 when all is well, 1 when a policy has problems (or, with `check --strict`,
warnings), 2 when the command line or an input file other than a policy is wrong.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from policylayer_core import __version__
from policylayer_core.engine import PolicyEngine
from policylayer_core.errors import PolicyError
from policylayer_core.jsontext import parse_json_text
from policylayer_core.lint import lint
from policylayer_core.loader import LoadedPolicy, load_policy
from policylayer_core.model import OPERATORS, Bundle
from policylayer_core.policytest_command import run_command
from policylayer_core.proxy_command import add_arguments as add_proxy_arguments
from policylayer_core.proxy_command import run_command as run_proxy_command
from policylayer_core.risk import Category, Classification, read_tools, suggest_policy

__all__ = ["main", "policy_schema", "pretty_json"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # A policy's text may hold what its stream cannot encode: "\ud800" is a valid JSON
    # escape, but no character, and a Chinese description cannot be written in ASCII.
    # Every report of every command goes through `_Escaping`, rather than dying halfway.
    with (
        contextlib.redirect_stdout(_Escaping(sys.stdout)),
        contextlib.redirect_stderr(_Escaping(sys.stderr)),
    ):
        parser = _parser()
        args = parser.parse_args(argv)
        status: int = args.run(args)
    return status


class _Escaping:
    """A text stream that writes what its encoding cannot hold as backslash escapes
    (`\\ud800`, which keeps JSON output valid JSON), and passes everything else on."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        self._encoding = encoding

    def write(self, text: str) -> int:
        try:
            text.encode(self._encoding)
        except UnicodeEncodeError:
            text = text.encode(self._encoding, "backslashreplace").decode(self._encoding)
        return self._stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policylayer",
        description="Check, explain and write policy.json files for MCP tool calls.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="report every problem and warning in policies")
    check.add_argument("files", nargs="+", metavar="FILE", help="policy files to check")
    check.add_argument("--tools", metavar="TOOLS.json", help="a server's tools/list result")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--json", action="store_true", help="print a JSON list for machines")
    check.set_defaults(run=_check, parser=check)

    explain = commands.add_parser("explain", help="show how one call would be decided")
    explain.add_argument("file", metavar="FILE", help="the policy file")
    explain.add_argument("--identity", required=True, help="who calls (a grant's identity)")
    explain.add_argument("--tool", required=True, help="the tool's name")
    given = explain.add_mutually_exclusive_group()
    given.add_argument("--args", metavar="JSON", help="the call's arguments as JSON text")
    given.add_argument("--args-file", metavar="F", help="a JSON file of arguments ('-': stdin)")
    explain.add_argument("--session", help="the session id")
    explain.add_argument("--approved", action="store_true", help="a person approved the call")
    explain.add_argument("--json", action="store_true", help="print JSON for machines")
    explain.set_defaults(run=_explain, parser=explain)

    schema = commands.add_parser("schema", help="print the JSON Schema of policy.json")
    schema.add_argument("--output", metavar="FILE", help="write it to FILE instead")
    schema.set_defaults(run=_schema, parser=schema)

    suggest = commands.add_parser("suggest", help="print a starter policy for a server's tools")
    suggest.add_argument("tools", metavar="TOOLS.json", help="a server's tools/list result")
    suggest.add_argument(
        "--explain", action="store_true", help="say why each tool got its category"
    )
    suggest.add_argument(
        "--args-rules",
        action="store_true",
        help="ask approval only for the destructive values of an action argument",
    )
    suggest.add_argument("--json", action="store_true", help="print the classification as JSON")
    suggest.set_defaults(run=_suggest, parser=suggest)

    test = commands.add_parser("test", help="run a policy's test cases (*.policytest.json)")
    test.add_argument("target", metavar="POLICY_OR_DIR", help="a policy, case file or directory")
    test.add_argument("cases", nargs="*", metavar="CASES", help="case files for the policy")
    test.add_argument("--junit-xml", metavar="FILE", help="also write a JUnit XML report")
    test.add_argument("--coverage", action="store_true", help="list every rule and if reached")
    test.add_argument("--fail-under", type=float, metavar="PCT", help="fail below PCT coverage")
    test.add_argument("--json", action="store_true", help="print JSON for machines")
    test.set_defaults(run=run_command, parser=test)

    proxy = commands.add_parser("proxy", help="put a policy in front of an MCP server")
    add_proxy_arguments(proxy)  # the proxy imports FastMCP only when it runs
    proxy.set_defaults(run=run_proxy_command, parser=proxy)
    return parser


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _read_json(path: str, what: str, parser: argparse.ArgumentParser) -> Any:
    """Parse a JSON input file, or stop with a usage error (exit 2) that says what is wrong."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        parser.error(
            f"The {what} {path!r} cannot be read ({reason}); give the path of a JSON file."
        )
    parsed = parse_json_text(text)
    if parsed.issues:
        issue = parsed.issues[0]
        parser.error(
            f"The {what} {path!r} is not valid JSON at line {issue.line}, column "
            f"{issue.column}: {issue.message.removeprefix('Invalid JSON: ')}"
        )
    return parsed.value


# -- check ---------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    names = None
    if args.tools is not None:
        try:
            names = [
                t["name"] for t in read_tools(_read_json(args.tools, "tools file", args.parser))
            ]
        except ValueError as exc:
            args.parser.error(f"The tools file {args.tools!r} cannot be used: {exc}.")
    found: list[dict[str, Any]] = []
    lines: list[str] = []
    for path in args.files:
        try:
            warnings = lint(load_policy(Path(path)), names)
        except PolicyError as error:
            for issue in error.issues:
                lines.append(issue.format(path))
                found.append(_record(path, "error", "policy-error", issue))
            continue
        for warning in warnings:
            lines.append(warning.format(path))
            found.append(_record(path, "warning", warning.code, warning))
    errors = sum(1 for f in found if f["severity"] == "error")
    warned = len(found) - errors
    if args.json:
        _out(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        files = f"{len(args.files)} file{'s' * (len(args.files) != 1)}"
        counts = [
            f"{n} {word}{'s' * (n != 1)}"
            for n, word in ((errors, "error"), (warned, "warning"))
            if n
        ]
        strict = " (--strict: warnings count as errors)" if args.strict and warned else ""
        result = ", ".join(counts) if counts else "no problems found"
        lines.append(f"Checked {files}: {result}{strict}.")
        _out("\n".join(lines))
    return 1 if errors or (args.strict and warned) else 0


def _record(path: str, severity: str, code: str, item: Any) -> dict[str, Any]:
    return {
        "file": path,
        "line": item.line,
        "column": item.column,
        "pointer": item.pointer,
        "severity": severity,
        "code": code,
        "message": item.message,
    }


# -- explain -------------------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    call_args: Any = None
    if args.args is not None:
        parsed = parse_json_text(args.args)
        if parsed.issues:
            issue = parsed.issues[0]
            args.parser.error(
                f"--args is not valid JSON at column {issue.column}: "
                f"{issue.message.removeprefix('Invalid JSON: ')} Write the "
                "arguments as one JSON object in single quotes, such as "
                """--args '{"action": "create"}'."""
            )
        call_args = parsed.value
    elif args.args_file is not None:
        call_args = _read_json(args.args_file, "arguments file", args.parser)
    try:
        loaded = load_policy(Path(args.file))
    except PolicyError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    engine = PolicyEngine(loaded)
    explanation = engine.explain(
        args.identity, args.tool, call_args, session=args.session, approved=args.approved
    )
    d = explanation.decision
    fragment, found = _resolve(loaded, d.rule)
    position = loaded.positions.get(d.rule) if d.rule else None
    if args.json:
        report = {
            "effect": d.effect.value,
            "allowed": d.allowed,
            "enforced": d.enforced,
            "tool": d.tool,
            "rule": d.rule,
            "reason": d.reason,
            "retry_after": d.retry_after,
            "steps": [
                {"pointer": s.pointer, "outcome": s.outcome, "detail": s.detail}
                for s in explanation.steps
            ],
            "policy": fragment if found else None,
            "line": position[0] if position else None,
            "column": position[1] if position else None,
        }
        _out(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    where = f" ({args.file}:{position[0]}:{position[1]})" if position else ""
    lines = [
        f"decision: {d.effect.value} (allowed: {'yes' if d.allowed else 'no'})",
        f"rule:     {d.rule or '(root)'}{where}",
        f"reason:   {d.reason}",
    ]
    if d.retry_after is not None:
        lines.append(f"retry:    after {d.retry_after:.3f} s")
    if not d.enforced:
        lines.append("mode:     shadow (not enforced: the call goes through)")
    lines.append("steps:")
    lines += [f"  {i}. {step}" for i, step in enumerate(explanation.steps, 1)]
    if found:
        lines.append(f"policy at {d.rule}:")
        lines += ["  " + line for line in pretty_json(fragment, width=98).splitlines()]
    _out("\n".join(lines))
    return 0


def _resolve(loaded: LoadedPolicy, pointer: str) -> tuple[Any, bool]:
    """The value at an RFC 6901 pointer in the loaded document, and whether it exists."""
    if not pointer:
        return None, False
    value: Any = loaded.raw
    for escaped in pointer[1:].split("/"):
        token = escaped.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None, False
    return value, True


def pretty_json(value: Any, indent: int = 0, used: int = 0, width: int = 100) -> str:
    """JSON with each array or object on one line when it fits in `width`, else expanded."""
    flat = json.dumps(value, ensure_ascii=False)
    if indent + used + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            name = json.dumps(key, ensure_ascii=False) + ": "
            items.append(pad + name + pretty_json(item, indent + 2, len(name), width))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + pretty_json(item, indent + 2, 0, width) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


# -- suggest -------------------------------------------------------------------------------


def _suggest(args: argparse.Namespace) -> int:
    document = _read_json(args.tools, "tools file", args.parser)
    warnings: list[str] = []
    try:
        tools = read_tools(document, warnings)
    except ValueError as exc:
        args.parser.error(f"The tools file {args.tools!r} cannot be used: {exc}.")
    for warning in warnings:
        sys.stderr.write(f"{args.tools}: warning: {warning}\n")
    server = document.get("serverInfo", {}).get("name") if isinstance(document, dict) else None
    policy, found = suggest_policy(
        tools, args_rules=args.args_rules, server=server if isinstance(server, str) else None
    )
    summary = _summary(found, len(policy.get("hide", [])))
    if args.json:
        _out(json.dumps([_classification(c) for c in found], ensure_ascii=False, indent=2))
    elif args.explain:
        _out(_explanations(found) + "\n" + summary)
    else:
        _out(pretty_json(policy))
        sys.stderr.write(summary + "\n")
    return 0


def _classification(c: Classification) -> dict[str, Any]:
    return {
        "name": c.name,
        "category": str(c.category),
        "severity": str(c.severity),
        "reasons": list(c.reasons),
        "action_property": c.action_property,
        "risky_values": list(c.risky_values),
        "other_actions": str(c.rest) if c.rest else None,
    }


def _summary(found: list[Classification], hidden: int) -> str:
    counts = ", ".join(f"{sum(1 for x in found if x.category is c)} {c}" for c in Category)
    return (
        f"Classified {len(found)} tools: {counts}; {hidden} hidden. "
        "Review the policy before you use it."
    )


def _explanations(found: list[Classification]) -> str:
    lines = []
    for c in found:
        extra = ""
        if c.rest is not None:
            extra = f"; --args-rules: approval for {c.action_property} {', '.join(c.risky_values)}"
        lines.append(f"{c.name}: {c.category}, severity {c.severity}{extra}")
        lines += [f"  - {reason}" for reason in c.reasons]
    return "\n".join(lines)


# -- schema --------------------------------------------------------------------------------

_X_KEYS = {
    "^x-": {"description": "Ignored: keys that begin with 'x-' are comments and vendor data."}
}
_DESCRIPTIONS = {
    "version": 'The format version; always "1".',
    "default": "What happens to a tool that no `tools` key matches.",
    "hide": "Names or globs of tools that are denied and left out of tools/list; '*' hides all.",
    "all_tools": "Rules applied to every call that is not denied before rule evaluation.",
    "tools": "Per-tool rules, by exact name or glob (*, ?, [...]). An exact key wins over "
    "every glob; among globs the most literal wins, then the first in the file.",
    "mode": "'shadow' decides, audits and counts as usual but lets every call through.",
    "description": "Free text.",
    "$schema": "Where editors find this JSON Schema; ignored by the engine.",
    "policies": "The policies of this bundle, by name.",
    "grants": "Identity or glob over identities -> the name of the policy that applies.",
    "require": "Rules (or bare conditions) that must all hold, else the call is denied.",
    "deny_if": "The first rule whose conditions all hold denies the call.",
    "approve_if": "The first rule whose conditions all hold asks for a person's approval.",
    "limits": "Token buckets; every one must have room, else the call is rate limited.",
    "action": "'deny': visible but always denied; 'approve': every call needs approval.",
    "on_deny": "The message a denied caller sees.",
    "schema": "A JSON Schema the arguments object must match (draft 2020-12 unless its "
    "$schema names draft-07 or 2019-09).",
    "conditions": "All must hold for the rule to hold; none means the rule always holds.",
    "name": "An id for the rule, shown in reasons and explanations.",
    "path": "args then .key steps (a number indexes an array, * is any element), or "
    "identity, session or tool.",
    "op": "How the value at `path` is compared with `value`.",
    "value": "What the argument is compared with; its type depends on `op`.",
    "max": "Tokens added per window.",
    "window": "'second', 'minute', 'hour', 'day', or a positive number of seconds.",
    "counter": "The bucket's name; limits with the same counter and scope share a bucket.",
    "scope": "One bucket per identity (grant, identity), per session, or for all callers.",
    "burst": "The bucket's capacity; default: max.",
    "cost": "Tokens one call takes: a positive integer, or an args. path whose number or "
    "length is the cost.",
    "arguments": "Limits on the size and shape of every call's arguments (an extension).",
    "max_depth": "Most levels of nested arrays and objects, counting the arguments object.",
    "max_string_length": "Most characters in one string value or object key.",
    "max_items": "Most elements of one array or members of one object.",
    "max_total_items": "Most values in all, counting every array element and object member.",
    "max_regex_input": "Most characters of one string a regex examines (default 10000).",
    "non_json": "'deny' (the default once a size limit is set) or 'ignore' values that are "
    "not JSON: non-string keys, bytes, sets, tuples, NaN, infinities, integers outside "
    "the signed 64-bit range, subclasses of str, list or dict.",
}
# The type of `value` that each group of operators needs (model.py, _check_operand).
_OPERANDS: list[tuple[list[str], dict[str, Any]]] = [
    (["in", "not_in"], {"type": "array"}),
    (["lt", "lte", "gt", "gte"], {"type": "number"}),
    (["regex", "glob", "starts_with", "ends_with"], {"type": "string"}),
    ([op for op in OPERATORS if op.startswith("len_")], {"type": "integer", "minimum": 0}),
    (["exists"], {"type": ["boolean", "null"]}),
]


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of policy.json (a policy or a bundle), built from the pydantic models."""
    generated = Bundle.model_json_schema(by_alias=True)
    defs: dict[str, Any] = generated.pop("$defs")
    defs["Bundle"] = generated
    for model in defs.values():
        model.pop("title", None)
        model["patternProperties"] = _X_KEYS
        for key, prop in model["properties"].items():
            prop.pop("title", None)
            if prop.get("default", 0) is None:
                del prop["default"]
            if "additionalProperties" in prop and prop.get("type") == "object" and key != "schema":
                prop["patternProperties"] = _X_KEYS  # tools, policies, grants: name maps
            prop["description"] = _DESCRIPTIONS[key]
    limit = defs["Limit"]["properties"]
    limit["window"]["anyOf"] = [
        {"enum": ["second", "minute", "hour", "day"]},
        {"type": "number", "exclusiveMinimum": 0},
    ]
    limit["cost"]["anyOf"] = [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^args(\.[^*]*)?$"},
    ]
    defs["Condition"]["allOf"] = [
        {
            "if": {"required": ["op"], "properties": {"op": {"enum": ops}}},
            "then": {"properties": {"value": operand}},
        }
        for ops, operand in _OPERANDS
    ] + [
        {
            "if": {"required": ["op"], "properties": {"op": {"not": {"const": "exists"}}}},
            "then": {"required": ["value"]},
        }
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "policylayer policy.json, format 1",
        "description": "A policy for MCP tool calls, or a bundle of policies with grants.",
        "oneOf": [{"$ref": "#/$defs/Policy"}, {"$ref": "#/$defs/Bundle"}],
        "$defs": dict(sorted(defs.items())),
    }


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_schema(), ensure_ascii=False, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        args.parser.error(f"Cannot write {args.output!r} ({exc.strerror}); choose another path.")
    _out(f"Wrote the JSON Schema of policy.json to {args.output}.")
    return 0
