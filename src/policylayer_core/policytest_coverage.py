"""Rule coverage of policy tests: which rules of a policy some case reached (evaluated).

A rule counts as reached when the explain trace of some call has a step at its pointer or
inside it, or a call's decision names it; a limit when some call was checked against its
bucket. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from policylayer_core.jsontext import pointer_join
from policylayer_core.loader import LoadedPolicy
from policylayer_core.model import RuleSet
from policylayer_core.policytest import CaseResult

__all__ = ["Coverage", "measure_coverage"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """Every rule of one policy, by pointer, with its kind and whether a case reached it."""

    policy: LoadedPolicy
    rules: tuple[tuple[str, str, bool], ...]

    @property
    def reached(self) -> int:
        return sum(1 for rule in self.rules if rule[2])

    @property
    def percent(self) -> float:
        return 100.0 * self.reached / len(self.rules) if self.rules else 100.0

    def format(self) -> str:
        lines = [f"Coverage of {self.policy.source}:"]
        width = max((len(pointer) for pointer, _, _ in self.rules), default=0)
        for pointer, kind, reached in self.rules:
            line = self.policy.positions.get(pointer, (0, 0))[0]
            mark = "reached    " if reached else "NOT REACHED"
            place = f" (line {line})" if line else ""
            lines.append(f"  {mark}  {pointer:<{width}}  {kind}{place}")
        lines.append(f"{self.reached} of {len(self.rules)} rules reached ({self.percent:.1f}%).")
        return "\n".join(lines)


def _rules(loaded: LoadedPolicy) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """The coverage items (pointer, kind) in file order, and the limits that share a bucket
    with an earlier limit of the same call, as (limit, entry, first limit): the engine charges
    such a bucket once, under the first limit's pointer."""
    items = [(pointer_join("/grants", key), "grant") for key in loaded.grants]
    merged: list[tuple[str, str, str]] = []
    for name, policy in loaded.policies.items():
        prefix = pointer_join("/policies", name) if loaded.is_bundle else ""
        items += [(f"{prefix}/hide/{i}", "hide entry") for i in range(len(policy.hide))]
        shared = policy.all_tools or RuleSet()
        entries = [(pointer_join(prefix + "/tools", key), e) for key, e in policy.tools.items()]
        items += _rule_items(prefix + "/all_tools", shared)
        for base, entry in entries:
            items += [(base, "tool entry"), *_rule_items(base, entry)]
        items.append((prefix + "/default", "default"))
        common = [(f"{prefix}/all_tools/limits/{i}", x) for i, x in enumerate(shared.limits)]
        for base, rules in [*entries, (prefix + "/default", RuleSet())]:
            first: dict[tuple[Any, ...], str] = {}
            own = [(f"{base}/limits/{i}", x) for i, x in enumerate(rules.limits)]
            for pointer, limit in common + own:
                scope = "grant" if limit.scope == "identity" else limit.scope
                key = (limit.counter or pointer, scope, limit.max, limit.window_seconds)
                if first.setdefault((*key, limit.burst or limit.max), pointer) != pointer:
                    merged.append((pointer, base, first[(*key, limit.burst or limit.max)]))
    positions = loaded.positions
    items.sort(key=lambda item: positions.get(item[0], (0, 0)))
    return items, merged


def _rule_items(base: str, rules: RuleSet) -> list[tuple[str, str]]:
    return [
        (f"{base}/{attr}/{i}", "limit" if attr == "limits" else f"{attr} rule")
        for attr in ("require", "deny_if", "approve_if", "limits")
        for i in range(len(getattr(rules, attr)))
    ]


def measure_coverage(policy: LoadedPolicy, results: Iterable[CaseResult]) -> Coverage:
    """Which rules of `policy` the cases reached: see docs/testing.md, "Coverage"."""
    calls = [pointers for result in results for pointers in result.reached]
    seen = {p for pointers in calls for p in pointers}
    seen |= {p.rsplit("/", i)[0] for p in set(seen) for i in range(1, p.count("/"))}
    items, merged = _rules(policy)
    extra = {
        limit for limit, entry, first in merged if any(entry in c and first in c for c in calls)
    }
    return Coverage(policy, tuple((p, kind, p in seen or p in extra) for p, kind in items))


# -- the command ---------------------------------------------------------------------------
