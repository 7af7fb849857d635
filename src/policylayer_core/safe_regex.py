"""Regex searches whose work is bounded, with the verdicts of Python's `re.search`.

Policies match regexes against strings an agent sends, and Python's backtracking `re`
can take exponential time on a pattern such as `(a+)+$`. `compile_search` returns a
matcher that answers exactly as `re.search(pattern, text) is not None` would, or raises
`RegexRefused` when it cannot answer within `RegexLimits`:

* every string longer than `max_input` characters is refused, on every path;
* a pattern that `regex_safety.linear_safe` proves linear runs on `re` itself, so the
  common case costs one length check more than `re.search`;
* every other pattern runs on the `regex` module (mrab-regex) with its `timeout`, after a
  translation that makes it mean what `re` means: each character class, `\\w`, `\\b` and
  case-insensitive letter is spelled out as the exact set of code points Python's `re`
  gives it (`_charsets`), and anchors become explicit lookarounds. What is left (groups,
  alternation, repeats, lookarounds, backreferences, atomic groups) is the backtracking
  semantics both engines share. `tests/test_safe_regex.py` checks the equivalence on
  generated patterns and strings.

One construct cannot be translated exactly: a case-insensitive backreference, where
`regex` folds case more widely than `re` beyond ASCII. A pattern that has one refuses
strings with non-ASCII characters (when it is not linear_safe; a linear_safe one never
has a backreference).
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policylayer_core._charsets import (
    FULL,
    LAST,
    Ranges,
    atom_set,
    category,
    complement,
    intersection,
    scoped_flags,
)
from policylayer_core.regex_safety import linear_safe

__all__ = [
    "DEFAULT_REGEX_LIMITS",
    "RegexLimits",
    "RegexRefused",
    "compile_search",
    "required_literal",
]

_parser: Any = importlib.import_module("re._parser")
_MAXREPEAT: int = importlib.import_module("re._constants").MAXREPEAT
_LITERAL: Any = importlib.import_module("re._constants").LITERAL

# The policy setting that tunes `max_input`, named in reasons.
LENGTH_SETTING = "arguments.max_regex_input"


@dataclass(frozen=True, slots=True)
class RegexLimits:
    """How much work one regex search may do on one string.

    `max_input`: the longest string (in characters) a regex examines; longer ones are
    refused without matching. `timeout`: the seconds a search on the bounded engine may run
    (patterns that are not linear_safe); `re` never needs one, its work is linear.
    """

    max_input: int = 10_000
    timeout: float = 0.05


DEFAULT_REGEX_LIMITS = RegexLimits()


class RegexRefused(Exception):  # noqa: N818 - a verdict ("cannot judge"), like Indeterminate
    """A search was not run, or not finished, within the limits.

    `reason` is a complete sentence about "the string". `about(subject)` states the same
    finding about a named subject ("the argument args.title"), as a clause for callers
    that add their own consequence.
    """

    def __init__(self, reason: str, *, clause: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.clause = clause if clause is not None else "{subject} could not be matched"

    def about(self, subject: str) -> str:
        text = self.clause.format(subject=subject)
        return text[:1].upper() + text[1:]


def _refused(clause: str) -> RegexRefused:
    sentence = clause.format(subject="the string")
    return RegexRefused(
        f"{sentence[:1].upper()}{sentence[1:]}, so the pattern cannot be judged safely.",
        clause=clause,
    )


def _too_long(length: int, limits: RegexLimits) -> RegexRefused:
    return _refused(
        f"{{subject}} is {length:,} characters long, over the {limits.max_input:,} characters "
        f"a regex may examine ({LENGTH_SETTING})"
    )


def _too_slow(limits: RegexLimits) -> RegexRefused:
    return _refused(
        f"matching {{subject}} against the pattern took longer than the {limits.timeout:g} s "
        "a regex may run"
    )


_NOT_ASCII = (
    "{subject} contains characters outside ASCII, and the pattern compares text "
    "case-insensitively through a backreference, which can be judged within bounds only "
    "for ASCII text"
)
_UNSUPPORTED = "{subject} cannot be matched within bounds: the pattern uses a construct the bounded matcher does not know"  # noqa: E501


def compile_search(
    pattern: str, limits: RegexLimits = DEFAULT_REGEX_LIMITS
) -> Callable[[str], bool]:
    """A function `text -> bool`: True when `re.search(pattern, text)` finds a match.

    It raises RegexRefused instead of answering when `text` is longer than
    `limits.max_input`, or when the bounded engine needed more than `limits.timeout`.
    `pattern` must compile with `re` (re.error otherwise).
    """
    with warnings.catch_warnings():  # "possible nested set": judged when the policy loaded
        warnings.simplefilter("ignore")
        return _compile_search(pattern, limits)


@functools.lru_cache(maxsize=1024)
def _compile_search(pattern: str, limits: RegexLimits) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    max_input = limits.max_input
    needed = required_literal(pattern)
    if linear_safe(pattern):
        search = compiled.search
        if needed is not None:

            def linear_after_literal(text: str) -> bool:
                if len(text) > max_input:
                    raise _too_long(len(text), limits)
                return needed in text and search(text) is not None

            return linear_after_literal

        def linear(text: str) -> bool:
            if len(text) > max_input:
                raise _too_long(len(text), limits)
            return search(text) is not None

        return linear
    bounded = bounded_search(pattern, limits)
    if needed is None:
        return bounded
    return lambda text: needed in text and bounded(text)


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters that every match of `pattern` contains, or None.

    A string without it cannot match, and `str.__contains__` says so far faster than a
    search that tries every position (`(^|/)\\.\\.(/|$)` needs `..`). Only characters
    of the top-level sequence count: each of them is part of every match. None when the
    whole pattern ignores case.
    """
    try:
        with warnings.catch_warnings():  # "possible nested set": the loader's job
            warnings.simplefilter("ignore")
            parsed = _parser.parse(pattern)
    except (re.error, OverflowError, RecursionError):
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None
    best, run = "", ""
    for op, argument in parsed.data:
        if op is _LITERAL:
            run += chr(argument)
            best = max(best, run, key=len)
        else:
            run = ""
    return best or None


def bounded_search(pattern: str, limits: RegexLimits) -> Callable[[str], bool]:
    """The matcher on the `regex` module with a timeout, whatever the pattern (for tests)."""
    max_input = limits.max_input
    try:
        translation = _Translation(max_input)
        source = translation.source(pattern)
        engine: Any = importlib.import_module("regex")  # no type stubs
        bounded = engine.compile(source, engine.V0).search
    except (_Untranslatable, LookupError, ValueError):  # a construct of a newer Python
        unsupported = _refused(_UNSUPPORTED)

        def refuse(text: str) -> bool:
            raise unsupported

        return refuse
    timeout = limits.timeout
    ascii_only = translation.ascii_only

    def timed(text: str) -> bool:
        if len(text) > max_input:
            raise _too_long(len(text), limits)
        if ascii_only and not text.isascii():
            raise _refused(_NOT_ASCII)
        try:
            return bounded(text, timeout=timeout) is not None
        except TimeoutError:
            raise _too_slow(limits) from None

    return timed


# -- the translation for the `regex` module ---------------------------------------------


class _Untranslatable(Exception):  # noqa: N818 - a signal, not an error
    pass


_ASCII: Ranges = ((0, 127),)
_NON_ASCII: Ranges = ((128, LAST),)
_SMALL_CLASS = 8  # ranges up to which one bracket is as fast as the split form
# Whether `re` lets \B match in an empty string (it does not before Python 3.14).
_EMPTY_NON_BOUNDARY = re.search(r"\B", "") is not None


def _escape(code: int) -> str:
    return f"\\U{code:08x}"


def _bracket(ranges: Ranges, *, negate: bool = False) -> str:
    body = "".join(
        _escape(low) if low == high else f"{_escape(low)}-{_escape(high)}" for low, high in ranges
    )
    return f"[{'^' if negate else ''}{body}]"


def _class(ranges: Ranges) -> str:
    """`regex` source matching exactly the characters in `ranges`.

    `regex` tests a character against a bracket's ranges one by one, so a large set (`\\w`
    has hundreds of ranges) is split: ASCII first, then the rest only for non-ASCII
    characters, as ranges or as the complement's, whichever is shorter.
    """
    if not ranges:
        return "(?!)"
    if ranges == FULL or len(ranges) <= _SMALL_CLASS:
        return _bracket(ranges)
    ascii_part, rest = intersection(ranges, _ASCII), intersection(ranges, _NON_ASCII)
    parts = [_bracket(ascii_part)] if ascii_part else []
    if rest:
        missing = intersection(complement(ranges), _NON_ASCII)
        if not missing:
            parts.append(r"[^\x00-\x7f]")
        elif len(rest) <= len(missing):
            parts.append(r"(?![\x00-\x7f])" + _bracket(rest))
        else:
            parts.append(r"(?![\x00-\x7f])" + _bracket(missing, negate=True))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


class _Translation:
    def __init__(self, max_input: int) -> None:
        # Repeat counts beyond the longest string change nothing but compile time
        # (`regex` unrolls counted repeats), so they are capped there.
        self.cap = max_input + 1
        self.ascii_only = False

    def source(self, pattern: str) -> str:
        parsed = _parser.parse(pattern)
        return self._items(list(parsed), parsed.state.flags)

    def _items(self, items: list[tuple[Any, Any]] | Any, flags: int) -> str:
        return "".join(self._item(str(op), av, flags) for op, av in items)

    def _item(self, name: str, av: Any, flags: int) -> str:
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            return _class(atom_set(name, av, flags))
        if name == "AT":
            return self._at(str(av), flags)
        if name == "SUBPATTERN":
            group, add, remove, body = av
            inner = self._items(body, scoped_flags(flags, add, remove))
            return f"({inner})" if group is not None else f"(?:{inner})"
        if name == "BRANCH":
            return "(?:" + "|".join(self._items(branch, flags) for branch in av[1]) + ")"
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = av
            low = min(low, self.cap)
            count = f"{low}," if high == _MAXREPEAT else f"{low},{min(high, self.cap)}"
            suffix = {"MAX_REPEAT": "", "MIN_REPEAT": "?", "POSSESSIVE_REPEAT": "+"}[name]
            return f"(?:{self._items(body, flags)}){{{count}}}{suffix}"
        if name == "ATOMIC_GROUP":
            return f"(?>{self._items(av, flags)})"
        if name in ("ASSERT", "ASSERT_NOT"):
            direction, body = av
            opener = ("(?=", "(?<=") if name == "ASSERT" else ("(?!", "(?<!")
            return opener[direction < 0] + self._items(body, flags) + ")"
        if name == "GROUPREF":
            if flags & re.IGNORECASE:
                self.ascii_only = True
                return f"(?i:\\g<{av}>)"
            return f"(?:\\g<{av}>)"
        if name == "GROUPREF_EXISTS":
            group, yes, no = av
            otherwise = self._items(no, flags) if no is not None else ""
            return f"(?({group}){self._items(yes, flags)}|{otherwise})"
        raise _Untranslatable(name)

    def _at(self, where: str, flags: int) -> str:
        multiline = flags & re.MULTILINE
        if where == "AT_BEGINNING_STRING" or (where == "AT_BEGINNING" and not multiline):
            return r"\A"
        if where == "AT_BEGINNING":
            return r"(?:\A|(?<=\n))"
        if where == "AT_END_STRING":
            return r"\Z"  # `regex`'s \Z, like `re`'s, is the very end
        if where == "AT_END":
            return r"(?=\n|\Z)" if multiline else r"(?=\n?\Z)"
        word = _class(category("CATEGORY_WORD", flags))
        if where == "AT_BOUNDARY":
            return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"
        if where == "AT_NON_BOUNDARY":
            inside = f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"
            return inside if _EMPTY_NON_BOUNDARY else r"(?!\A\Z)" + inside
        raise _Untranslatable(where)
