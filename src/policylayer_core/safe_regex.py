"""Regex searches whose work is bounded, with the verdicts of Python's `re.search`.

Policies match regexes against strings an agent sends, and Python's backtracking `re`
can take exponential time on a pattern such as `(a+)+$`. `compile_search` returns a
matcher that answers exactly as `re.search(pattern, text) is not None` would, or raises
`RegexRefused` when it cannot answer within `RegexLimits`:

* every string longer than `max_input` characters is refused, on every path;
* a pattern that `regex_safety.linear_safe` proves linear runs on `re` itself, so the
  common case costs one length check more than `re.search`;
* a pattern that `regex_safety.linear_reversed` proves linear when mirrored (most that
  end with `$`, such as `\\s+$`, which is quadratic for `re.search`) runs on `re` too:
  its mirror image searched in the reversed string (`reversed_search`);
* every other pattern runs on the `regex` module (mrab-regex) with its `timeout`, after a
  translation that makes it mean what `re` means: each character class, `\\w`, `\\b` and
  case-insensitive letter is spelled out as the exact set of code points Python's `re`
  gives it (`_charsets`), and word boundaries become explicit lookarounds. What is left
  (groups, alternation, repeats, anchors, lookarounds, backreferences, atomic groups) is
  the backtracking semantics both engines share. `tests/test_safe_regex.py` checks the
  equivalence on generated patterns and strings. Within one `decide()` or `explain()`
  call these searches share one budget of time (`RegexLimits.call_budget`, see
  `CallBudget`), so a call with many strings cannot multiply the time limit.

A pattern that the bounded matcher would have to write out too large (it unrolls counted
repeats: `(a{1000}){1000}` is a million copies) is refused when the policy loads
(`expansion_problem`).

One construct cannot be translated exactly: a case-insensitive backreference, where
`regex` folds case more widely than `re` beyond ASCII. A pattern that has one refuses
strings with non-ASCII characters (when it is not linear_safe; a linear_safe one never
has a backreference).
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, ParamSpec, TypeVar

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
from policylayer_core.regex_safety import linear_reversed, linear_safe

__all__ = [
    "DEFAULT_REGEX_LIMITS",
    "MAX_EXPANSION",
    "CallBudget",
    "RegexLimits",
    "RegexRefused",
    "compile_search",
    "expansion_problem",
    "needs_time_bound",
    "required_literal",
    "reversed_search",
]

_parser: Any = importlib.import_module("re._parser")
_MAXREPEAT: int = importlib.import_module("re._constants").MAXREPEAT
_LITERAL: Any = importlib.import_module("re._constants").LITERAL

# The policy setting that tunes `max_input`, named in reasons.
LENGTH_SETTING = "arguments.max_regex_input"


# How long the bounded matcher's source may be once its repeats are written out
# (`expansion_problem`): `regex` then takes at most about 55 MB and 0.2 s to compile it
# (measured: 6 to 54 bytes per character, nested capture groups the most).
MAX_EXPANSION = 1_000_000

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class RegexLimits:
    """How much work regex searches may do.

    `max_input`: the longest string (in characters) a regex examines; longer ones are
    refused without matching. `timeout`: the seconds one search on the bounded engine may
    run (patterns that are not provably linear); `re` never needs one, its work is linear.
    `call_budget`: the seconds all the searches on the bounded engine in one `decide()` or
    `explain()` call may run together (see `CallBudget`); once spent, further searches on
    that engine in the call are refused.
    """

    max_input: int = 10_000
    timeout: float = 0.05
    call_budget: float = 0.1


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


def _budget_spent(seconds: float) -> RegexRefused:
    return _refused(
        f"{{subject}} could not be matched against the pattern: this call's searches on patterns "
        f"that are not provably linear have used up the {seconds:g} s they may take together"
    )


# -- one budget per call ------------------------------------------------------------------


class _CallState(threading.local):
    """The budget of the call this thread is deciding; `depth` 0: no call is open."""

    depth = 0
    left = 0.0  # seconds the bounded engine may still run in this call
    seconds = 0.0  # the call's whole budget, for the reason


_CALL = _CallState()


class CallBudget:
    """Opens one budget of time for the bounded-engine searches of a call.

    A program whose patterns may run on the bounded engine (`needs_time_bound`, decided
    when the policy compiles) runs each call through `run`, and every bounded search made
    meanwhile on this thread takes its time from the one budget: `call_budget` seconds in
    all, each search at most `timeout`. Linear patterns never touch it, and a program
    without bounded patterns never opens one. The budget lives in thread-local state, so
    calls on other threads have their own; a decision made while one is open on the same
    thread (nested in another, through a callback of the caller's) shares the open budget
    rather than starting a fresh one. Searches outside any call (a validator used
    directly) have only their own time limit.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """`function(*args, **kwargs)` with this budget open (or the one already open)."""
        call = _CALL
        if call.depth:
            return function(*args, **kwargs)
        call.depth = 1
        call.left = call.seconds = self.seconds
        try:
            return function(*args, **kwargs)
        finally:
            call.depth = 0


def budget_open() -> bool:
    """Whether a call's budget is open on this thread."""
    return _CALL.depth > 0


_NOT_ASCII = (
    "{subject} contains characters outside ASCII, and the pattern compares text "
    "case-insensitively through a backreference, which can be judged within bounds only "
    "for ASCII text"
)
_UNSUPPORTED = (
    "{subject} cannot be matched within bounds: the pattern uses a construct the bounded "
    "matcher does not know, or is too large or nested too deeply for it"
)


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
    engine = _engine(pattern)
    if engine == "re":
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
    mirrored = reversed_search(pattern, limits) if engine == "reversed" else None
    found = bounded_search(pattern, limits) if mirrored is None else mirrored
    if needed is None:
        return found
    return lambda text: needed in text and found(text)


@functools.lru_cache(maxsize=1024)
def _engine(pattern: str) -> str:
    """Which matcher runs `pattern`: "re", "reversed" (re, mirrored) or "bounded" (also
    for a pattern `re` cannot compile, which no search ever uses: the loader refuses it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        return "bounded"
    if linear_safe(pattern):
        return "re"
    if linear_reversed(pattern):
        try:
            _Mirror().source(pattern)  # it accepts what linear_reversed does; make sure
        except (_Untranslatable, LookupError, ValueError, RecursionError):
            return "bounded"
        return "reversed"
    return "bounded"


def needs_time_bound(pattern: str) -> bool:
    """Whether `compile_search` runs `pattern` on the bounded engine, with a time limit
    (and, within a call, on the call's budget): it is not provably linear either way."""
    return _engine(pattern) == "bounded"


def expansion_problem(pattern: str) -> str | None:
    """Why a policy may not use `pattern` (a complete sentence), or None when it may.

    A pattern that is not provably linear runs on the bounded engine, which writes each
    repeat out in full (the body once per mandatory pass and once more when the count
    may vary), nested repeats multiplying: `(a{10000}){10000}` would take gigabytes to
    compile, so would twenty nested `+`, and a `\\w` (hundreds of ranges of code points)
    repeated ten thousand times almost one. Such a pattern is refused when the policy
    loads, measured as the length of the source the bounded engine would compile, every
    repeat written out (`_Translation.weight`, with counts not capped: whatever
    `arguments.max_regex_input` says, the engine gets no more). So is one nested too deeply
    to translate. None for a pattern `re` cannot compile: the loader reports that itself.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
            if not needs_time_bound(pattern):
                return None
            size = _Translation(None).expanded(pattern)
    except (re.error, OverflowError, _Untranslatable, LookupError, ValueError):
        return None
    except RecursionError:
        return (
            f"The regular expression {pattern!r} nests too deeply to run within bounds: it "
            "is not provably linear, so it runs on the time-bounded matcher, which cannot "
            "take a pattern nested this deeply. Nest fewer groups and repeats."
        )
    if size <= MAX_EXPANSION:
        return None
    return (
        f"The regular expression {pattern!r} is too large to run within bounds: it is not "
        "provably linear, so it runs on the time-bounded matcher, which writes each repeat "
        "out in full ('a{3}' as 'aaa', 'a+' as 'aa*'; nested repeats multiply), and written "
        f"out it would be {size:,} characters long, over the {MAX_EXPANSION:,} allowed. Use "
        "smaller repeat counts and nest fewer repeats."
    )


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


def reversed_search(pattern: str, limits: RegexLimits) -> Callable[[str], bool] | None:
    """The matcher that searches the mirror image of `pattern` in the reversed string, on
    `re`; None when the pattern uses a construct that does not mirror exactly.

    `compile_search` uses it only where `regex_safety.linear_reversed` proves it linear;
    for tests it is built for every pattern it can mirror.
    """
    try:
        source = _Mirror().source(pattern)
    except (_Untranslatable, LookupError, ValueError, RecursionError):
        return None
    search = re.compile(source).search
    max_input = limits.max_input

    def linear_reversed(text: str) -> bool:
        if len(text) > max_input:
            raise _too_long(len(text), limits)
        return search(text[::-1]) is not None

    return linear_reversed


def bounded_search(pattern: str, limits: RegexLimits) -> Callable[[str], bool]:
    """The matcher on the `regex` module with a timeout, whatever the pattern (for tests)."""
    max_input = limits.max_input
    try:
        translation = _Translation(max_input)
        source = translation.source(pattern)
        if translation.weight > MAX_EXPANSION:  # the loader refuses these (expansion_problem)
            raise _Untranslatable("too large")
        engine: Any = importlib.import_module("regex")  # no type stubs
        bounded = engine.compile(source, engine.V0).search
    except (_Untranslatable, LookupError, ValueError, RecursionError):
        # A construct of a newer Python, or (from a caller that skipped the loader's
        # `expansion_problem`) a pattern too large or too deep to translate: refused.
        unsupported = _refused(_UNSUPPORTED)

        def refuse(text: str) -> bool:
            raise unsupported

        return refuse
    timeout = limits.timeout
    ascii_only = translation.ascii_only
    call = _CALL

    def timed(text: str) -> bool:
        if len(text) > max_input:
            raise _too_long(len(text), limits)
        if ascii_only and not text.isascii():
            raise _refused(_NOT_ASCII)
        if not call.depth:  # outside a call: this search's own limit only
            try:
                return bounded(text, timeout=timeout) is not None
            except TimeoutError:
                raise _too_slow(limits) from None
        left = call.left
        if left <= 0.0:
            raise _budget_spent(call.seconds)
        allowed = timeout if timeout <= left else left
        start = perf_counter()
        try:
            return bounded(text, timeout=allowed) is not None
        except TimeoutError:
            raise (
                _too_slow(limits) if allowed == timeout else _budget_spent(call.seconds)
            ) from None
        finally:
            call.left = left - (perf_counter() - start)

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


def _boundary(where: str, word: str) -> str:
    """`\\b` or `\\B` as lookarounds on `word` (one character's source), as `re` means them."""
    if where == "AT_BOUNDARY":
        return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"
    if where == "AT_NON_BOUNDARY":
        inside = f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"
        return inside if _EMPTY_NON_BOUNDARY else r"(?!\A\Z)" + inside
    raise _Untranslatable(where)


class _Translation:
    """`regex` source that means what a `re` pattern means.

    `weight` is the length of that source with every repeat written out as `regex`
    compiles it: the body once per mandatory pass, and once more when the count may vary.
    """

    def __init__(self, max_input: int | None) -> None:
        # Repeat counts beyond the longest string change nothing but compile time
        # (`regex` unrolls counted repeats), so they are capped there (None: not capped,
        # for `expansion_problem`, which must hold whatever the cap).
        self.cap = max_input + 1 if max_input is not None else None
        self.ascii_only = False
        self.weight = 0

    def source(self, pattern: str) -> str:
        parsed = _parser.parse(pattern)
        source, self.weight = self._items(list(parsed), parsed.state.flags)
        return source

    def expanded(self, pattern: str) -> int:
        self.source(pattern)
        return self.weight

    def _items(self, items: list[tuple[Any, Any]] | Any, flags: int) -> tuple[str, int]:
        pieces = [self._item(str(op), av, flags) for op, av in items]
        return "".join(source for source, _ in pieces), sum(weight for _, weight in pieces)

    def _item(self, name: str, av: Any, flags: int) -> tuple[str, int]:
        if name in ("SUBPATTERN", "BRANCH", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self._compound(name, av, flags)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            source = _class(atom_set(name, av, flags))
        elif name == "AT":
            source = self._at(str(av), flags)
        elif name == "ATOMIC_GROUP":
            inner, weight = self._items(av, flags)
            return f"(?>{inner})", weight + 4
        elif name in ("ASSERT", "ASSERT_NOT"):
            direction, body = av
            opener = ("(?=", "(?<=") if name == "ASSERT" else ("(?!", "(?<!")
            inner, weight = self._items(body, flags)
            return opener[direction < 0] + inner + ")", weight + 5
        elif name == "GROUPREF":
            if flags & re.IGNORECASE:
                self.ascii_only = True
                source = f"(?i:\\g<{av}>)"
            else:
                source = f"(?:\\g<{av}>)"
        elif name == "GROUPREF_EXISTS":
            group, yes, no = av
            then, weight = self._items(yes, flags)
            otherwise, more = self._items(no, flags) if no is not None else ("", 0)
            return f"(?({group}){then}|{otherwise})", weight + more + 8
        else:
            raise _Untranslatable(name)
        return source, len(source)

    def _compound(self, name: str, av: Any, flags: int) -> tuple[str, int]:
        if name == "SUBPATTERN":
            group, add, remove, body = av
            inner, weight = self._items(body, scoped_flags(flags, add, remove))
            return (f"({inner})" if group is not None else f"(?:{inner})"), weight + 4
        if name == "BRANCH":
            branches = [self._items(branch, flags) for branch in av[1]]
            source = "(?:" + "|".join(source for source, _ in branches) + ")"
            return source, sum(weight for _, weight in branches) + len(branches) + 4
        low, high, body = av
        if self.cap is not None:
            low, high = min(low, self.cap), high if high == _MAXREPEAT else min(high, self.cap)
        count = f"{low}," if high == _MAXREPEAT else f"{low},{high}"
        suffix = {"MAX_REPEAT": "", "MIN_REPEAT": "?", "POSSESSIVE_REPEAT": "+"}[name]
        inner, weight = self._items(body, flags)
        # `regex` writes the body out once per mandatory pass and once more for the rest
        # (`a{2,}` as `aaa*`), so nested `+` repeats double at each level.
        copies = max(low + (high != low), 1)
        return f"(?:{inner}){{{count}}}{suffix}", copies * weight + len(count) + 7

    def _at(self, where: str, flags: int) -> str:
        # `regex`'s own anchors mean what `re`'s do (only "\n" ends a line, `$` without
        # MULTILINE also holds before a final "\n") and are far faster than lookarounds.
        multiline = flags & re.MULTILINE
        if where == "AT_BEGINNING_STRING" or (where == "AT_BEGINNING" and not multiline):
            return r"\A"
        if where == "AT_BEGINNING":
            return "(?m:^)"
        if where == "AT_END_STRING":
            return r"\Z"  # `regex`'s \Z, like `re`'s, is the very end
        if where == "AT_END":
            return "(?m:$)" if multiline else "$"
        return _boundary(where, _class(category("CATEGORY_WORD", flags)))


class _Mirror:
    """`re` source for the mirror image of a pattern: what it matches, spelled backwards.

    `re.search(mirror, text[::-1])` finds a match exactly when `re.search(pattern, text)`
    does, for the constructs written here (characters and classes, spelled out as in
    `_Translation`, with no flags left; groups, alternation, greedy and lazy repeats;
    anchors, each becoming its opposite; word boundaries, which look the same both
    ways). Anything else (lookarounds, atomic groups, possessive repeats, backreferences)
    raises _Untranslatable.
    """

    def source(self, pattern: str) -> str:
        parsed = _parser.parse(pattern)
        items, flags = list(parsed), parsed.state.flags
        final = (str(items[-1][0]), str(items[-1][1])) if items else None
        if final == ("AT", "AT_END") and not flags & re.MULTILINE:
            # A final `$` becomes a leading `\A\n?`: the same texts match (at the start, or
            # after a first "\n"), and `re` tries a pattern that begins with `\A` at one
            # position only, not at each of them (10,000 characters: 0.5 us, not 500 us).
            return r"\A\n?" + self._items(items[:-1], flags)
        return self._items(items, flags)

    def _items(self, items: list[tuple[Any, Any]] | Any, flags: int) -> str:
        return "".join(self._item(str(op), av, flags) for op, av in reversed(list(items)))

    def _item(self, name: str, av: Any, flags: int) -> str:
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            ranges = atom_set(name, av, flags)
            return _bracket(ranges) if ranges else "(?!)"  # `re` handles large sets well
        if name == "AT":
            return self._at(str(av), flags)
        if name == "SUBPATTERN":
            _, add, remove, body = av
            return f"(?:{self._items(body, scoped_flags(flags, add, remove))})"
        if name == "BRANCH":
            return "(?:" + "|".join(self._items(branch, flags) for branch in av[1]) + ")"
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = av
            count = f"{low}," if high == _MAXREPEAT else f"{low},{high}"
            lazy = "?" if name == "MIN_REPEAT" else ""
            return f"(?:{self._items(body, flags)}){{{count}}}{lazy}"
        raise _Untranslatable(name)

    def _at(self, where: str, flags: int) -> str:
        multiline = flags & re.MULTILINE
        if where == "AT_BEGINNING_STRING" or (where == "AT_BEGINNING" and not multiline):
            return r"\Z"
        if where == "AT_BEGINNING":  # after a "\n": before one, reversed
            return r"(?=\n|\Z)"
        if where == "AT_END_STRING":
            return r"\A"
        if where == "AT_END":  # at the end or before a final "\n" (any "\n" if multiline)
            return r"(?:\A|(?<=\n))" if multiline else r"(?:\A|(?<=\A\n))"
        word = category("CATEGORY_WORD", flags)
        return _boundary(where, _bracket(word) if word else "(?!)")
