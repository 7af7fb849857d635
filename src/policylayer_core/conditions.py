"""Conditions compiled into closures, once, when a policy loads.

A compiled condition is called as `check(identity, tool, args, session)` and returns
True or False, or raises `Indeterminate` when the argument is present but of a type
the operator cannot judge (the format's fail-closed rule). The policy's side of
every comparison (regexes, globs, sets of strings) is prepared here so the call
does as little as possible.

Caller values are read by their exact type only (`_json_values`): every operator tests
`type(x) is T` and then uses the JSON type's own behaviour; a value of any other type
(a subclass, an object that claims a class) is indeterminate, whatever its methods say.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from fnmatch import translate
from typing import Any

from policylayer_core._json_values import describe_type
from policylayer_core.paths import MISSING, NotJSON, ShapeMismatch, parse_path, resolve
from policylayer_core.safe_regex import (
    DEFAULT_REGEX_LIMITS,
    RegexLimits,
    RegexRefused,
    compile_search,
)

__all__ = ["Check", "Indeterminate", "compile_condition", "describe_type", "json_equal"]

Check = Callable[[str, str, Any, "str | None"], bool]
Predicate = Callable[[Any], bool]


class Indeterminate(Exception):  # noqa: N818 - a verdict carried up to the engine, not an error
    """A condition could not be judged; the engine denies the call at `pointer`."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(reason)
        self.pointer = pointer
        self.reason = reason


class _Confused(Exception):  # noqa: N818 - internal signal, turned into Indeterminate
    def __init__(self, needed: str) -> None:
        super().__init__(needed)
        self.needed = needed


def _refusal_reason(path: str, refused: RegexRefused) -> str:
    return (
        f"{refused.about(f'the argument {path}')}; the call is denied because the pattern "
        "cannot be judged safely."
    )


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 equals 1.0, arrays and objects compare deeply.

    `b` is always the policy's own (JSON) value; `a` comes from the caller and may be
    anything. It is read by exact type only: a value that is not JSON (a subclass,
    an object claiming a class, a tuple, a non-string key) and NaN raise _Confused
    rather than being guessed at, and no method of `a` is ever called.
    """
    kind = type(a)
    if kind is str:
        return type(b) is str and a == b
    if kind is int or kind is float:
        if kind is float and math.isnan(a):
            raise _Confused("a number that is not NaN")
        other = type(b)
        return (other is int or other is float) and a == b
    if kind is bool:
        return a is b
    if a is None:
        return b is None
    if kind is list:
        if type(b) is not list or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind is dict:
        if type(b) is not dict or len(a) != len(b):
            return False
        # The lookups below compare the caller's keys with the policy's: only exact
        # strings may take part (a str subclass's __eq__ and __hash__ could lie).
        for key in a:
            if type(key) is not str:
                raise _Confused("a JSON object (its keys are not all strings)")
        for key, value in b.items():
            found = a.get(key, MISSING)
            if found is MISSING or not json_equal(found, value):
                return False
        return True
    raise _Confused("a JSON value")


def _equals(value: Any) -> Predicate:
    if type(value) is str:
        # The common case, kept cheap: a plain string equals only the same string.
        def eq_str(x: Any) -> bool:
            if type(x) is str:
                return x == value
            return json_equal(x, value)

        return eq_str
    return lambda x: json_equal(x, value)


def _member_of(values: list[Any]) -> Predicate:
    if all(type(v) is str for v in values):
        strings = frozenset(values)

        def in_strings(x: Any) -> bool:
            if type(x) is str:
                return x in strings
            return any(json_equal(x, v) for v in values)

        return in_strings
    return lambda x: any(json_equal(x, v) for v in values)


def _number(x: Any) -> Any:
    kind = type(x)
    if kind is int:
        return x
    if kind is float:
        if math.isnan(x):
            raise _Confused("a number that is not NaN")
        return x
    raise _Confused("a number")


def _string(x: Any) -> str:
    if type(x) is not str:
        raise _Confused("a string")
    return x


def _length(x: Any) -> int:
    kind = type(x)
    if kind is str or kind is list or kind is dict:
        return len(x)
    raise _Confused("a string, array or object")


def _contains(value: Any) -> Predicate:
    def contains(x: Any) -> bool:
        if type(x) is str:
            if type(value) is not str:
                raise _Confused("an array (the policy's value is not a string)")
            return value in x
        if type(x) is list:
            return any(json_equal(element, value) for element in x)
        raise _Confused("a string or an array")

    return contains


def _predicate(op: str, value: Any, regex_limits: RegexLimits) -> Predicate:
    if op == "eq":
        return _equals(value)
    if op == "neq":
        eq = _equals(value)
        return lambda x: not eq(x)
    if op == "in":
        return _member_of(value)
    if op == "not_in":
        member = _member_of(value)
        return lambda x: not member(x)
    if op == "lt":
        return lambda x: bool(_number(x) < value)
    if op == "lte":
        return lambda x: bool(_number(x) <= value)
    if op == "gt":
        return lambda x: bool(_number(x) > value)
    if op == "gte":
        return lambda x: bool(_number(x) >= value)
    if op == "regex":
        search = compile_search(value, regex_limits)
        return lambda x: search(_string(x))
    if op == "glob":
        # fnmatch's translation is linear to run: literals, classes, and each `*` as an
        # atomic group `(?>.*?literal)` that never backtracks into itself.
        match = re.compile(translate(value)).match
        return lambda x: match(_string(x)) is not None
    if op == "starts_with":
        return lambda x: _string(x).startswith(value)
    if op == "ends_with":
        return lambda x: _string(x).endswith(value)
    if op == "contains":
        return _contains(value)
    if op == "len_gt":
        return lambda x: _length(x) > value
    if op == "len_gte":
        return lambda x: _length(x) >= value
    if op == "len_lt":
        return lambda x: _length(x) < value
    if op == "len_lte":
        return lambda x: _length(x) <= value
    if op == "len_eq":
        return lambda x: _length(x) == value
    raise ValueError(f"unknown operator {op!r}")  # the model admits only the operators above


_LENGTH_TESTS: dict[str, Callable[[int, int], bool]] = {
    "len_gt": operator.gt,
    "len_gte": operator.ge,
    "len_lt": operator.lt,
    "len_lte": operator.le,
    "len_eq": operator.eq,
}


def _confusion_reason(path: str, op: str, found: Any, needed: str) -> str:
    return (
        f"The argument {path} is {describe_type(found)}, but the condition '{op}' needs "
        f"{needed}, so the call is denied to stay safe; send {needed} at {path}."
    )


def _shape_reason(path: str, mismatch: ShapeMismatch) -> str:
    if type(mismatch) is NotJSON:
        return (
            f"The path {path} cannot be followed: it meets {describe_type(mismatch.found)}, "
            "so the call is denied to stay safe; send only JSON values."
        )
    return (
        f"The path {path} cannot be followed: it meets {describe_type(mismatch.found)} "
        f"where it needs {mismatch.needed}, so the call is denied to stay safe."
    )


def _one_key_check(
    pointer: str, path: str, key: str, op: str, value: Any, *, regex_limits: RegexLimits
) -> Check | None:
    """A check for `args.KEY` with the operator inlined, for the operators used most.

    Same verdicts as the general check (the tests run both paths), one Python call
    instead of three; None for the operators left to the general path.
    """
    missing = MISSING

    def confused(found: Any, needed: str) -> Indeterminate:
        return Indeterminate(pointer, _confusion_reason(path, op, found, needed))

    if op == "eq" and type(value) is str:

        def eq_str(identity: str, tool: str, args: Any, session: str | None) -> bool:
            found = args.get(key, missing)
            if type(found) is str:
                return bool(found == value)
            if found is missing:
                return False
            try:
                return json_equal(found, value)
            except _Confused as exc:
                raise confused(found, exc.needed) from None

        return eq_str
    if op == "in" and all(type(v) is str for v in value):
        strings = frozenset(value)

        def in_strs(identity: str, tool: str, args: Any, session: str | None) -> bool:
            found = args.get(key, missing)
            if type(found) is str:
                return found in strings
            if found is missing:
                return False
            try:
                return any(json_equal(found, v) for v in value)
            except _Confused as exc:
                raise confused(found, exc.needed) from None

        return in_strs
    if op in ("starts_with", "ends_with", "regex"):
        test: Callable[[str], bool]
        if op == "starts_with":
            test = lambda s: s.startswith(value)  # noqa: E731 - a tiny inlined predicate
        elif op == "ends_with":
            test = lambda s: s.endswith(value)  # noqa: E731
        else:
            test = compile_search(value, regex_limits)

        def on_string(identity: str, tool: str, args: Any, session: str | None) -> bool:
            found = args.get(key, missing)
            if type(found) is str:
                try:
                    return test(found)
                except RegexRefused as refused:
                    raise Indeterminate(pointer, _refusal_reason(path, refused)) from None
            if found is missing:
                return False
            raise confused(found, "a string")

        return on_string
    if op in _LENGTH_TESTS:
        compare = _LENGTH_TESTS[op]

        def on_length(identity: str, tool: str, args: Any, session: str | None) -> bool:
            found = args.get(key, missing)
            kind = type(found)
            if kind is str or kind is list or kind is dict:
                return compare(len(found), value)
            if found is missing:
                return False
            raise confused(found, "a string, array or object")

        return on_length
    return None


def _exists_check(
    pointer: str, path: str, values: Callable[[str, str, Any, str | None], list[Any]], wanted: bool
) -> Check:
    """`exists`: true when the path resolves (`wanted` True) or when it does not."""

    def exists(identity: str, tool: str, args: Any, session: str | None) -> bool:
        try:
            resolved = bool(values(identity, tool, args, session))
        except NotJSON as unknown:
            # A value that is not JSON could hold anything: it is not "absent".
            raise Indeterminate(pointer, _shape_reason(path, unknown)) from None
        except ShapeMismatch:
            resolved = False
        return resolved is wanted

    return exists


def compile_condition(
    pointer: str,
    path: str,
    op: str,
    value: Any,
    has_value: bool,
    *,
    regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS,
) -> Check:
    """Compile one condition of the policy at `pointer` into a check.

    `regex_limits` bounds the work of a `regex` condition on one string; a string it
    refuses makes the condition indeterminate (see `safe_regex`).
    """
    parsed = parse_path(path)
    root, steps = parsed.root, parsed.steps
    fan_out = "*" in steps

    def values(identity: str, tool: str, args: Any, session: str | None) -> list[Any]:
        if root == "args":
            start: Any = args
        elif root == "identity":
            start = identity
        elif root == "tool":
            start = tool
        else:
            start = MISSING if session is None else session
        if start is MISSING:
            return []
        found: list[Any] = []
        resolve(start, steps, 0, path, found)
        return found

    if op == "exists":
        return _exists_check(pointer, path, values, value is not False if has_value else True)

    predicate = _predicate(op, value, regex_limits)

    if not fan_out and root == "args" and len(steps) == 1:
        key = steps[0]
        fast = _one_key_check(pointer, path, key, op, value, regex_limits=regex_limits)
        if fast is not None:
            return fast

        # The most common shape, `args.name`, reads one key with no list building.
        def one_key(identity: str, tool: str, args: Any, session: str | None) -> bool:
            found = args.get(key, MISSING)
            if found is MISSING:
                return False
            try:
                return predicate(found)
            except _Confused as confused:
                raise Indeterminate(
                    pointer, _confusion_reason(path, op, found, confused.needed)
                ) from None
            except RegexRefused as refused:
                raise Indeterminate(pointer, _refusal_reason(path, refused)) from None

        return one_key

    def general(identity: str, tool: str, args: Any, session: str | None) -> bool:
        try:
            found = values(identity, tool, args, session)
        except ShapeMismatch as mismatch:
            raise Indeterminate(pointer, _shape_reason(path, mismatch)) from None
        holds = False
        for element in found:
            try:
                holds = predicate(element) or holds
            except _Confused as confused:
                raise Indeterminate(
                    pointer, _confusion_reason(path, op, element, confused.needed)
                ) from None
            except RegexRefused as refused:
                raise Indeterminate(pointer, _refusal_reason(path, refused)) from None
        return holds

    return general
