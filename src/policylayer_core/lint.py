"""The warnings of `policylayer check`: a policy that loads but does not do what it says.

Each check is conservative: it warns only about a problem it can show, never on a guess.

* `shadowed-key`: a glob tool key (or grant key) that can never decide, because every name
  it matches is taken first by an exact key or a glob of higher precedence. Decided exactly,
  by comparing the globs as automata over the characters they mention.
* `unreachable-rule`: a rule or limit that evaluation never reaches, after a `deny_if` (or
  `approve_if`) with no conditions, under `action: deny` or `action: approve`.
* `unused-hide` and `unknown-tool`: a `hide` entry or a tool key that matches none of the
  tools a server lists (only with `--tools`).
* `slow-regex`: a regex whose nested quantifiers can backtrack catastrophically.
* `cost-above-burst`: a literal `cost` larger than the bucket can ever hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from policylayer_core.globs import is_glob, literal_count
from policylayer_core.jsontext import pointer_join
from policylayer_core.loader import LoadedPolicy
from policylayer_core.model import Condition, Policy, Rule, RuleSet
from policylayer_core.regex_safety import catastrophic_regex

__all__ = ["LintWarning", "catastrophic_regex", "glob_covered", "lint"]

_EXPLORE_LIMIT = 20_000  # automaton states examined before giving up (and not warning)


@dataclass(frozen=True, slots=True)
class LintWarning:
    """A problem that does not stop the policy from loading; `code` names the check."""

    code: str
    pointer: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, source: str | None = None) -> str:
        """`SOURCE:LINE:COL: POINTER: warning: message`, leaving out the parts unknown."""
        where = [source] if source else []
        if self.line is not None:
            where += [str(self.line), str(self.column)]
        head = ":".join(where)
        body = f"{self.pointer or '(document root)'}: warning: {self.message}"
        return f"{head}: {body}" if head else body


def lint(loaded: LoadedPolicy, tool_names: Sequence[str] | None = None) -> list[LintWarning]:
    """Every warning for a loaded policy, sorted by position; `tool_names` enables the
    checks against a server's tools."""
    found: list[tuple[str, str, str]] = []
    for name, policy in loaded.policies.items():
        prefix = pointer_join("/policies", name) if loaded.is_bundle else ""
        found += _shadowed(policy.tools, prefix + "/tools", "tool")
        found += _unreachable(policy, prefix)
        found += _conditions(policy, prefix)
        found += _costs(policy, prefix)
        if tool_names is not None:
            found += _unused(policy, prefix, tool_names)
    found += _shadowed(loaded.grants, "/grants", "grant")
    warnings = [LintWarning(c, p, m, *_position(loaded.positions, p)) for c, p, m in found]
    # a stable sort: without positions (a dict), warnings stay in document order
    return sorted(warnings, key=lambda w: (w.line or 0, w.column or 0))


def _position(
    positions: Mapping[str, tuple[int, int]], pointer: str
) -> tuple[int | None, int | None]:
    while pointer not in positions and pointer:
        pointer = pointer.rsplit("/", 1)[0]
    found = positions.get(pointer)
    return (found[0], found[1]) if found else (None, None)


# -- globs as automata -------------------------------------------------------------------

# One step of a glob as fnmatch reads it: None for '*', else a test for one character.
_Token = Callable[[str], bool] | None


def _glob_tokens(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch, j = pattern[i], i + 1
        if ch == "[":  # the scan of fnmatch (and globs.literal_count) for a class
            j += 1 if j < n and pattern[j] == "!" else 0
            j += 1 if j < n and pattern[j] == "]" else 0
            while j < n and pattern[j] != "]":
                j += 1
        if ch == "*":
            tokens.append(None)
        elif ch == "?":
            tokens.append(lambda c: True)
        elif ch == "[" and j < n:
            # fnmatch's own translation of the class, so membership agrees exactly
            tokens.append(re.compile(translate(pattern[i : j + 1])).match)  # type: ignore[arg-type]
            i = j
        else:
            tokens.append(ch.__eq__)
        i += 1
    return tokens


def _closure(tokens: list[_Token], states: set[int]) -> frozenset[int]:
    for state in sorted(states):
        while state < len(tokens) and tokens[state] is None:
            state += 1  # noqa: PLW2901 - a star may match nothing: follow the chain of stars
            states.add(state)
    return frozenset(states)


def _step(tokens: list[_Token], states: frozenset[int], ch: str) -> frozenset[int]:
    after = set()
    for state in states:
        if state < len(tokens):
            test = tokens[state]
            if test is None:
                after.add(state)
            elif test(ch):
                after.add(state + 1)
    return _closure(tokens, after)


def _search(patterns: Sequence[str], goal: Callable[[list[bool]], bool]) -> bool | None:
    """Whether some name leads the globs to a state where `goal(which accept)` holds; None
    when the search grew too large. The first glob must still match a prefix of the name.

    The characters tried are one from each run of code points that every glob treats
    alike: a class is a union of ranges whose ends are written in it, so membership can
    change only at a written character or just after one.
    """
    points = {0} | {p for pat in patterns for ch in pat for p in (ord(ch), ord(ch) + 1)}
    alphabet = [chr(p) for p in sorted(points) if p <= 0x10FFFF]
    automata = [_glob_tokens(pattern) for pattern in patterns]
    start = tuple(_closure(t, {0}) for t in automata)
    seen, todo = {start}, [start]
    while todo:
        states = todo.pop()
        if goal([len(t) in s for t, s in zip(automata, states, strict=True)]):
            return True
        for ch in alphabet:
            after = tuple(_step(t, s, ch) for t, s in zip(automata, states, strict=True))
            if after[0] and after not in seen:
                if len(seen) >= _EXPLORE_LIMIT:
                    return None
                seen.add(after)
                todo.append(after)
    return False


def glob_covered(pattern: str, others: Sequence[str]) -> bool | None:
    """True when every name `pattern` matches is matched by one of `others` (globs or
    exact names); None when the comparison grew too large to finish."""
    escaped = _search([pattern, *others], lambda acc: acc[0] and not any(acc[1:]))
    return None if escaped is None else not escaped


def _shadowed(keys: Mapping[str, Any], base: str, noun: str) -> Iterator[tuple[str, str, str]]:
    order = list(keys)
    exact = [k for k in order if not is_glob(k)]
    globs = sorted(
        (k for k in order if is_glob(k)), key=lambda k: (-literal_count(k), order.index(k))
    )
    for rank, key in enumerate(globs):
        before = exact + globs[:rank]
        if before and glob_covered(key, before):
            takers = [k for k in before if _search([key, k], all)][:3]
            yield (
                "shadowed-key",
                pointer_join(base, key),
                f"The {noun} glob {key!r} never applies: every name it matches is taken first "
                f"by {', '.join(repr(k) for k in takers)} (an exact key wins over every glob; "
                "among globs the one with the most literal characters wins, then the first in "
                "the file). Remove it, or change it so that it matches something of its own.",
            )


# -- rules that evaluation never reaches -------------------------------------------------


def _always(rules: list[Rule], base: str) -> str | None:
    """The pointer of the first rule with no conditions (it always holds), if any."""
    return next((f"{base}/{i}" for i, rule in enumerate(rules) if not rule.conditions), None)


def _unreachable(policy: Policy, prefix: str) -> Iterator[tuple[str, str, str]]:
    shared = policy.all_tools or RuleSet()
    base = prefix + "/all_tools"
    shared_deny = _always(shared.deny_if, base + "/deny_if")
    shared_approve = _always(shared.approve_if, base + "/approve_if")
    yield from _after(shared, base, shared_deny, shared_approve)
    for key, entry in policy.tools.items():
        at = pointer_join(prefix + "/tools", key)
        if entry.action == "deny":
            dead = [k for k in ("require", "deny_if", "approve_if", "limits") if getattr(entry, k)]
            if dead or entry.json_schema is not None:
                listed = ", ".join(dead + (["schema"] if entry.json_schema is not None else []))
                yield (
                    "unreachable-rule",
                    at + "/action",
                    f"This entry's {listed} never take effect: 'action: deny' denies every "
                    "call before they are evaluated. Remove them, or change the action.",
                )
            continue
        deny = shared_deny or _always(entry.deny_if, at + "/deny_if")
        approve = (at + "/action") if entry.action == "approve" else shared_approve
        yield from _after(entry, at, deny, approve or _always(entry.approve_if, at + "/approve_if"))


def _after(
    rules: RuleSet, at: str, deny: str | None, approve: str | None
) -> Iterator[tuple[str, str, str]]:
    """Rules of `rules` (at pointer `at`) evaluated after an always-deciding `deny`/`approve`."""
    later: list[tuple[str, str]] = []
    if deny is not None:
        later += [(f"{at}/deny_if/{i}", deny) for i in range(len(rules.deny_if))]
        later += [(f"{at}/approve_if/{i}", deny) for i in range(len(rules.approve_if))]
        later += [(f"{at}/limits/{i}", deny) for i in range(len(rules.limits))]
    elif approve is not None:
        later += [(f"{at}/approve_if/{i}", approve) for i in range(len(rules.approve_if))]
    for pointer, blocker in later:
        if _comes_after(pointer, blocker):
            if blocker.endswith("/action"):
                why = "has 'action: approve', which asks for approval before any approve_if"
                fix = "change the action to 'allow'"
            else:
                why = "has no conditions, so it always holds and decides first"
                fix = f"add conditions to {blocker}"
            yield (
                "unreachable-rule",
                pointer,
                f"This is never reached: {blocker} {why}. Remove it, or {fix}.",
            )


def _comes_after(pointer: str, blocker: str) -> bool:
    """In evaluation order: all_tools before the tool, and in a list, a later index."""
    p_list, _, p_index = pointer.rpartition("/")
    b_list, _, b_index = blocker.rpartition("/")
    if p_list == b_list:
        return int(p_index) > int(b_index)
    return pointer != blocker


# -- conditions, costs and the server's tools --------------------------------------------


def _rule_lists(policy: Policy, prefix: str) -> Iterator[tuple[str, RuleSet]]:
    if policy.all_tools is not None:
        yield prefix + "/all_tools", policy.all_tools
    for key, entry in policy.tools.items():
        yield pointer_join(prefix + "/tools", key), entry


def _conditions(policy: Policy, prefix: str) -> Iterator[tuple[str, str, str]]:
    for at, rules in _rule_lists(policy, prefix):
        found: list[tuple[str, Condition]] = []
        for i, item in enumerate(rules.require):
            if isinstance(item, Condition):
                found.append((f"{at}/require/{i}", item))
            else:
                found += [
                    (f"{at}/require/{i}/conditions/{j}", c) for j, c in enumerate(item.conditions)
                ]
        for kind in ("deny_if", "approve_if"):
            for i, rule in enumerate(getattr(rules, kind)):
                found += [
                    (f"{at}/{kind}/{i}/conditions/{j}", c) for j, c in enumerate(rule.conditions)
                ]
        for pointer, condition in found:
            if condition.op == "regex" and catastrophic_regex(condition.value):
                yield (
                    "slow-regex",
                    pointer + "/value",
                    f"The regular expression '{condition.value}' repeats a part that itself "
                    "repeats, in a way that lets one string match in exponentially many ways, "
                    "so an argument that almost matches would keep Python's re busy for minutes "
                    "(catastrophic backtracking). The engine runs it with a time limit instead, "
                    "and denies a call it cannot judge in time. Rewrite it so that each "
                    "character can match in only one way, or use a possessive quantifier (a++) "
                    "or an atomic group ((?>...)).",
                )


def _costs(policy: Policy, prefix: str) -> Iterator[tuple[str, str, str]]:
    for at, rules in _rule_lists(policy, prefix):
        for i, limit in enumerate(rules.limits):
            burst = limit.burst or limit.max
            if isinstance(limit.cost, int) and limit.cost > burst:
                yield (
                    "cost-above-burst",
                    f"{at}/limits/{i}/cost",
                    f"Every call costs {limit.cost} tokens, more than the {burst} this bucket "
                    "can ever hold, so every call is denied. Lower the cost or raise 'burst'.",
                )


def _unused(policy: Policy, prefix: str, names: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    listed = f"none of the {len(names)} tools the server lists"
    for i, entry in enumerate(policy.hide):
        if not _matches_any(entry, names):
            yield (
                "unused-hide",
                f"{prefix}/hide/{i}",
                f"The hide entry {entry!r} matches {listed}. Check its spelling, or remove it.",
            )
    for key in policy.tools:
        if not _matches_any(key, names):
            yield (
                "unknown-tool",
                pointer_join(prefix + "/tools", key),
                f"The tool key {key!r} matches {listed}, so this entry never applies. Check its "
                "spelling (a misspelt key leaves the real tool to the default), or remove it.",
            )


def _matches_any(key: str, names: Sequence[str]) -> bool:
    if not is_glob(key):
        return key in names
    match = re.compile(translate(key)).match
    return any(match(name) for name in names)


# -- regexes that backtrack catastrophically ---------------------------------------------
