"""One rule of a policy compiled: its check, its summary, and its simple form.

The compiler (`compiler.py`) turns each rule (and each bare condition in `require`) into
`RuleParts` once per tool entry, whatever the tool name; `simple` is the shape that the
program generator (`_program_codegen.py`) writes inline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policylayer_core.conditions import Check, compile_condition
from policylayer_core.model import Condition, Rule
from policylayer_core.paths import parse_path
from policylayer_core.safe_regex import RegexLimits

__all__ = ["RuleParts", "compile_rule", "summary"]


@dataclass(frozen=True, slots=True)
class RuleParts:
    """A compiled rule: where it is, its check (None: always holds), how it reads, its
    own `on_deny` and `name`, and `(key, op, value)` when it is one condition on `args.KEY`."""

    pointer: str
    holds: Check | None
    summary: str
    on_deny: str | None
    name: str | None = None
    simple: tuple[str, str, Any] | None = None

    @property
    def label(self) -> str:
        """How a generated reason names the rule: its pointer, with its name when it has one."""
        return f"'{self.name}' at {self.pointer}" if self.name else self.pointer

    @property
    def detail(self) -> str:
        """What an explain step shows: the conditions, after the rule's name."""
        return f"'{self.name}': {self.summary}" if self.name else self.summary


def summary(conditions: list[Condition]) -> str:
    """How reasons and explanations write a rule's conditions: `args.a eq "x" and ...`."""
    if not conditions:
        return "always"
    parts = []
    for c in conditions:
        value = (
            ""
            if "value" not in c.model_fields_set
            else " " + json.dumps(c.value, ensure_ascii=False)
        )
        parts.append(f"{c.path} {c.op}{value}")
    return " and ".join(parts)


def compile_rule(pointer: str, rule: Rule | Condition, regex_limits: RegexLimits) -> RuleParts:
    """Compile a rule, or a bare condition of `require`, found at `pointer`."""
    if isinstance(rule, Condition):  # a bare condition in `require`
        check = compile_condition(
            pointer,
            rule.path,
            rule.op,
            rule.value,
            "value" in rule.model_fields_set,
            regex_limits=regex_limits,
        )
        return RuleParts(pointer, check, summary([rule]), None, simple=_simple([rule]))
    checks = [
        compile_condition(
            f"{pointer}/conditions/{i}",
            c.path,
            c.op,
            c.value,
            "value" in c.model_fields_set,
            regex_limits=regex_limits,
        )
        for i, c in enumerate(rule.conditions)
    ]
    return RuleParts(
        pointer,
        _all_of(checks),
        summary(rule.conditions),
        rule.on_deny,
        rule.name,
        _simple(rule.conditions),
    )


def _simple(conditions: list[Condition]) -> tuple[str, str, Any] | None:
    """(key, op, value) for a rule that is one condition on `args.KEY`, else None."""
    if len(conditions) != 1 or "value" not in conditions[0].model_fields_set:
        return None
    condition = conditions[0]
    parsed = parse_path(condition.path)
    if parsed.root != "args" or len(parsed.steps) != 1:
        return None
    key = parsed.steps[0]
    if not isinstance(key, str) or key == "*":
        return None
    return key, condition.op, condition.value


def _all_of(checks: list[Check]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def all_hold(identity: str, tool: str, args: Any, session: str | None) -> bool:
        for check in checks:  # noqa: SIM110 - a plain loop is cheaper than all() over a generator
            if not check(identity, tool, args, session):
                return False  # later conditions are not evaluated (and cannot be indeterminate)
        return True

    return all_hold
