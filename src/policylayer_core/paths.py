"""Condition paths: `args.tasks.*.title`, `identity`, `session`, `tool`.

A path is parsed once at load time into its root and steps; `resolve` walks the
arguments for `conditions.py`. Steps are separated by dots, so an argument whose
name contains a dot cannot be addressed (documented in docs/policy-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MISSING",
    "ROOTS",
    "NotJSON",
    "ParsedPath",
    "PathSyntaxError",
    "ShapeMismatch",
    "parse_path",
    "resolve",
]

ROOTS: Final = ("args", "identity", "session", "tool")


class _Missing:
    """The value at a path that does not resolve."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class PathSyntaxError(ValueError):
    """A path in the policy is not well formed; the message says how to write it."""


class ShapeMismatch(Exception):  # noqa: N818 - a verdict, not an error: the argument has another shape
    """A step met a value it cannot step into (a key of a string, `*` over an object).

    The argument is present but shaped differently from what the policy expects,
    which the format treats like any other type confusion: indeterminate, deny.
    """

    def __init__(self, where: str, found: Any, needed: str) -> None:
        super().__init__(where)
        self.where = where
        self.found = found
        self.needed = needed


class NotJSON(ShapeMismatch):
    """A step met a value that is not JSON: a subclass of dict or list, an object that
    claims another class, a tuple. Its own methods could answer anything (`get`, `len`,
    `iter`), so it is not stepped into; unlike a plain ShapeMismatch this is
    indeterminate even for `exists` (see `_json_values`)."""

    def __init__(self, where: str, found: Any) -> None:
        super().__init__(where, found, "a JSON value")


@dataclass(frozen=True, slots=True)
class ParsedPath:
    """`root` is one of ROOTS; `steps` are keys, array indexes (kept as text) or "*"."""

    text: str
    root: str
    steps: tuple[str, ...]


def parse_path(text: str) -> ParsedPath:
    """Parse a condition or cost path; raise PathSyntaxError with a fix-it message."""
    parts = text.split(".")
    root, steps = parts[0], tuple(parts[1:])
    if root not in ROOTS:
        raise PathSyntaxError(
            f"The path {text!r} must start with 'args' (then '.key' steps), or be "
            "'identity', 'session' or 'tool'."
        )
    if steps and root != "args":
        raise PathSyntaxError(
            f"The path {text!r} steps into '{root}', which is a string; only 'args' has steps."
        )
    if any(step == "" for step in steps):
        raise PathSyntaxError(
            f"The path {text!r} has an empty step; write steps as 'args.key.0.name' "
            "with one dot between steps."
        )
    return ParsedPath(text, root, steps)


def is_index(step: str) -> bool:
    """A decimal step (ASCII digits only) indexes an array."""
    return step.isascii() and step.isdigit()


def resolve(value: Any, steps: tuple[str, ...], start: int, where: str, out: list[Any]) -> None:
    """Append to `out` every value that `steps[start:]` reaches from `value`.

    Nothing is appended for a key or index that is absent (the path does not
    resolve there). `*` fans out over an array's elements. A step into a JSON value
    that cannot be stepped into raises ShapeMismatch; a step into a value that is not
    JSON raises NotJSON. Only exact `dict` and `list` are stepped into, through their
    own methods (a subclass's `get`, `len` or `iter` is never called).
    """
    for i in range(start, len(steps)):
        step = steps[i]
        kind = type(value)
        if kind is dict:
            if step == "*":
                raise ShapeMismatch(where, value, "an array for '*'")
            value = value.get(step, MISSING)
            if value is MISSING:
                return
        elif kind is list:
            if step == "*":
                for element in value:
                    resolve(element, steps, i + 1, where, out)
                return
            if not is_index(step):
                raise ShapeMismatch(where, value, f"an object with the key '{step}'")
            index = int(step)
            if index >= len(value):
                return
            value = value[index]
        elif kind is str or kind is int or kind is float or kind is bool or value is None:
            needed = "an array for '*'" if step == "*" else f"an object or array to read '{step}'"
            raise ShapeMismatch(where, value, needed)
        else:
            raise NotJSON(where, value)
    out.append(value)
