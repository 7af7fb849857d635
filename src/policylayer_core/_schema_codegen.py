"""Translate a JSON Schema into the source of plain Python functions (see `validators`).

The generator walks the schema once and writes straight-line code per schema object:
subschemas reached through `properties`, `items`, `allOf`, ... are inlined, so validating
a typical tool call is a handful of exact type tests and dict lookups with no
function calls. Only `$ref` targets and the branches of `anyOf`/`oneOf`/`not` (whose
verdict is needed without failing the caller) become functions of their own, which is
also what makes recursive references work. Where a recursion can judge one part of the
value twice on a level (two branches, a `$ref` beside `properties`), which would double
the work on every level of the instance, its functions keep their verdicts for the call
(`_Generator.recursive`); other schemas are written without that memo.

Every check mirrors the jsonschema keyword function it replaces (`jsonschema._keywords`),
including the message it would build. A schema object the generator cannot translate
exactly raises `_NodeFallback` and is handed, as a whole, to a jsonschema validator.

Regexes (`pattern`, `patternProperties` and the extras of `additionalProperties`) run on
`safe_regex` matchers: the verdict of `re.search` within `RegexLimits`, and otherwise a
violation that says the string could not be checked safely.

Caller values are judged by their exact type (`type(v) is list`), never through their own
methods or `isinstance` (which believes a `__class__` property): a value whose type is not
exactly a JSON type, met by a check, makes the whole instance invalid with a violation that
says so (`_schema_runtime.not_json`). The test for that runs only where a value's exact
type tests have failed, so a value of the right type pays nothing for it.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from policylayer_core._schema_runtime import HELPERS
from policylayer_core.safe_regex import DEFAULT_REGEX_LIMITS, RegexLimits, compile_search

if TYPE_CHECKING:
    from policylayer_core.validators import ArgumentValidator, SchemaViolation

__all__ = ["Dialect", "WholeSchemaFallback", "generate"]


class WholeSchemaFallback(Exception):  # noqa: N818 - a signal, not an error
    """The schema cannot be compiled piecewise; validate all of it with jsonschema."""


class _NodeFallback(Exception):  # noqa: N818 - a signal, not an error
    """This schema object cannot be compiled exactly; validate it with jsonschema."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the generator needs to know about a draft."""

    keywords: frozenset[str]  # every keyword the draft's jsonschema validator acts on
    legacy_items: bool  # draft-07/2019-09: `items` may be an array, with `additionalItems`
    ref_overrides_siblings: bool  # draft-07: keywords next to `$ref` are ignored

    @property
    def compiled(self) -> frozenset[str]:
        return _COMMON_KEYWORDS | (_LEGACY_ITEMS if self.legacy_items else _PREFIX_ITEMS)


_COMMON_KEYWORDS = frozenset(
    {
        "$ref", "type", "enum", "const", "allOf", "anyOf", "oneOf", "not",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "items",
        "required", "minProperties", "maxProperties", "properties", "patternProperties",
        "additionalProperties",
    }
)  # fmt: skip
_LEGACY_ITEMS = frozenset({"additionalItems"})
_PREFIX_ITEMS = frozenset({"prefixItems"})
# `format` only asserts with a format checker, and callers get jsonschema's default: none.
_NO_OP_KEYWORDS = frozenset({"format"})
# Keywords a jsonschema keyword function reads next to the one it is registered under.
_COMPANIONS = {"if": ("then", "else"), "contains": ("minContains", "maxContains")}

# jsonschema's draft-06+ type checker on JSON values, by exact type: a subclass or an object
# whose `__class__` property claims a type is not JSON (`_json_values`), and is refused
# where a test fails (`_Generator._refuse_foreign`), never judged as the type it claims.
_TYPE_TESTS = {
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "string": "type({v}) is str",
    "null": "{v} is None",
    "boolean": "({v} is True or {v} is False)",
    "number": "(type({v}) is int or type({v}) is float)",
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
}
# The exact JSON types, as tests (identity tests first: they cost least); and the types a
# failed `type` test has ruled out.
_EXACT_TESTS = {
    "null": "{v} is None",
    "bool": "{v} is True or {v} is False",
    "str": "type({v}) is str",
    "int": "type({v}) is int",
    "float": "type({v}) is float",
    "dict": "type({v}) is dict",
    "list": "type({v}) is list",
}
_TESTED = {
    "object": ("dict",),
    "array": ("list",),
    "string": ("str",),
    "null": ("null",),
    "boolean": ("bool",),
    "number": ("int", "float"),
    "integer": ("int",),
}
# The keywords of each group, and the base types whose subclasses claim the group.
_GROUP_KEYWORDS = {
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "string": ("minLength", "maxLength", "pattern"),
    "array": ("minItems", "maxItems", "uniqueItems", "items", "prefixItems", "additionalItems"),
    "object": (
        "required", "minProperties", "maxProperties", "properties", "patternProperties",
        "additionalProperties",
    ),
}  # fmt: skip
_GROUP_BASES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "array": (list,),
    "object": (dict,),
}
# The instance types a group of keywords applies to (jsonschema skips other types).
_GROUP_TYPES = {
    "number": frozenset({"number", "integer"}),
    "string": frozenset({"string"}),
    "array": frozenset({"array"}),
    "object": frozenset({"object"}),
}
_NUMBER_BOUNDS = (
    ("minimum", "<", "is less than the minimum of"),
    ("maximum", ">", "is greater than the maximum of"),
    ("exclusiveMinimum", "<=", "is less than or equal to the minimum of"),
    ("exclusiveMaximum", ">=", "is greater than or equal to the maximum of"),
)
# Beyond this indentation a subschema becomes its own function: CPython refuses more than
# 20 nested loops in one function, and deep nesting would also recurse deeply here.
_MAX_INLINE_DEPTH = 12

Known = frozenset[str] | None  # the JSON types the instance can still have; None: any


def generate(
    schema: dict[str, Any] | bool,
    dialect: Dialect,
    *,
    violation: type[SchemaViolation],
    node_fallback: Callable[[dict[str, Any]], ArgumentValidator],
    regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS,
) -> ArgumentValidator:
    """Compile `schema`; `node_fallback` builds a jsonschema check for one schema object."""
    generator = _Generator(schema, dialect, violation, node_fallback, regex_limits)
    sources = generator.sources()
    recursive = generator.recursive()
    if recursive:
        # Written again, now that it is known which functions recurse: each keeps its
        # verdicts for the call (see `_Generator.sources`).
        generator = _Generator(
            schema, dialect, violation, node_fallback, regex_limits, memoized=recursive
        )
        sources = generator.sources()
    return generator.load(sources)


class _Generator:
    def __init__(
        self,
        root: dict[str, Any] | bool,
        dialect: Dialect,
        violation: type[SchemaViolation],
        node_fallback: Callable[[dict[str, Any]], ArgumentValidator],
        regex_limits: RegexLimits,
        *,
        memoized: frozenset[int] = frozenset(),
    ) -> None:
        self._root = root
        self._regex_limits = regex_limits
        self._dialect = dialect
        self._compiled = dialect.compiled
        self._node_fallback = node_fallback
        # `type` is a global of the generated code: found at once, not after a miss in globals.
        self._namespace: dict[str, Any] = {"_V": violation, "type": type, **HELPERS}
        self._functions: dict[int, str] = {}
        self._pending: list[tuple[str, dict[str, Any] | bool]] = []
        self._lines: list[str] = []
        self._ids = itertools.count()
        # The schema objects (by id) whose functions keep their verdicts for the call, each
        # in its own dict of the tuple `_m` passed to every function.
        self._memoized = memoized
        self._memo_slots: dict[int, int] = {}
        self._writing: str | None = None  # the function being written
        self._generated: set[str] = set()  # the names of generated functions
        # function -> its calls of generated functions: (where in its value, the callee)
        self._calls: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self._entry = ""

    def sources(self) -> list[str]:
        """The source of every function; the validator's entry point is `self._entry`.

        The entry point is the root schema's checks, written inline (the root gets a
        function of its own only when a `$ref` leads back to it) inside the one `try`
        that turns a refusal into the violation: a refusal (a regex that cannot judge a
        string, a value that is not JSON) is raised through every check, so that no
        `not`, `anyOf` or `oneOf` can turn it into a pass. A `try` costs nothing until
        something is raised, so the common call pays for neither.
        """
        self._writing = "_entry"
        self._calls["_entry"] = []
        self._lines = []
        self._node(self._root, "x", (), None, 2)
        entry_body = self._lines
        sources = []
        while self._pending:
            name, node = self._pending.pop()
            self._writing = name
            self._calls[name] = []
            body = f"{name}_body" if id(node) in self._memo_slots else name
            self._lines = [f"def {body}(x, _m):" if self._memoized else f"def {body}(x):"]
            self._node(node, "x", (), None, 1)
            self._lines.append("    return None")
            sources.append("\n".join(self._lines))
            if body != name:
                # Recursion that descends is bounded by the instance's depth, but a level
                # whose anyOf/oneOf branches each descend into the same part of the value
                # would judge it once per branch, and so on at every level: time
                # exponential in the depth. Each (function, part of the value) pair is
                # judged once per call instead. The key is the part's id(): every part
                # lives as long as the instance, so no id is reused during the call.
                slot = self._memo_slots[id(node)]
                sources.append(
                    f"def {name}(x, _m):\n    _d = _m[{slot}]\n    _k = id(x)\n"
                    f"    if _k in _d:\n        return _d[_k]\n    _r = _d[_k] = {body}(x, _m)\n"
                    "    return _r"
                )
        self._writing = None
        lines = ["def _entry(x):"]
        if self._memoized:
            lines.append(f"    _m = ({'{}, ' * len(self._memo_slots)})")
        lines += ["    try:", *entry_body, "        return None"]
        lines += ["    except _Abort as _a:", "        return _a.violation"]
        sources.append("\n".join(lines))
        self._entry = "_entry"
        return sources

    def recursive(self) -> frozenset[int]:
        """The schema objects (ids) whose functions must keep their verdicts, after `sources`.

        Those of a recursion (functions that call one another in a cycle) in which some
        function calls into the cycle from two places that may reach the same part of the
        value: two calls on the value itself (anyOf branches, a `$ref` beside other
        keywords), or on parts that may be the same or hold one another (a `$ref` beside
        `properties`, two patterns that may match one key). Only then can one part be
        judged by the same function twice on a level, and so 2**depth times. Recursions
        whose calls go to distinct parts (a tree's `items`, a binary tree's `left` and
        `right`) judge each part once and run without the memo, which costs about twice
        the time of the calls it keeps.
        """
        names = {name: key for key, name in self._functions.items()}
        graph = {name: [callee for _, callee in sites] for name, sites in self._calls.items()}
        found: set[int] = set()
        for cycle in _cycles(graph):
            for name in cycle:
                sites = [where for where, callee in self._calls[name] if callee in cycle]
                if any(
                    _may_overlap(one, other)
                    for index, one in enumerate(sites)
                    for other in sites[index + 1 :]
                ):
                    found.update(names[member] for member in cycle)
                    break
        return frozenset(found)

    def load(self, sources: list[str]) -> ArgumentValidator:
        code = compile("\n\n".join(sources), "<policylayer compiled schema>", "exec")
        exec(code, self._namespace)
        function: ArgumentValidator = self._namespace[self._entry]
        return function

    # -- emission helpers ---------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def _const(self, value: Any) -> str:
        name = self._name("_k")
        self._namespace[name] = value
        return name

    def _literal(self, value: Any) -> str:
        """Source for `value`: a literal when exact, else a named constant."""
        kind = value.__class__
        if (
            kind is str
            or (kind is int and abs(value) < 2**63)
            or (kind is float and math.isfinite(value))
        ):
            return repr(value)
        return self._const(value)

    def _function(self, node: Any) -> str:
        """The name of the generated function validating `node` (written later)."""
        if not isinstance(node, dict | bool):
            raise _NodeFallback
        name = self._functions.get(id(node))
        if name is None:
            name = self._functions[id(node)] = self._name("_s")
            self._generated.add(name)
            self._pending.append((name, node))
            if id(node) in self._memoized:
                self._memo_slots[id(node)] = len(self._memo_slots)
        return name

    def _invoke(self, function: str, v: str, path: tuple[str, ...]) -> str:
        """The call of a check on `v` (at `path` in the value of the function being
        written): generated functions also take the call's memo."""
        if self._writing is not None and function in self._generated:
            self._calls[self._writing].append((path, function))
        if self._memoized and function in self._generated:
            return f"{function}({v}, _m)"
        return f"{function}({v})"

    def _emit(self, depth: int, line: str) -> None:
        self._lines.append("    " * depth + line)

    def _fail(self, depth: int, path: tuple[str, ...], keyword: str, message: str) -> None:
        self._emit(depth, f"return _V({_where(path)}, {keyword!r}, {message})")

    def _refuse_foreign(
        self,
        depth: int,
        v: str,
        path: tuple[str, ...],
        keyword: str,
        ruled_out: tuple[str, ...] = (),
    ) -> None:
        """Emit the refusal of `v` when it is not JSON, on a path where a test of its type
        has failed (so a value of the right type never runs it). `ruled_out`: the exact
        types (`_EXACT_TESTS` keys) that failed test has excluded already."""
        tests = [test.format(v=v) for key, test in _EXACT_TESTS.items() if key not in ruled_out]
        self._emit(depth, f"if not ({' or '.join(tests)}):")
        self._emit(depth + 1, f"raise _not_json({_where(path)}, {keyword!r}, {v})")

    def _check(
        self, depth: int, failed: str, path: tuple[str, ...], keyword: str, message: str
    ) -> None:
        self._emit(depth, f"if {failed}:")
        self._fail(depth + 1, path, keyword, message)

    def _guard(self, depth: int, path: tuple[str, ...], body: Callable[[int], None]) -> None:
        """Emit `body`, which calls other checks, so that a refusal they raise gets `path`."""
        if not path:
            body(depth)
            return
        self._emit(depth, "try:")
        body(depth + 1)
        self._emit(depth, "except _Abort as _a:")
        self._emit(depth + 1, f"raise _a.within(({', '.join(path)},)) from None")

    def _call(self, function: str, v: str, path: tuple[str, ...], depth: int) -> None:
        """Run a function-valued check; its violation's path is relative to `v`."""
        call = self._invoke(function, v, path)
        self._guard(depth, path, lambda at: self._emit(at, f"_e = {call}"))
        self._emit(depth, "if _e is not None:")
        if path:
            self._emit(depth + 1, f"return _prefixed(_e, ({', '.join(path)},))")
        else:
            self._emit(depth + 1, "return _e")

    def _regex(self, pattern: Any) -> str:
        """The name of a bounded matcher for `pattern` (see `safe_regex`)."""
        if not isinstance(pattern, str):
            raise _NodeFallback
        try:
            with warnings.catch_warnings():  # the loader has judged the pattern already
                warnings.simplefilter("ignore")
                re.compile(pattern)
        except re.error:
            raise _NodeFallback from None  # jsonschema raises the same error when it gets there
        return self._const(compile_search(pattern, self._regex_limits))

    def _fallback(self, node: dict[str, Any]) -> str:
        """The name of a jsonschema check for `node` (its regexes are bounded too)."""
        return self._const(self._node_fallback(node))

    def _search(
        self, matcher: str, text: str, path: tuple[str, ...], keyword: str, pattern: str
    ) -> list[str]:
        """Lines that set `_h` to the verdict of `matcher` on `text`, or raise the refusal
        (`_schema_runtime.Refusal`); indented relative to where they are emitted."""
        subject = "the string" if keyword == "pattern" else "a property name"
        where = f"({', '.join(path)},)" if path else "()"
        message = f"_refused_message(_r, {subject!r}, {pattern!r})"
        return [
            "try:",
            f"    _h = {matcher}({text})",
            "except _Refused as _r:",
            f"    raise _Abort(_V({where}, {keyword!r}, {message})) from None",
        ]

    def _string_key(self, key: str, path: tuple[str, ...], keyword: str) -> list[str]:
        """Lines that refuse `key` (of the object at `path`) unless it is exactly a str:
        a key's own `__hash__`, `__eq__` or `__len__` must not answer the schema's checks."""
        return [
            f"if type({key}) is not str:",
            f"    raise _not_json({_where(path)}, {keyword!r}, {key}, 'key')",
        ]

    def _block(self, depth: int, header: list[str], body: Callable[[], None]) -> None:
        """Emit `header` + `body`, or nothing when the body turns out empty."""
        start = len(self._lines)
        for line in header:
            self._emit(depth, line)
        mark = len(self._lines)
        body()
        if len(self._lines) == mark:
            del self._lines[start:]

    # -- schema objects -----------------------------------------------------------------

    def _node(self, node: Any, v: str, path: tuple[str, ...], known: Known, depth: int) -> None:
        if node is True:
            return
        if node is False:
            self._fail(depth, path, "false", f"'False schema does not allow ' + _safe_repr({v})")
            return
        if not isinstance(node, dict):
            raise _NodeFallback
        if depth > _MAX_INLINE_DEPTH:
            self._call(self._function(node), v, path, depth)
            return
        start = len(self._lines)
        try:
            self._keywords(node, v, path, known, depth)
        except (_NodeFallback, ValueError):
            # ValueError: repr() of an int beyond Python's digit limit, for a message.
            del self._lines[start:]
            self._call(self._fallback(node), v, path, depth)

    def _keywords(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], known: Known, depth: int
    ) -> None:
        if self._dialect.ref_overrides_siblings and node.get("$ref") is not None:
            self._ref(node["$ref"], v, path, depth)
            return
        foreign = {
            key
            for key in node
            if key in self._dialect.keywords
            and key not in self._compiled
            and key not in _NO_OP_KEYWORDS
        }
        # unevaluatedProperties/Items read the annotations of every sibling keyword and of
        # the in-place subschemas below them, so their whole schema object goes to
        # jsonschema. Nothing above it is affected: jsonschema only ever looks downwards
        # from the object carrying the keyword, so ancestors just use its verdict.
        if any(key.startswith("unevaluated") for key in foreign):
            raise _NodeFallback
        if "type" in node:
            known = self._type(node["type"], v, path, known, depth)
        if "enum" in node:
            self._enum(node["enum"], v, path, depth)
        if "const" in node:
            self._const_keyword(node["const"], v, path, depth)
        if "$ref" in node:
            self._ref(node["$ref"], v, path, depth)
        self._applicators(node, v, path, known, depth)
        self._groups(node, v, path, known, depth)
        if foreign:
            # Keywords outside the compiled set are independent of the compiled ones, so
            # only they (with the siblings their jsonschema function reads) go to jsonschema.
            wanted = foreign.union(*(_COMPANIONS.get(key, ()) for key in foreign))
            rest = {key: value for key, value in node.items() if key in wanted}
            self._call(self._fallback(rest), v, path, depth)

    def _groups(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], known: Known, depth: int
    ) -> None:
        """The keywords that apply to one type of instance each (jsonschema skips other
        types), as one chain of exact type tests: a value of a JSON type runs one branch,
        or none; a value that is not JSON runs the refusal at the chain's end, and only it
        pays for that test."""
        branches: list[tuple[str, list[str]]] = []
        for group, emit in (
            ("number", self._number_keywords),
            ("string", self._string_keywords),
            ("array", self._array_keywords),
            ("object", self._object_keywords),
        ):
            types = _GROUP_TYPES[group]
            if known is not None and not known & types:
                continue  # the `type` check above already rejects every such instance
            if known is not None and known <= types:
                emit(node, v, path, depth)  # no need to test the type again
                continue
            start = len(self._lines)
            emit(node, v, path, depth + 1)
            if len(self._lines) > start:
                branches.append((group, self._lines[start:]))
                del self._lines[start:]
        for index, (group, body) in enumerate(branches):
            self._emit(depth, f"{'elif' if index else 'if'} {_TYPE_TESTS[group].format(v=v)}:")
            self._lines.extend(body)
        if branches and known is None:
            # Not tested yet (a `type` keyword refuses it itself): a value of no JSON type.
            keywords = self._const(
                tuple(
                    (base, next((key for key in node if key in _GROUP_KEYWORDS[group]), group))
                    for group, _ in branches
                    for base in _GROUP_BASES[group]
                )
            )
            ruled_out = tuple(key for group, _ in branches for key in _TESTED[group])
            tests = [t.format(v=v) for key, t in _EXACT_TESTS.items() if key not in ruled_out]
            self._emit(depth, f"elif not ({' or '.join(tests)}):")
            self._emit(depth + 1, f"raise _foreign({v}, {_where(path)}, {keywords})")

    def _type(self, types: Any, v: str, path: tuple[str, ...], known: Known, depth: int) -> Known:
        names = [types] if isinstance(types, str) else types
        if not isinstance(names, list) or not all(name in _TYPE_TESTS for name in names):
            raise _NodeFallback
        allowed = frozenset(names) | ({"integer"} if "number" in names else set())
        if known is not None and known <= allowed:
            return known
        test = " or ".join(_TYPE_TESTS[name].format(v=v) for name in names) or "False"
        suffix = " is not of type " + ", ".join(repr(name) for name in names)
        self._emit(depth, f"if not ({test}):")
        if known is None:
            ruled_out = tuple(key for name in names for key in _TESTED[name])
            self._refuse_foreign(depth + 1, v, path, "type", ruled_out)
        self._fail(depth + 1, path, "type", f"{_shown(v)} + {suffix!r}")
        return allowed if known is None else known & allowed

    def _enum(self, members: Any, v: str, path: tuple[str, ...], depth: int) -> None:
        if not isinstance(members, list):
            raise _NodeFallback
        values = self._const(members)
        message = f"{_shown(v)} + {f' is not one of {members!r}'!r}"
        # Refuses an instance that is not JSON, all the way down: equality reads all of it.
        general = f"_enum_has({values}, {v}, {_where(path)})"
        # For an exact str/int/float instance, jsonschema's `equal` agrees with hashing
        # (bools and containers never equal it), unless a member is of some other class.
        if all(member.__class__ in _PLAIN_JSON for member in members):
            fast = self._const(frozenset(m for m in members if m.__class__ in _HASHABLE_JSON))
            exact = f"(type({v}) is str or type({v}) is int or type({v}) is float)"
            self._check(
                depth, f"not ({v} in {fast} if {exact} else {general})", path, "enum", message
            )
        else:
            self._check(depth, f"not {general}", path, "enum", message)

    def _const_keyword(self, value: Any, v: str, path: tuple[str, ...], depth: int) -> None:
        message = repr(f"{value!r} was expected")
        kind = value.__class__
        if kind is str:  # jsonschema's `equal` is plain `==` when one side is str
            equal = f"type({v}) is str and {v} == {value!r}"
        elif value is None or kind is bool:  # equal only to themselves (True != 1)
            equal = f"{v} is {value!r}"
        elif kind is int or (kind is float and not math.isnan(value)):
            # jsonschema's `equal` of two numbers: 1 == 1.0, bools excluded by exact types.
            equal = f"(type({v}) is int or type({v}) is float) and {v} == {self._literal(value)}"
        else:
            # Arrays, objects, NaN (equal only to the very object): jsonschema's `equal`,
            # on an instance that is JSON all the way down (else refused, at its place).
            equal = f"_const_equal({v}, {self._const(value)}, {_where(path)})"
            self._check(depth, f"not {equal}", path, "const", message)
            return
        self._emit(depth, f"if not ({equal}):")
        self._refuse_foreign(depth + 1, v, path, "const")
        self._fail(depth + 1, path, "const", message)

    def _ref(self, ref: Any, v: str, path: tuple[str, ...], depth: int) -> None:
        if not isinstance(ref, str):
            raise _NodeFallback
        target = self._resolve(ref)
        if target is not True:
            self._call(self._function(target), v, path, depth)

    def _resolve(self, ref: str) -> Any:
        """Follow a same-document JSON pointer the way `referencing` does."""
        if ref != "#" and not ref.startswith("#/"):
            raise WholeSchemaFallback
        target: Any = self._root
        try:
            for segment in unquote(ref[2:]).split("/") if ref != "#" else ():
                if isinstance(target, Sequence):
                    target = target[int(segment)]
                else:
                    target = target[segment.replace("~1", "/").replace("~0", "~")]
        except (LookupError, TypeError, ValueError):
            raise WholeSchemaFallback from None  # jsonschema fails on it when reached
        if not isinstance(target, dict | bool):
            raise WholeSchemaFallback
        return target

    def _applicators(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], known: Known, depth: int
    ) -> None:
        for key in ("allOf", "anyOf", "oneOf"):
            if key in node and not isinstance(node[key], list):
                raise _NodeFallback
        for subschema in node.get("allOf", ()):
            if not isinstance(subschema, dict | bool):
                raise _NodeFallback
            self._node(subschema, v, path, known, depth)
        if "anyOf" in node:
            calls = [
                f"{self._invoke(self._function(s), v, path)} is not None" for s in node["anyOf"]
            ]
            failed = " and ".join(calls) or "True"
            message = f"_safe_repr({v}) + ' is not valid under any of the given schemas'"
            self._guard(depth, path, lambda at: self._check(at, failed, path, "anyOf", message))
        if "oneOf" in node:
            # Each branch's verdict is kept for the message: judging the branches again
            # there would check every nested oneOf twice per level, which a recursive
            # schema turns into time exponential in the depth of the instance.
            names = [self._function(s) for s in node["oneOf"]]
            verdicts = [f"_m{index}" for index in range(len(names))]
            matches = " + ".join(verdicts) or "0"
            one_of = f"_one_of_message({v}, {self._const(node['oneOf'])}, ({', '.join(verdicts)},))"

            def one_of_check(at: int) -> None:
                for verdict, name in zip(verdicts, names, strict=True):
                    self._emit(at, f"{verdict} = {self._invoke(name, v, path)} is None")
                self._check(at, f"{matches} != 1", path, "oneOf", one_of)

            self._guard(depth, path, one_of_check)
        if "not" in node:
            suffix = f" should not be valid under {node['not']!r}"
            negated = f"{self._invoke(self._function(node['not']), v, path)} is None"
            self._guard(
                depth,
                path,
                lambda at: self._check(at, negated, path, "not", f"_safe_repr({v}) + {suffix!r}"),
            )

    # -- keywords by instance type ------------------------------------------------------

    def _number_keywords(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        # `v` is an exact int or float here (and an exact str below): `repr` is the type's own.
        for key, operator, text in _NUMBER_BOUNDS:
            if key in node:
                limit = _number(node[key])
                message = f"repr({v}) + {f' {text} {limit!r}'!r}"
                self._check(depth, f"{v} {operator} {self._literal(limit)}", path, key, message)
        if "multipleOf" in node:
            divisor = _number(node["multipleOf"])
            if not divisor > 0:
                raise _NodeFallback
            if isinstance(divisor, float):
                failed = f"_float_not_multiple({v}, {self._literal(divisor)})"
            else:
                failed = f"{v} % {divisor!r}"
            message = f"repr({v}) + {f' is not a multiple of {divisor}'!r}"
            self._check(depth, failed, path, "multipleOf", message)

    def _string_keywords(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        self._length_bounds(node, "Length", v, path, depth)
        if "pattern" in node:
            pattern = node["pattern"]
            regex = self._regex(pattern)
            message = f"repr({v}) + {f' does not match {pattern!r}'!r}"
            for line in self._search(regex, v, path, "pattern", pattern):
                self._emit(depth, line)
            self._check(depth, "not _h", path, "pattern", message)

    def _length_bounds(
        self, node: dict[str, Any], noun: str, v: str, path: tuple[str, ...], depth: int
    ) -> None:
        too_few, too_many = _LENGTH_WORDING[noun]
        for key, operator, edge, edge_text, text in (
            (f"min{noun}", "<", 1, "should be non-empty", too_few),
            (f"max{noun}", ">", 0, "is expected to be empty", too_many),
        ):
            if key in node:
                limit = _number(node[key])
                # An exact str; or a list or dict, whose items may not be JSON.
                shown = f"repr({v})" if noun == "Length" else f"_safe_repr({v})"
                message = f"{shown} + {' ' + (edge_text if limit == edge else text)!r}"
                self._check(
                    depth, f"len({v}) {operator} {self._literal(limit)}", path, key, message
                )

    def _array_keywords(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        self._length_bounds(node, "Items", v, path, depth)
        if node.get("uniqueItems"):
            message = f"_safe_repr({v}) + ' has non-unique elements'"
            unique = f"_unique({v}, {_where(path)})"  # refuses items that are not JSON
            self._check(depth, f"not {unique}", path, "uniqueItems", message)
        items = node.get("items", True)
        if self._dialect.legacy_items and isinstance(items, list):
            self._positional(items, v, path, depth)
            extra = node.get("additionalItems", True)
            if extra is False:
                failed = f"len({v}) > {len(items)}"
                message = f"_additional_items_message({v}, {len(items)})"
                self._check(depth, failed, path, "additionalItems", message)
            else:
                self._rest_items(extra, len(items), v, path, depth)
            return
        if self._dialect.legacy_items:
            # jsonschema takes len() of a boolean `items` here and raises; keep that.
            if isinstance(items, bool) and "additionalItems" in node and "items" in node:
                raise _NodeFallback
            self._rest_items(items, 0, v, path, depth)
            return
        prefix = node.get("prefixItems", [])
        if not isinstance(prefix, list):
            raise _NodeFallback
        self._positional(prefix, v, path, depth)
        if items is False:
            failed = f"len({v}) > {len(prefix)}"
            message = f"_extra_items_message({v}, {len(prefix)})"
            self._check(depth, failed, path, "items", message)
        else:
            self._rest_items(items, len(prefix), v, path, depth)

    def _positional(self, schemas: list[Any], v: str, path: tuple[str, ...], depth: int) -> None:
        for index, subschema in enumerate(schemas):
            item = self._name("x")
            self._block(
                depth,
                [f"if len({v}) > {index}:", f"    {item} = {v}[{index}]"],
                partial(self._node, subschema, item, (*path, str(index)), None, depth + 1),
            )

    def _rest_items(
        self, schema: Any, start: int, v: str, path: tuple[str, ...], depth: int
    ) -> None:
        index, item = self._name("i"), self._name("x")
        header = (
            [f"for {index}, {item} in enumerate({v}):"]
            if start == 0
            else [f"for {index} in range({start}, len({v})):", f"    {item} = {v}[{index}]"]
        )
        self._block(
            depth, header, partial(self._node, schema, item, (*path, index), None, depth + 1)
        )

    def _object_keywords(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        present: set[str] = set()
        required = node.get("required", [])
        if not isinstance(required, list):
            raise _NodeFallback
        for name in required:
            message = repr(f"{name!r} is a required property")
            self._check(depth, f"{self._literal(name)} not in {v}", path, "required", message)
            if name.__class__ is str:
                present.add(name)
        self._length_bounds(node, "Properties", v, path, depth)
        properties = node.get("properties", {})
        patterns = node.get("patternProperties", {})
        if not isinstance(properties, dict) or not isinstance(patterns, dict):
            raise _NodeFallback
        for name, subschema in properties.items():
            value, key = self._name("x"), self._literal(name)
            if name in present:
                header = [f"{value} = {v}[{key}]"]
            else:
                header = [f"if {key} in {v}:", f"    {value} = {v}[{key}]"]
            inner = depth if name in present else depth + 1
            self._block(
                depth,
                header,
                partial(self._node, subschema, value, (*path, key), None, inner),
            )
        self._pattern_properties(patterns, v, path, depth)
        if "additionalProperties" in node:
            self._additional_properties(node, v, path, depth)

    def _pattern_properties(
        self, patterns: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        key, value = self._name("k"), self._name("x")
        start = len(self._lines)
        for pattern, subschema in patterns.items():
            regex = self._regex(pattern)
            search = self._search(regex, key, path, "patternProperties", pattern)
            self._block(
                depth,
                [
                    f"for {key}, {value} in {v}.items():",
                    *("    " + line for line in self._string_key(key, path, "patternProperties")),
                    *("    " + line for line in search),
                    "    if _h:",
                ],
                partial(self._node, subschema, value, (*path, key), None, depth + 2),
            )
        if patterns and len(self._lines) == start:
            # Even with nothing to check, jsonschema runs re.search on every key, which
            # raises TypeError for a key that is not a string: refused here.
            self._regex(next(iter(patterns)))
            self._emit(depth, f"_string_keys({v}, {_where(path)}, 'patternProperties')")

    def _additional_properties(
        self, node: dict[str, Any], v: str, path: tuple[str, ...], depth: int
    ) -> None:
        schema = node["additionalProperties"]
        properties, patterns = node.get("properties", {}), node.get("patternProperties", {})
        names = self._const(frozenset(properties))
        # jsonschema matches extras against the patterns joined with "|", not one by one,
        # and skips the match when that joined source is empty.
        source = "|".join(patterns)
        joined = self._regex(source) if source else None
        key, value = self._name("k"), self._name("x")
        known = f"{key} in {names}" if properties else "False"
        if schema is False:
            message = (
                f"_additional_properties_message({v}, {names}, {joined}, "
                f"{self._const(sorted(patterns) if 'patternProperties' in node else None)})"
            )
            # A key that is a str subclass could claim, through its own `__hash__` and
            # `__eq__`, to be one of the names: every key is tested as it is met, and all
            # of them before the message (which reads every key) is built.
            every_key = f"_string_keys({v}, {_where(path)}, 'additionalProperties')"
            if joined or properties:
                self._emit(depth, f"for {key} in {v}:")
                for line in self._string_key(key, path, "additionalProperties"):
                    self._emit(depth + 1, line)
                if joined:
                    self._emit(depth + 1, f"if {known}:")
                    self._emit(depth + 2, "continue")
                    for line in self._search(joined, key, path, "additionalProperties", source):
                        self._emit(depth + 1, line)
                    self._emit(depth + 1, "if not _h:")
                else:
                    self._emit(depth + 1, f"if not {known}:")
            else:
                self._emit(depth, f"if {v}:")
            extra = depth + (2 if joined or properties else 1)
            self._emit(extra, every_key)
            self._fail(extra, path, "additionalProperties", message)
            return
        header = [
            f"for {key}, {value} in {v}.items():",
            *("    " + line for line in self._string_key(key, path, "additionalProperties")),
        ]
        if joined:
            search = self._search(joined, key, path, "additionalProperties", source)
            header += [f"    if {known}:", "        continue", *("    " + s for s in search)]
            header.append("    if not _h:")
        else:
            header.append(f"    if not {known}:")
        self._block(
            depth, header, partial(self._node, schema, value, (*path, key), None, depth + 2)
        )


def _where(path: tuple[str, ...]) -> str:
    """The source of a violation path: a tuple of literal keys and loop variables."""
    return f"({', '.join(path)},)" if path else "()"


def _shown(v: str) -> str:
    """The source that shows `v` in a message as jsonschema's `repr` does, where `v` is JSON
    (a check has tested its exact type, or refused it; elsewhere `_safe_repr(v)`), without
    calling a method of a value inside an array or object that is not JSON
    (`_schema_runtime.safe_repr`). Messages are built in `anyOf` branches that fail on the
    way to a pass, so a scalar's costs no call.
    """
    return f"(_safe_repr({v}) if type({v}) is list or type({v}) is dict else repr({v}))"


def _may_overlap(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether two places in a value (the steps of a violation path, as source: literal
    keys and indexes, or loop variables that stand for any key or index) may be the same
    part or one inside the other."""
    for step, other_step in zip(one, other, strict=False):
        if step == other_step:
            continue
        # Two different literals name two different parts; a loop variable may be anything.
        return not (_is_literal(step) and _is_literal(other_step))
    return True  # one place is the other, or lies inside it


def _is_literal(step: str) -> bool:
    return step[:1] in ("'", '"') or step.isdigit()


def _cycles(calls: dict[str, list[str]]) -> list[set[str]]:
    """The strongly connected components of `calls` (a call graph) that hold a cycle.

    Tarjan's strongly connected components, without recursion (a schema may hold more
    functions than Python's stack has frames).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start, first in calls.items():
        if start in index:
            continue
        todo = [(start, iter(sorted(first)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while todo:
            name, callees = todo[-1]
            for callee in callees:
                if callee not in index:
                    index[callee] = low[callee] = len(index)
                    stack.append(callee)
                    on_stack.add(callee)
                    todo.append((callee, iter(sorted(calls.get(callee, ())))))
                    break
                if callee in on_stack:
                    low[name] = min(low[name], index[callee])
            else:
                todo.pop()
                if todo:
                    caller = todo[-1][0]
                    low[caller] = min(low[caller], low[name])
                if low[name] == index[name]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == name:
                            break
                    if len(component) > 1 or name in calls.get(name, ()):
                        found.append(set(component))
    return found


def _number(value: Any) -> int | float:
    if value.__class__ is int or value.__class__ is float:
        return value
    raise _NodeFallback


_LENGTH_WORDING = {
    "Length": ("is too short", "is too long"),
    "Items": ("is too short", "is too long"),
    "Properties": ("does not have enough properties", "has too many properties"),
}
_PLAIN_JSON = frozenset({str, int, float, bool, type(None), list, dict})
_HASHABLE_JSON = frozenset({str, int, float})
