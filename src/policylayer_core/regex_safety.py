"""Which regexes Python's backtracking `re` can run on attacker-controlled strings.

A pattern with a repeat inside a repeat that can match the same text two ways (`(a+)+$`,
`(\\w+\\s?)+$`) takes exponential time on a near miss; `catastrophic_regex` finds such
nesting and `policylayer check` warns about it.

`linear_safe` is the stricter, sound judgement that `safe_regex` relies on: True only when
`re.search` is provably linear in the length of the string, so plain `re` may run the
pattern. `linear_reversed` is its mirror image: True when `re.search` of the reversed
pattern on the reversed string is provably linear, which holds for most patterns that end
with `$` (`\\s+$`, `[a-z]+\\d$`): `safe_regex` runs those reversed, on `re`. Everything else
runs on a matcher with a time bound (see `safe_regex`).
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from policylayer_core._charsets import Ranges, atom_set, intersects, scoped_flags, union

__all__ = ["catastrophic_regex", "linear_reversed", "linear_safe"]

# The regex parser has no public API and no type stubs; `sre_parse`, its old name, warns.
_sre: Any = importlib.import_module("re._parser")


def _parse(pattern: str) -> Any:
    """re's parse tree of `pattern`, without the warnings ("possible nested set") the
    loader has already dealt with: under `-W error` they would be raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _sre.parse(pattern)


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
        parsed = _parse(pattern)
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


# -- linear_safe ------------------------------------------------------------------------
#
# The pattern is unrolled into flat sequences (one per way through its alternations and
# optional groups) of atoms: a single character that must be consumed ("char"), a repeat
# of one character with at most _SHORT choices of count ("short"), a repeat of one
# character with more ("long"), a start-of-string anchor ("anchor"), an end-of-string
# anchor ("end": `\Z`, or `$` without MULTILINE) and other zero-width checks of bounded
# cost ("zero"). `re.search` then costs at most the sum over sequences,
# and a sequence is linear when two rules hold for every long repeat R:
#
# * Between R and the previous long repeat P stands a mandatory character that P cannot
#   consume: P can then hand over to what follows it at only a bounded number of places,
#   so one attempt tries a bounded number of ways through the sequence.
# * The sequence starts with an anchor, or before R stands a mandatory character g that
#   neither R nor any long repeat between g and R can consume: attempts from different
#   start positions then scan a stretch of text a bounded number of times between them.
#
# A long repeat that ends a sequence is exempt: reaching it means the match succeeds.
# Unbounded repeats of anything but one character, backreferences and lookarounds holding
# a long repeat are not judged at all: the pattern is simply not linear_safe.
#
# `linear_reversed` judges the mirror image: each sequence reversed, its end anchors
# taking the place of start anchors. Reversed, `$` holds at the start of the text or just
# after a first "\n": at two positions, not one, which doubles the cost of the anchored
# attempts and changes nothing else in the argument.

_SHORT = 16  # a repeat with more than this many choices of count is long
_MAX_SEQUENCES = 256
_Atom = tuple[str, Ranges | None, int]  # (kind, characters, minimum count)
_Seq = tuple[_Atom, ...]
_CHAR_ITEMS = ("LITERAL", "NOT_LITERAL", "ANY", "IN")
_ANCHORS = ("AT_BEGINNING", "AT_BEGINNING_STRING")


class _NotLinear(Exception):  # noqa: N818 - a signal, not an error
    pass


def linear_safe(pattern: str) -> bool:
    """True when `re.search(pattern, s)` takes time linear in `len(s)` whatever `s` is."""
    try:
        parsed = _parse(pattern)
        sequences = _unroll(list(parsed), parsed.state.flags)
    except (_NotLinear, re.error, OverflowError, RecursionError, LookupError, ValueError):
        return False  # not judged: the bounded matcher runs it
    return all(_linear(sequence) for sequence in sequences)


def linear_reversed(pattern: str) -> bool:
    """True when searching the mirror image of `pattern` in the reversed string, with
    `re.search`, takes linear time and finds a match exactly when `re.search(pattern, s)`
    does (see `safe_regex.reversed_search`, which writes that mirror image).

    Only constructs whose matches mirror exactly are admitted: characters, classes,
    groups, alternation, greedy and lazy repeats, anchors and word boundaries. Not
    lookarounds (`re` only looks behind by a fixed width), atomic groups and possessive
    repeats (which cut off matches depending on the direction), nor backreferences.
    """
    try:
        parsed = _parse(pattern)
        sequences = _unroll(list(parsed), parsed.state.flags, mirrored=True)
    except (_NotLinear, re.error, OverflowError, RecursionError, LookupError, ValueError):
        return False
    swap = {"anchor": "end", "end": "anchor"}
    return all(
        _linear(tuple((swap.get(kind, kind), chars, low) for kind, chars, low in reversed(seq)))
        for seq in sequences
    )


def _single(items: _Items, flags: int) -> Ranges | None:
    """The characters of `items` when they are exactly one character item, else None."""
    if len(items) != 1:
        return None
    name, av = str(items[0][0]), items[0][1]
    if name in _CHAR_ITEMS:
        return atom_set(name, av, flags)
    if name == "SUBPATTERN":
        return _single(av[3], scoped_flags(flags, av[1], av[2]))
    return _single(av, flags) if name == "ATOMIC_GROUP" else None


def _unroll(items: _Items, flags: int, *, mirrored: bool = False) -> list[_Seq]:
    sequences: list[_Seq] = [()]
    for op, av in items:
        ways = _ways(str(op), av, flags, mirrored)
        sequences = [done + way for done in sequences for way in ways]
        if len(sequences) > _MAX_SEQUENCES:
            raise _NotLinear
    return sequences


def _anchor_kind(where: str, flags: int) -> str:
    multiline = flags & re.MULTILINE
    if where == "AT_BEGINNING_STRING" or (where == "AT_BEGINNING" and not multiline):
        return "anchor"
    if where == "AT_END_STRING" or (where == "AT_END" and not multiline):
        return "end"
    return "zero"


def _ways(name: str, av: Any, flags: int, mirrored: bool) -> list[_Seq]:
    """The flat sequences one item can stand for (`mirrored`: only if it mirrors exactly)."""
    if name in _CHAR_ITEMS:
        return [(("char", atom_set(name, av, flags), 1),)]
    if name == "AT":
        return [((_anchor_kind(str(av), flags), None, 0),)]
    if name == "SUBPATTERN":
        return _unroll(av[3], scoped_flags(flags, av[1], av[2]), mirrored=mirrored)
    if mirrored and name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT", "ASSERT", "ASSERT_NOT"):
        raise _NotLinear  # `(?>a+)a` never matches; its mirror image would
    if name == "ATOMIC_GROUP":  # never backtracks into itself: no costlier than a group
        return _unroll(av, flags)
    if name == "BRANCH":
        return [way for branch in av[1] for way in _unroll(branch, flags, mirrored=mirrored)]
    if name in ("ASSERT", "ASSERT_NOT"):
        if any(kind == "long" for way in _unroll(av[1], flags) for kind, _, _ in way):
            raise _NotLinear
        return [(("zero", None, 0),)]
    if name in _REPEATS or name == "POSSESSIVE_REPEAT":
        low, high, body = av
        chars = _single(body, flags)
        if chars is not None:
            return [(("long" if high - low > _SHORT else "short", chars, low),)]
        if high <= 1:  # an optional group: with it or without it
            return ([()] if low == 0 else []) + _unroll(body, flags, mirrored=mirrored)
        ways = _unroll(body, flags, mirrored=mirrored)
        if high - low > _SHORT or len(ways) != 1 or any(kind != "char" for kind, _, _ in ways[0]):
            raise _NotLinear
        return [(("short", None, low),)]  # a bounded repeat of a fixed string
    raise _NotLinear  # backreferences, conditionals, anything unknown


def _mandatory(atom: _Atom) -> Ranges | None:
    """The characters a mandatory single-character atom consumes, else None."""
    kind, chars, low = atom
    return chars if kind in ("char", "short") and low >= 1 else None


def _linear(sequence: _Seq) -> bool:
    anchored = bool(sequence) and sequence[0][0] == "anchor"
    previous: int | None = None
    for index, (kind, chars, _) in enumerate(sequence):
        if kind != "long" or chars is None or index == len(sequence) - 1:
            # A long repeat that ends the sequence ends the match: whoever reaches it has
            # found one (or fails within its minimum count), so it costs one scan.
            continue
        if previous is not None:
            before = sequence[previous][1] or ()
            if not any(
                (must := _mandatory(atom)) is not None and not intersects(must, before)
                for atom in sequence[previous + 1 : index]
            ):
                return False
        if not anchored and not _guarded(sequence, index, chars):
            return False
        previous = index
    return True


def _guarded(sequence: _Seq, index: int, chars: Ranges) -> bool:
    covered = chars
    for atom in reversed(sequence[:index]):
        must = _mandatory(atom)
        if must is not None and not intersects(must, covered):
            return True
        if atom[0] == "long" and atom[1] is not None:
            covered = union(covered, atom[1])
    return False
