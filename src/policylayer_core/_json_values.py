"""How the engine reads a caller's value: by its exact type, never through its methods.

A caller's value is JSON only when `type(value)` is exactly `dict`, `list`, `str`, `int`,
`float` or `bool`, or the value is `None`. Every place that reads a caller's value (a
condition's operator, a path step, a cost, JSON equality and membership) tests that
with `type(value) is T`: not `isinstance` or `x.__class__`, which believe a `__class__`
property, and not `type(value) in {...}`, which would call a metaclass's `__eq__`.

Anything else (a subclass of a JSON type, a tuple, a set, bytes, an object that claims
another class) is *not JSON*: a condition that reads it is indeterminate, so the call
is denied at that condition. It is never converted: a subclass can redefine what its
`len()`, `iter()`, `get`, `[]`, `==` and `>` answer, and the tool may read it through
those methods (`json.dumps` reads a dict subclass through its `items()`), so neither
its storage nor its methods are known to be what the tool receives. Denying is the one
verdict that is right for both. The one conversion is of the arguments object itself
(`ToolProgram.run`): a `dict` subclass handed over as the whole arguments is judged by a
plain dict made from `dict.items` (its storage), the documented behaviour for
integrations that pass their own mapping type.

The wording helpers here read a type's name through `type`'s own descriptor, so that
describing a hostile value cannot call any of its code either.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["describe_type", "python_type", "type_name"]

_NAME = type.__dict__["__name__"]


def type_name(kind: type) -> str:
    """The class's own name, read through `type`'s descriptor (a metaclass cannot intercept it)."""
    return str(_NAME.__get__(kind, type))


def python_type(value: Any) -> str:
    """'a Python tuple', 'a Python Evil (a subclass of str)': never calls the value's methods."""
    kind = type(value)
    name = type_name(kind)
    for base in (bool, int, float, str, list, dict):
        if issubclass(kind, base) and kind is not base:
            return f"a Python {name} (a subclass of {type_name(base)})"
    return f"a Python {name}"


def describe_type(value: Any) -> str:
    """How a reason names what was found: 'a string', 'null', 'NaN', 'a Python set, which
    is not a JSON value'. Exact types only, like every reading of a caller's value."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "a boolean"
    if kind is float:
        return "NaN" if math.isnan(value) else "a number"
    if kind is int:
        return "a number"
    if kind is str:
        return "a string"
    if kind is list:
        return "an array"
    if kind is dict:
        return "an object"
    return f"{python_type(value)}, which is not a JSON value"
