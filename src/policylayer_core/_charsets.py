"""The exact set of characters one item of a parsed Python regex matches.

`regex_safety` judges whether two parts of a pattern can consume the same character, and
`safe_regex` rewrites patterns for another engine with every character class spelled out.
Both need the characters that `\\w`, `[^a-z]` or a case-insensitive `k` match *in Python's
`re`*, on this Python's Unicode tables; guessing them from a description would drift. So
categories are read off `re` itself, once, by scanning a string of every code point, and
case-insensitive items are decided by `re` on every character that has a case relation
(every other character matches case-insensitively exactly when it matches plainly).

Sets are tuples of inclusive `(low, high)` code point ranges, sorted, disjoint and not
touching.
"""

from __future__ import annotations

import array
import functools
import importlib
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "FULL",
    "LAST",
    "Ranges",
    "atom_set",
    "category",
    "complement",
    "intersection",
    "intersects",
    "scoped_flags",
    "union",
]

_sre: Any = importlib.import_module("_sre")
_constants: Any = importlib.import_module("re._constants")

Ranges = tuple[tuple[int, int], ...]
LAST = 0x10FFFF
FULL: Ranges = ((0, LAST),)
_NEWLINE: Ranges = ((10, 10),)
_TYPE_FLAGS = re.ASCII | re.LOCALE | re.UNICODE
_CATEGORY_SOURCE = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def normalize(pairs: Iterable[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(pairs):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return tuple(merged)


def union(*sets: Ranges) -> Ranges:
    return normalize(pair for ranges in sets for pair in ranges)


def complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= LAST:
        gaps.append((start, LAST))
    return tuple(gaps)


def intersection(a: Ranges, b: Ranges) -> Ranges:
    return complement(union(complement(a), complement(b)))


def intersects(a: Ranges, b: Ranges) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def _from_codes(codes: Iterable[int]) -> Ranges:
    return normalize((code, code) for code in codes)


def _runs(pattern: str, text: str, offset: int = 0) -> Ranges:
    """The code points of `text` (starting at `offset`) that `pattern` matches, one by one."""
    return tuple(
        (m.start() + offset, m.end() - 1 + offset) for m in re.finditer(f"(?:{pattern})+", text)
    )


@functools.cache
def _unicode_categories() -> dict[str, Ranges]:
    everything = array.array("I", range(LAST + 1)).tobytes().decode("utf-32-le", "surrogatepass")
    return {name: _runs(source, everything) for name, source in _CATEGORY_SOURCE.items()}


@functools.cache
def _ascii_category(name: str) -> Ranges:
    ascii_only = _runs(f"(?a:{_CATEGORY_SOURCE[name]})", "".join(map(chr, range(128))))
    if name.startswith("CATEGORY_NOT_"):  # the complement includes everything beyond ASCII
        return union(ascii_only, ((128, LAST),))
    return ascii_only


def category(name: str, flags: int) -> Ranges:
    """What `\\d`, `\\W`, ... (`name` as in the parse tree: CATEGORY_DIGIT) match under `flags`."""
    if flags & re.ASCII:
        return _ascii_category(name)
    return _unicode_categories()[name]


@functools.cache
def _case_related() -> tuple[Ranges, str]:
    """Every character that `re` may fold to or from another one, as ranges and as text.

    A character outside this set has no case (`_sre.unicode_iscased` is false) and is not
    the simple lower case of one that has, so under IGNORECASE `re` compares it exactly.
    """
    codes: set[int] = set()
    for code in range(LAST + 1):
        if _sre.unicode_iscased(code):
            codes.add(code)
            codes.add(_sre.unicode_tolower(code))
            upper = chr(code).upper()
            if len(upper) == 1:
                codes.add(ord(upper))
    return _from_codes(codes), "".join(map(chr, sorted(codes)))


def scoped_flags(flags: int, add: int, remove: int) -> int:
    """The flags inside `(?add-remove:...)`, as `re._compiler` combines them."""
    if add & _TYPE_FLAGS:
        flags &= ~_TYPE_FLAGS
    return (flags | add) & ~remove


def _escape(code: int) -> str:
    return f"\\U{code:08x}"


def _plain(name: str, av: Any, flags: int) -> Ranges:
    """What a single-character item matches with IGNORECASE left out."""
    if name == "LITERAL":
        return ((av, av),)
    if name == "NOT_LITERAL":
        return complement(((av, av),))
    if name == "ANY":
        return FULL if flags & re.DOTALL else complement(_NEWLINE)
    if name != "IN":
        raise ValueError(name)
    members: list[Ranges] = []
    negate = False
    for op, arg in av:
        kind = str(op)
        if kind == "NEGATE":
            negate = True
        elif kind == "LITERAL":
            members.append(((arg, arg),))
        elif kind == "RANGE":
            members.append(((arg[0], arg[1]),))
        elif kind == "CATEGORY":
            members.append(category(str(arg), flags))
        else:
            raise ValueError(kind)
    found = union(*members)
    return complement(found) if negate else found


def _source(name: str, av: Any) -> str:
    """`re` source for one single-character item (flags are added by the caller)."""
    if name == "LITERAL":
        return _escape(av)
    if name == "NOT_LITERAL":
        return f"[^{_escape(av)}]"
    if name == "ANY":
        return "."
    parts = []
    for op, arg in av:
        kind = str(op)
        if kind == "NEGATE":
            parts.append("^")
        elif kind == "LITERAL":
            parts.append(_escape(arg))
        elif kind == "RANGE":
            parts.append(f"{_escape(arg[0])}-{_escape(arg[1])}")
        else:
            parts.append(_CATEGORY_SOURCE[str(arg)])
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=4096)
def _atom_set(name: str, av: Any, flags: int) -> Ranges:
    plain = _plain(name, av, flags)
    if not flags & re.IGNORECASE:
        return plain
    related, text = _case_related()
    letters = "i" + ("a" if flags & re.ASCII else "") + ("s" if flags & re.DOTALL else "")
    folded = _runs(f"(?{letters}:{_source(name, av)})", text)
    # `_runs` numbered the matches by their index in `text`; map them back to code points.
    codes = [ord(text[i]) for low, high in folded for i in range(low, high + 1)]
    return union(intersection(plain, complement(related)), _from_codes(codes))


def atom_set(name: str, av: Any, flags: int) -> Ranges:
    """The characters that the item `(name, av)` of a `re._parser` tree matches under `flags`.

    `name` is one of LITERAL, NOT_LITERAL, ANY and IN; anything else raises ValueError.
    """
    if name == "IN":  # a list of (op, arg) pairs: make it hashable for the cache
        av = tuple((str(op), str(arg) if str(op) == "CATEGORY" else arg) for op, arg in av)
    return _atom_set(name, av, flags)
