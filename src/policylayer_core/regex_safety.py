"""Regexes that can backtrack catastrophically on attacker-controlled strings.

`regex` conditions run Python's backtracking `re` on what an agent sends, so a pattern
with a repeat inside a repeat that can match the same text two ways (`(a+)+$`,
`(\\w+\\s?)+$`) can take exponential time. `catastrophic_regex` finds such nesting in
the parse tree; `policylayer check` warns about it (see SECURITY.md for what is not yet
bounded at run time).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["catastrophic_regex"]

# The regex parser has no public API and no type stubs; `sre_parse`, its old name, warns.
_sre: Any = importlib.import_module("re._parser")


# The parse tree of `re._parser`: a list of (opcode, argument). Character sets are judged on
# probe characters: those the pattern writes, plus one of each common kind.
_PROBES = "aZ0_ \t\n-.,/:é中٠\u3000\x00"
_CATEGORIES = {
    f"CATEGORY_{name}": "\\" + code
    for name, code in zip(
        ("DIGIT", "NOT_DIGIT", "SPACE", "NOT_SPACE", "WORD", "NOT_WORD"), "dDsSwW", strict=True
    )
}
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")
_ZERO_WIDTH = ("AT", "ASSERT", "ASSERT_NOT", "GROUPREF", "GROUPREF_EXISTS")
_Items = Sequence[tuple[Any, Any]]


def catastrophic_regex(pattern: str) -> bool:
    """True when a repetition holds a variable repetition that can end one pass where the
    next pass can begin (`(a+)+`, `(.*)*`, `(\\w+\\s?)+$`), so a near miss backtracks
    exponentially. `(\\d+,)+` is fine: each pass ends with a comma that no digit matches.
    Possessive repeats and atomic groups never backtrack, so they are not looked into."""
    try:
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError):
        return False
    # Every number in the tree's dump (literal code points, range ends, and some counts that
    # do no harm) is a probe too, so a character written as an escape (\\x7e) is one.
    written = {chr(int(n)) for n in re.findall(r"\d+", str(parsed)) if int(n) <= 0x10FFFF}
    return _nested(list(parsed), frozenset(_PROBES + pattern) | written)


def _kids(name: str, av: Any) -> list[_Items]:
    """The sub-sequences of one item that consume characters."""
    if name in _REPEATS or name == "POSSESSIVE_REPEAT":
        return [av[2]]
    if name == "SUBPATTERN":
        return [av[3]]
    if name == "ATOMIC_GROUP":
        return [av]
    return list(av[1]) if name == "BRANCH" else []


def _chars(name: str, av: Any, probes: frozenset[str]) -> set[str]:
    """The probe characters that one item can consume."""
    kids = _kids(name, av)
    if kids:
        return {c for kid in kids for op, a in kid for c in _chars(str(op), a, probes)}
    if name == "LITERAL":
        return {chr(av)}
    if name == "NOT_LITERAL":
        return {p for p in probes if ord(p) != av}
    if name == "IN":
        return {p for p in probes if _in_set(av, p)}
    return set(probes) if name == "ANY" else set()


def _in_set(members: _Items, ch: str) -> bool:
    negate, hit = False, False
    for op, av in members:
        name = str(op)
        negate |= name == "NEGATE"
        if name == "LITERAL":
            hit |= ord(ch) == av
        elif name == "RANGE":
            hit |= av[0] <= ord(ch) <= av[1]
        elif name == "CATEGORY":
            regex = _CATEGORIES.get(str(av))
            hit |= regex is None or re.fullmatch(regex, ch) is not None
    return hit != negate


def _nullable(name: str, av: Any) -> bool:
    if name in _REPEATS or name == "POSSESSIVE_REPEAT":
        if av[0] == 0:
            return True
    elif name == "BRANCH":
        return any(all(_nullable(str(o), a) for o, a in b) for b in av[1])
    elif name in _ZERO_WIDTH:
        return True
    kids = _kids(name, av)
    return bool(kids) and all(_nullable(str(o), a) for o, a in kids[0])


def _edge(items: _Items, probes: frozenset[str], *, first: bool) -> set[str]:
    """The probe characters that can begin (or end) a match of `items`."""
    found: set[str] = set()
    for op, av in items if first else reversed(items):
        name = str(op)
        kids = _kids(name, av)
        if kids:
            found |= {c for kid in kids for c in _edge(kid, probes, first=first)}
        else:
            found |= _chars(name, av, probes)
        if not _nullable(name, av):
            break
    return found


def _edge_repeats(items: _Items, *, first: bool) -> Iterator[Any]:
    """Variable repetitions that can begin (or end) a match of `items`."""
    for op, av in items if first else reversed(items):
        name = str(op)
        if name in _REPEATS and av[1] > 1 and av[0] != av[1]:
            yield av
        if name not in ("POSSESSIVE_REPEAT", "ATOMIC_GROUP"):
            for kid in _kids(name, av):
                yield from _edge_repeats(kid, first=first)
        if not _nullable(name, av):
            return


def _nested(items: _Items, probes: frozenset[str]) -> bool:
    for op, av in items:
        name = str(op)
        if name in _REPEATS and av[1] > 1:
            body = av[2]
            for first in (True, False):
                # a repeat at the end of a pass that can also begin the next (or vice versa)
                border = _edge(body, probes, first=not first)
                for inner in _edge_repeats(body, first=first):
                    if {c for op2, a in inner[2] for c in _chars(str(op2), a, probes)} & border:
                        return True
        kids = _kids(name, av) + ([av[1]] if name in ("ASSERT", "ASSERT_NOT") else [])
        if any(_nested(kid, probes) for kid in kids):
            return True
    return False
