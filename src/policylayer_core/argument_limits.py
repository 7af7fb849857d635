"""`ArgumentLimits`: a policy's `arguments` section, compiled into one walk over a call.

An agent controls every byte of a call's arguments, and a careless integration may pass
Python objects that JSON cannot hold. The `arguments` section (docs/policy-format.md,
"Argument limits") bounds the size and shape of the arguments before any rule looks at
them; `check` walks the arguments once and returns the first limit they break.

The walk goes level by level (breadth first) with an explicit list, never recursion, so
10,000 levels of nesting cost what 10,000 flat values cost. Each value is looked at once,
and the walk stops at the first violation, so its time is linear in the size of the
arguments as JSON (a Python object referenced twice counts twice, as `json.dumps` would
write it twice). A reference cycle, which has no JSON size at all, is found by one extra
pass over the distinct containers once the walk has visited `_CYCLE_CHECK_AFTER` of them,
so ordinary arguments never pay for it.

The walk that decides (`_walker`) knows only *that* a limit failed; it keeps no paths, so
a call that passes costs nothing for the explanation. When it fails, `_explain` walks the
arguments again in the same order, keeping paths, and words the reason. The tests hold
the two walks, and a recursive reference, to the same verdicts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from policylayer_core._json_values import python_type as _python_type
from policylayer_core.model import DEFAULT_MAX_REGEX_INPUT, Arguments

__all__ = ["DEFAULT_MAX_REGEX_INPUT", "INT_MAX", "INT_MIN", "ArgumentLimits"]

# Integers outside the signed 64-bit range are "not JSON" for `non_json`: JSON parsers
# outside Python (JavaScript, Go, Java, databases) cannot hold them exactly, so the value
# a policy judges would not be the value the tool receives.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

# After visiting this many arrays and objects, the walk checks once for a reference cycle.
_CYCLE_CHECK_AFTER: Final = 10_000

_NO_LIMIT: Final = 2**63  # larger than any length or count Python can hold
_INF: Final = math.inf

# What the fast walk found (0: nothing).
_OK, _DEPTH, _STRING, _ITEMS, _TOTAL, _NON_JSON, _CYCLE = range(7)

# Python types that `non_json: "ignore"` measures as arrays, as objects or as strings.
# Values are matched by `issubclass(type(value), ...)`, never `isinstance`, which would
# believe an object's own `__class__` (a property can claim to be `str`).
_ARRAY_LIKE: Final = (list, tuple, set, frozenset)
_CONTAINERS: Final = (dict, *_ARRAY_LIKE)
_STRING_LIKE: Final = (str, bytes, bytearray)

# How each denial's reason ends: what the caller can do about it.
_FIXES: Final = {
    "max_depth": "send flatter arguments",
    "max_string_length": "send a shorter value",
    "max_items": "send fewer elements",
    "max_total_items": "send smaller arguments",
}

_Walker = Callable[[Any], int]
_Path = tuple[Any, ...] | None  # (parent path, step) pairs; None is `args`


@dataclass(frozen=True, slots=True)
class ArgumentLimits:
    """The bounds a policy sets on a call's arguments; `check` applies them.

    `None` means "no limit" for the four size limits. `non_json` is "deny", "ignore" or
    `None` (not written: "deny" whenever the walk runs for a size limit, and no walk for
    it alone). `max_regex_input` always has a value (default 10,000 characters) and is
    not part of the walk: the regex engine applies it. `pointer` is where the section
    is in the policy document ("/policies/NAME/arguments" in a bundle); the pointers
    that `check` returns start with it.
    """

    max_depth: int | None = None
    max_string_length: int | None = None
    max_items: int | None = None
    max_total_items: int | None = None
    max_regex_input: int = DEFAULT_MAX_REGEX_INPUT
    non_json: Literal["deny", "ignore"] | None = None
    pointer: str = "/arguments"
    _walker: _Walker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_string_length", "max_items", "max_total_items"):
            _check_positive(name, getattr(self, name), optional=True)
        _check_positive("max_regex_input", self.max_regex_input, optional=False)
        if self.non_json not in ("deny", "ignore", None):
            raise ValueError(f"non_json must be 'deny', 'ignore' or None, not {self.non_json!r}")
        object.__setattr__(self, "_walker", _make_walker(self))

    @classmethod
    def from_model(cls, section: Arguments | None, pointer: str = "/arguments") -> ArgumentLimits:
        """The limits of a policy's `arguments` section (`policy.arguments`; None: defaults).

        `pointer` is the section's JSON pointer in the loaded document: "/arguments" for a
        plain policy, "/policies/NAME/arguments" in a bundle.
        """
        if section is None:
            return cls(pointer=pointer)
        return cls(
            max_depth=section.max_depth,
            max_string_length=section.max_string_length,
            max_items=section.max_items,
            max_total_items=section.max_total_items,
            max_regex_input=section.max_regex_input,
            non_json=section.non_json,
            pointer=pointer,
        )

    @property
    def enforced(self) -> bool:
        """True when calls must be walked: a size limit is set, or `non_json` is "deny"."""
        return (
            self.max_depth is not None
            or self.max_string_length is not None
            or self.max_items is not None
            or self.max_total_items is not None
            or self.non_json == "deny"
        )

    @property
    def denies_non_json(self) -> bool:
        """True when the walk denies values that are not JSON (it runs only if `enforced`)."""
        return self.non_json != "ignore"

    def check(self, args: Any) -> tuple[str, str] | None:
        """The first limit `args` breaks, as (pointer of the limit, reason); None if none.

        Never raises for any value, including objects with hostile methods: the walk
        reads types, lengths and the base classes' own iterators, never `__eq__`,
        `__hash__`, `__len__` or `__iter__` of a subclass. Returns None at once when
        the limits are not `enforced`.
        """
        if self._walker(args):
            return self._explain(args)
        return None

    # -- the explanation: the same walk again, with paths --------------------------------

    def _explain(self, args: Any) -> tuple[str, str]:
        deny = self.denies_non_json
        max_depth = _limit(self.max_depth)
        max_string = _limit(self.max_string_length)
        max_items = _limit(self.max_items)
        max_total = _limit(self.max_total_items)
        # The arguments are the one element of a list around them, which does not count.
        level: list[tuple[Any, _Path]] = [([args], _WRAPPER)]
        depth = total = seen = -1
        cycle_checked = False
        while level:
            depth += 1
            if depth > max_depth:
                node, path = level[0]
                return self._at(
                    "max_depth",
                    f"{_render(path)} is {_container_noun(node)} nested {depth:,} levels deep "
                    "(the arguments object is level 1)",
                    self.max_depth,
                )
            seen += len(level)
            if seen > _CYCLE_CHECK_AFTER and not cycle_checked:
                cycle_checked = True
                if _has_cycle(args, deny):
                    return self._cycle()
            following: list[tuple[Any, _Path]] = []
            for node, path in level:
                count = _base_len(node)
                if count > max_items:
                    noun = "members" if issubclass(type(node), dict) else "elements"
                    return self._at(
                        "max_items",
                        f"{_render(path)} is {_container_noun(node)} of {count:,} {noun}",
                        self.max_items,
                        " in one array or object",
                    )
                total += count
                if total > max_total:
                    return self._at(
                        "max_total_items",
                        f"The arguments hold at least {total:,} values (counting every array "
                        f"element and object member at every depth, up to {_render(path)})",
                        self.max_total_items,
                    )
                for key, value, step in _members(node, path):
                    if key is not _NO_KEY:
                        if type(key) is not str:
                            if deny:
                                return self._non_json(
                                    f"{_render(path)} has a key that is {_python_type(key)}, "
                                    "not a string"
                                )
                            if issubclass(type(key), _STRING_LIKE):
                                size = _base_len(key)
                                if size > max_string:
                                    return self._too_long(f"A key of {_render(path)}", key, size)
                        elif len(key) > max_string:
                            return self._too_long(f"A key of {_render(path)}", key, len(key))
                    where = (path, step)
                    kind = type(value)
                    if kind is str:
                        if len(value) > max_string:
                            return self._too_long(_render(where), value, len(value))
                    elif kind is int:
                        if deny and not INT_MIN <= value <= INT_MAX:
                            return self._non_json(
                                f"{_render(where)} is {_big_integer(value)}, outside the signed "
                                "64-bit range (-2**63 to 2**63 - 1) that JSON parsers agree on"
                            )
                    elif kind is dict or kind is list:
                        following.append((value, where))
                    elif kind is float:
                        if deny and not -_INF < value < _INF:
                            name = "NaN" if math.isnan(value) else "an infinity"
                            return self._non_json(
                                f"{_render(where)} is {name}, which JSON cannot hold"
                            )
                    elif kind is bool or value is None:
                        pass
                    elif deny:
                        return self._non_json(
                            f"{_render(where)} is {_python_type(value)}, which is not a JSON value"
                        )
                    elif issubclass(kind, _STRING_LIKE):
                        size = _base_len(value)
                        if size > max_string:
                            return self._too_long(_render(where), value, size)
                    elif issubclass(kind, _CONTAINERS):
                        following.append((value, where))
            level = following
        # The fast walk found a violation that this walk does not: a bug. Deny anyway.
        return (
            self.pointer,
            "The arguments break a limit of this policy's 'arguments' section, so the call "
            "is denied to stay safe.",
        )

    def _at(self, key: str, what: str, limit: int | None, unit: str = "") -> tuple[str, str]:
        return (
            f"{self.pointer}/{key}",
            f"{what}; this policy allows at most {limit:,}{unit} (arguments.{key}), so the "
            f"call is denied; {_FIXES[key]}.",
        )

    def _too_long(self, where: str, value: Any, size: int) -> tuple[str, str]:
        unit = "characters" if issubclass(type(value), str) else "bytes"
        return self._at(
            "max_string_length", f"{where} is {size:,} {unit} long", self.max_string_length
        )

    def _non_json(self, what: str) -> tuple[str, str]:
        written = self.non_json is not None
        return (
            f"{self.pointer}/non_json" if written else self.pointer,
            f"{what}; this policy denies values that are not JSON (arguments.non_json"
            f"{'' if written else ', deny unless set to ignore'}), so the call is denied; "
            "send only JSON values.",
        )

    def _cycle(self) -> tuple[str, str]:
        what = (
            "The arguments contain a Python object that contains itself (a reference cycle), "
            "which no JSON value can"
        )
        if self.denies_non_json:
            return self._non_json(what)
        return (self.pointer, f"{what}; its size has no bound, so the call is denied.")


# -- the fast walk ---------------------------------------------------------------------------


def _make_walker(limits: ArgumentLimits) -> _Walker:  # noqa: PLR0915 - one inlined loop
    """The function that decides whether `args` break a limit (0: no), without paths."""
    if not limits.enforced:
        return _never
    deny = limits.denies_non_json
    max_depth = _limit(limits.max_depth)
    max_string = _limit(limits.max_string_length)
    max_items = _limit(limits.max_items)
    max_total = _limit(limits.max_total_items)
    # Under "ignore" every int passes: make its test always true.
    int_min, int_max = (INT_MIN, INT_MAX) if deny else (-_INF, _INF)
    inf = _INF
    cycle_after = _CYCLE_CHECK_AFTER
    other = _other_value
    other_node = _other_node

    # Builtins are bound as defaults: a local lookup is cheaper than a global one.
    def walk(  # noqa: PLR0915 - one loop, inlined for speed
        args: Any,
        *,
        type: Any = type,
        str: Any = str,
        int: Any = int,
        float: Any = float,
        bool: Any = bool,
        dict: Any = dict,
        list: Any = list,
        len: Any = len,
    ) -> int:
        kind = type(args)
        level: list[Any]
        if kind is dict or kind is list:
            level = [args]
            depth = total = seen = 0
        else:  # judged as the one element of a list around it, which does not count
            level = [[args]]
            depth = total = seen = -1
        cycle_checked = False
        while level:
            depth += 1
            if depth > max_depth:
                return _DEPTH
            seen += len(level)
            if seen > cycle_after and not cycle_checked:
                cycle_checked = True
                if _has_cycle(args, deny):
                    return _CYCLE
            following: list[Any] = []
            push = following.append
            for node in level:
                if type(node) is dict:
                    count = len(node)
                    if count > max_items:
                        return _ITEMS
                    total += count
                    if total > max_total:
                        return _TOTAL
                    for key, value in node.items():
                        if type(key) is not str:
                            if deny:
                                return _NON_JSON
                            if issubclass(type(key), _STRING_LIKE) and _base_len(key) > max_string:
                                return _STRING
                        elif len(key) > max_string:
                            return _STRING
                        kind = type(value)
                        if kind is str:
                            if len(value) > max_string:
                                return _STRING
                        elif kind is int:
                            if not int_min <= value <= int_max:
                                return _NON_JSON
                        elif kind is dict or kind is list:
                            push(value)
                        elif kind is float:
                            if deny and not -inf < value < inf:
                                return _NON_JSON
                        elif kind is bool or value is None:
                            pass
                        elif deny:
                            return _NON_JSON
                        elif other(value, max_string, push):
                            return _STRING
                elif type(node) is list:
                    count = len(node)
                    if count > max_items:
                        return _ITEMS
                    total += count
                    if total > max_total:
                        return _TOTAL
                    for value in node:
                        kind = type(value)
                        if kind is str:
                            if len(value) > max_string:
                                return _STRING
                        elif kind is int:
                            if not int_min <= value <= int_max:
                                return _NON_JSON
                        elif kind is dict or kind is list:
                            push(value)
                        elif kind is float:
                            if deny and not -inf < value < inf:
                                return _NON_JSON
                        elif kind is bool or value is None:
                            pass
                        elif deny:
                            return _NON_JSON
                        elif other(value, max_string, push):
                            return _STRING
                else:  # "ignore" only: a subclass of dict or list, a tuple or a set
                    count = _base_len(node)
                    if count > max_items:
                        return _ITEMS
                    total += count
                    if total > max_total:
                        return _TOTAL
                    found = other_node(node, max_string, push)
                    if found:
                        return found
            level = following
        return _OK

    return walk


def _never(args: Any) -> int:
    return _OK


def _other_value(value: Any, max_string: int, push: Callable[[Any], None]) -> bool:
    """Under "ignore": measure a value that is not exactly a JSON type; True if too long."""
    kind = type(value)
    if issubclass(kind, _STRING_LIKE):
        return _base_len(value) > max_string
    if issubclass(kind, _CONTAINERS):
        push(value)
    return False


def _other_node(node: Any, max_string: int, push: Callable[[Any], None]) -> int:
    """Under "ignore": walk the members of a container that is not exactly a dict or list."""
    for key, value, _ in _members(node, None):
        if (
            key is not _NO_KEY
            and issubclass(type(key), _STRING_LIKE)
            and _base_len(key) > max_string
        ):
            return _STRING
        kind = type(value)
        if kind is str:
            if len(value) > max_string:
                return _STRING
        elif kind is dict or kind is list:
            push(value)
        elif (
            kind not in (int, float, bool)
            and value is not None
            and _other_value(value, max_string, push)
        ):
            return _STRING
    return _OK


# -- helpers shared by both walks ------------------------------------------------------------


def _limit(value: int | None) -> int:
    return _NO_LIMIT if value is None else value


def _check_positive(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _base_len(value: Any) -> int:
    """The length of a string, bytes or container through its base class (never `__len__`)."""
    kind = type(value)
    for base in (str, dict, list, tuple, set, frozenset, bytes, bytearray):
        if issubclass(kind, base):
            return int(base.__len__(value))
    return 0


class _NoKey:
    __slots__ = ()


_NO_KEY: Final = _NoKey()  # the "key" of an array element
_WRAPPER: Final[_Path] = ("wrapper",)  # the path of the list that holds the arguments


def _members(node: Any, path: _Path) -> Iterator[tuple[Any, Any, Any]]:
    """(key or _NO_KEY, value, path step) of each member, through the base class's iterator."""
    if path is _WRAPPER:
        yield _NO_KEY, list.__getitem__(node, 0), _ROOT
    elif issubclass(type(node), dict):
        for key, value in dict.items(node):
            yield key, value, _Key(key)
    else:
        base = next(b for b in _ARRAY_LIKE if issubclass(type(node), b))
        iterator: Iterable[Any] = base.__iter__(node)
        for index, value in enumerate(iterator):
            yield _NO_KEY, value, index


def _children(node: Any, deny: bool) -> Iterator[Any]:
    """The containers directly inside `node` that the walk would descend into."""
    for _, value, _ in _members(node, None):
        kind = type(value)
        if kind is dict or kind is list or (not deny and issubclass(kind, _CONTAINERS)):
            yield value


def _has_cycle(root: Any, deny: bool) -> bool:
    """True when a container of `root` contains itself; linear in the distinct containers."""
    if not issubclass(type(root), _CONTAINERS):
        return False
    active, done = 1, 2
    state: dict[int, int] = {id(root): active}
    stack: list[tuple[Any, Iterator[Any]]] = [(root, _children(root, deny))]
    while stack:
        node, children = stack[-1]
        for child in children:
            mark = state.get(id(child))
            if mark == active:
                return True
            if mark is None:
                state[id(child)] = active
                stack.append((child, _children(child, deny)))
                break
        else:
            state[id(node)] = done
            stack.pop()
    return False


# -- wording -----------------------------------------------------------------------------------


class _Key:
    """A path step that is an object key (an int step is an array index)."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


_ROOT: Final = "args"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN_STEPS = 12  # a longer path shows its first and last steps
_SHOWN_KEY = 40  # a longer key is cut


def _render(path: _Path) -> str:
    """`args.tasks[3].title`: where a value is, for a reason (long paths are shortened)."""
    steps: list[Any] = []
    while path is not None and path is not _WRAPPER:
        parent, step = path
        if step is _ROOT:
            break
        steps.append(step)
        path = parent
    steps.reverse()
    if len(steps) > _SHOWN_STEPS:
        head, tail = steps[: _SHOWN_STEPS // 2], steps[-(_SHOWN_STEPS // 2) :]
        middle = len(steps) - len(head) - len(tail)
        return (
            "args"
            + "".join(map(_step_text, head))
            + f"…({middle:,} more steps)…"
            + "".join(map(_step_text, tail))
        )
    return "args" + "".join(map(_step_text, steps))


def _step_text(step: Any) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    key = step.key
    if type(key) is str:
        if _IDENTIFIER.fullmatch(key):
            return f".{key}" if len(key) <= _SHOWN_KEY else f".{key[:_SHOWN_KEY]}…"
        shown = key if len(key) <= _SHOWN_KEY else key[:_SHOWN_KEY] + "…"
        return "[" + _quote(shown) + "]"
    return f"[{_python_type(key)}]"


def _quote(text: str) -> str:
    """A JSON string literal, with every character that does not print escaped."""
    return (
        '"'
        + "".join(c if c.isprintable() and c not in '"\\' else json.dumps(c)[1:-1] for c in text)
        + '"'
    )


def _big_integer(value: int) -> str:
    """'an integer of 19 digits', or 'an integer of about 10,001 digits'.

    Never the value itself: reasons go to the audit log, which must not hold argument
    values, and the digits say all the caller needs to fix the call.
    """
    bits = value.bit_length()
    if bits <= 128:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"an integer of about {int(bits * math.log10(2)) + 1:,} digits"


def _container_noun(node: Any) -> str:
    if type(node) is dict:
        return "an object"
    if type(node) is list:
        return "an array"
    return _python_type(node)
