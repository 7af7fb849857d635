"""Argument schemas: checked when the policy loads, described when a call fails one.

The checking of a call's arguments is compiled by `validators.py`; this module owns
what the format says about schemas (which dialects are allowed, how a load error
points into a schema) and how a violation reads in a denial.

Beyond the meta-schema, a schema is refused when the engine could not check calls
against it: a `$ref` that does not resolve inside the schema itself (the format allows
no reference to another document, so nothing is ever read from a file or the network),
and a `pattern` or `patternProperties` key that Python's `re` cannot compile or that is
too large for the bounded regex matcher (`safe_regex.expansion_problem`).

A schema is refused, too, when a reference leads back to a schema that applies it without
descending into a part of the value (`{"not": {"$ref": "#"}}`): checking a call would
apply the same schemas to the same value forever (see `_Graph`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import jsonschema
import referencing.jsonschema
from jsonschema.exceptions import best_match
from pydantic_core import PydanticCustomError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from policylayer_core.decision import cut_caller_text, quote_caller_text
from policylayer_core.safe_regex import expansion_problem

if TYPE_CHECKING:
    from referencing import Specification
    from referencing._core import Resolver

    from policylayer_core.validators import SchemaViolation

__all__ = [
    "DIALECTS",
    "NO_RETRIEVAL",
    "check_argument_schema",
    "describe_violation",
    "describe_violation_for_log",
    "regex_error",
]

DIALECTS: dict[str, type[Any]] = {
    "https://json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema.Draft201909Validator,
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
}
_SPECIFICATIONS: dict[type[Any], Specification[Any]] = {
    jsonschema.Draft202012Validator: referencing.jsonschema.DRAFT202012,
    jsonschema.Draft201909Validator: referencing.jsonschema.DRAFT201909,
    jsonschema.Draft7Validator: referencing.jsonschema.DRAFT7,
}
# Keywords whose value is a reference `referencing` looks up (`$recursiveRef` always means
# "#" to jsonschema, whatever its value, so it cannot fail to resolve).
_REFERENCES = ("$ref", "$dynamicRef")


def _refuse_retrieval(uri: str) -> NoReturn:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs, unseen by mypy


NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]  # attrs too
"""A registry that never reads a document from a file or the network: jsonschema
validators built with it resolve only the schema's own references (and the drafts'
meta-schemas, which jsonschema adds)."""


def regex_error(pattern: str) -> str | None:
    """Why Python's `re` cannot compile `pattern`, or None when it can.

    Warnings are silenced, so that a pattern whose meaning a later Python will change
    ("[[a]" warns "Possible nested set") behaves the same under `-W error`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except (re.error, OverflowError) as exc:  # OverflowError: a{4294967296}
            return str(exc)
        except RecursionError:
            return "it nests too deeply"
    return None


def _dialect(schema: dict[str, Any]) -> type[Any]:
    uri = schema.get("$schema")
    if uri is None:
        return jsonschema.Draft202012Validator
    if not isinstance(uri, str) or uri.rstrip("#") not in DIALECTS:
        raise PydanticCustomError(
            "policy",
            "The schema's $schema is {uri}; use draft 2020-12 (the default when $schema is left "
            "out), 'https://json-schema.org/draft/2019-09/schema' or "
            "'http://json-schema.org/draft-07/schema#'.",
            {"uri": repr(uri), "subpointer": "/$schema"},
        )
    return DIALECTS[uri.rstrip("#")]


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _meta_schema_error(dialect: type[Any], schema: Any) -> tuple[str, str] | None:
    """(pointer inside `schema`, jsonschema's message) of its worst meta-schema error."""
    error = best_match(dialect(dialect.META_SCHEMA).iter_errors(schema))
    if error is None:
        return None
    return "".join("/" + _escape(step) for step in error.absolute_path), error.message


def check_argument_schema(schema: Any) -> None:
    """Raise PydanticCustomError (with the pointer inside the schema) unless `schema` is valid."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise PydanticCustomError(
            "policy",
            "A tool's schema must be a JSON Schema object such as "
            '{"type": "object", "properties": {...}}, but it is not an object.',
        )
    dialect = _dialect(schema)
    found = _meta_schema_error(dialect, schema)
    if found is not None:
        raise PydanticCustomError(
            "policy",
            "This schema is not a valid JSON Schema: {detail}. Fix the schema at this place.",
            {"detail": found[1], "subpointer": found[0]},
        )
    _check_subschemas(schema, dialect)


# -- what the meta-schema does not check ----------------------------------------------------


def _subschemas(
    pointer: str, resource: Resource[Any], resolver: Resolver[Any]
) -> Iterator[tuple[str, dict[str, Any], Resolver[Any]]]:
    """Every schema object at or below `resource`, where jsonschema would apply it, with its
    pointer and the resolver its references are looked up with."""
    todo = [(pointer, resource, resolver)]
    seen: set[int] = set()
    while todo:
        pointer, resource, resolver = todo.pop()
        contents = resource.contents
        if not isinstance(contents, dict) or id(contents) in seen:
            continue
        seen.add(id(contents))
        yield pointer, contents, resolver
        # `referencing` knows which keywords hold subschemas; find where each one sits
        # (a keyword's value, or an item or member of it) for its pointer.
        places: dict[int, str] = {}
        for key, value in contents.items():
            at = f"{pointer}/{_escape(key)}"
            places.setdefault(id(value), at)
            if isinstance(value, list):
                for index, item in enumerate(value):
                    places.setdefault(id(item), f"{at}/{index}")
            elif isinstance(value, dict):
                for name, item in value.items():
                    places.setdefault(id(item), f"{at}/{_escape(name)}")
        for sub in resource.subresources():
            if isinstance(sub.contents, dict):
                place = places.get(id(sub.contents), pointer)
                todo.append((place, sub, resolver.in_subresource(sub)))


def _fail(pointer: str, template: str, **details: str) -> PydanticCustomError:
    # The policy's own text goes in `details`, never in the template, where braces would
    # be read as placeholders.
    return PydanticCustomError("policy", template, {**details, "subpointer": pointer})


def _check_subschemas(schema: dict[str, Any], dialect: type[Any]) -> None:
    """Refuse references that do not resolve inside `schema`, and patterns `re` refuses."""
    specification = _SPECIFICATIONS[dialect]
    root = specification.create_resource(schema)
    nodes = deque(_subschemas("", root, Registry().resolver_with_root(root)))
    known = {id(contents) for _, contents, _ in nodes}
    graph = _Graph()
    while nodes:
        pointer, node, resolver = nodes.popleft()
        graph.add(pointer, node, resolver)
        _check_patterns(pointer, node)
        for key in _REFERENCES:
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            at = f"{pointer}/{_escape(key)}"
            target, target_resolver = _resolve(at, key, ref, resolver)
            graph.refer(node, at, target)
            if not isinstance(target, dict) or id(target) in known:
                continue
            # A reference into something that is not a subschema (an `enum` member, an
            # unknown keyword): jsonschema applies it as a schema all the same.
            found = _meta_schema_error(dialect, target)
            if found is not None:
                raise _fail(
                    at,
                    "The {key} {ref} points at a value that is not a valid schema: {detail}. "
                    "Point it at a schema, such as one under '$defs'.",
                    key=key,
                    ref=repr(ref),
                    detail=found[1],
                )
            resource = Resource.from_contents(target, default_specification=specification)
            place = _place(schema, target)
            if place is None:  # not expected: every target lies inside the schema
                place = at
            more = list(_subschemas(place, resource, target_resolver.in_subresource(resource)))
            known.update(id(contents) for _, contents, _ in more)
            nodes.extend(more)
    graph.check_loops()


# -- references that loop without descending into the value --------------------------------
#
# Some keywords apply their subschemas to the very value their schema checks ("in place":
# `allOf`, `not`, `if`, a `$ref` target, ...), the others to a part of it (`properties`,
# `items`, `contains`, ...). A chain of in-place applications that comes back to a schema
# applies it to the same value again, forever: jsonschema and the compiled validators
# alike recurse until Python's stack runs out, and where that happens inside a compiled
# extension (`referencing`'s maps) it surfaces as an exception that is not even an
# `Exception`. Such a schema means nothing, so it is refused. A loop that descends is
# bounded by the depth of the value and stays allowed: tree schemas are legitimate.
# unevaluatedProperties/Items add no loop of their own: the annotations they collect come
# from the same in-place keywords, and their own subschemas apply to parts of the value.

# The in-place keywords of every draft the loader accepts. A keyword a draft ignores counts
# all the same (a loop written through it is never meant); `then`/`else` count next to `if`.
_IN_PLACE_SCHEMA = ("not", "if")
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAPS = ("dependentSchemas", "dependencies")  # "dependencies": its schema values

_Edge = tuple[str, int, bool]  # (pointer of the keyword or subschema, target, a reference?)


class _Graph:
    """The schema objects of one schema, and which of them apply which to the same value."""

    def __init__(self) -> None:
        self._nodes: dict[int, tuple[str, dict[str, Any], Resolver[Any]]] = {}
        self._references: dict[int, list[tuple[str, dict[str, Any]]]] = {}

    def add(self, pointer: str, node: dict[str, Any], resolver: Resolver[Any]) -> None:
        """Record a schema object (the first pointer found for it names it)."""
        self._nodes.setdefault(id(node), (pointer, node, resolver))

    def refer(self, node: dict[str, Any], at: str, target: Any) -> None:
        """Record that the reference at `at`, in `node`, resolves to `target`."""
        if isinstance(target, dict):
            self._references.setdefault(id(node), []).append((at, target))

    def check_loops(self) -> None:
        """Raise PydanticCustomError at a reference that loops without descending."""
        dynamic: dict[str, list[int]] = {}
        recursive: list[int] = []
        for key, (_, node, _) in self._nodes.items():
            if isinstance(name := node.get("$dynamicAnchor"), str):
                dynamic.setdefault(name, []).append(key)
            if node.get("$recursiveAnchor") is True:
                recursive.append(key)
        edges = {key: self._edges(key, dynamic, recursive) for key in self._nodes}
        cycle = _find_cycle(list(self._nodes), edges)
        if cycle is not None:
            raise self._loop_failure(cycle)

    def _edges(self, key: int, dynamic: dict[str, list[int]], recursive: list[int]) -> list[_Edge]:
        pointer, node, resolver = self._nodes[key]
        found: list[tuple[str, Any, bool]] = [
            (at, target, True) for at, target in self._references.get(key, ())
        ]
        # Where a dynamic reference lands depends on the call's path through the schema:
        # count every anchor it could land on.
        dynamic_ref = node.get("$dynamicRef")
        if isinstance(dynamic_ref, str) and "#" in dynamic_ref:
            at = f"{pointer}/$dynamicRef"
            name = dynamic_ref.split("#", 1)[1]
            found += [(at, self._nodes[anchor][1], True) for anchor in dynamic.get(name, ())]
        if "$recursiveRef" in node:
            at = f"{pointer}/$recursiveRef"
            found += [(at, self._nodes[anchor][1], True) for anchor in recursive]
            # A "#" that does not resolve makes jsonschema fail when it gets there.
            with contextlib.suppress(Exception):
                found.append((at, resolver.lookup("#").contents, True))
        for name in _IN_PLACE_SCHEMA + (("then", "else") if "if" in node else ()):
            found.append((f"{pointer}/{name}", node.get(name), False))
        for name in _IN_PLACE_LISTS:
            if isinstance(items := node.get(name), list):
                found += [(f"{pointer}/{name}/{i}", item, False) for i, item in enumerate(items)]
        for name in _IN_PLACE_MAPS:
            if isinstance(members := node.get(name), dict):
                found += [
                    (f"{pointer}/{name}/{_escape(member)}", item, False)
                    for member, item in members.items()
                ]
        # Only schema objects count (`true`/`false` apply nothing further); every one that
        # jsonschema would apply was recorded, as a subschema or as a reference's target.
        return [
            (at, id(target), reference)
            for at, target, reference in found
            if isinstance(target, dict) and id(target) in self._nodes
        ]

    def _loop_failure(self, cycle: list[_Edge]) -> PydanticCustomError:
        # Blame the loop's last reference (a loop of plain subschemas cannot come from
        # JSON text, which holds no cycles; blame its last step all the same).
        blamed = max(
            (index for index, (_, _, reference) in enumerate(cycle) if reference),
            default=len(cycle) - 1,
        )
        at, target, _ = cycle[blamed]
        steps = [self._where(target)]
        for _, step, _ in cycle[blamed + 1 :] + cycle[: blamed + 1]:
            steps.append(self._where(step))
        key = at.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
        ref = self._nodes[cycle[blamed - 1][1]][1].get(key)  # the edge's own schema object
        what = f"The {key} {ref!r}" if isinstance(ref, str) else "This subschema"
        pointer = self._nodes[target][0]
        back_to = f"the subschema at {pointer!r}" if pointer else "the schema's root"
        return _fail(
            at,
            "{what} leads back to {target} without descending into any part of "
            "the value it checks (the loop: {loop}), so checking a call would apply the same "
            "schemas to the same value forever. Make the loop go through a keyword that "
            "checks a part of the value (such as properties, items or additionalProperties), "
            "or remove the reference.",
            what=what,
            target=back_to,
            loop=" -> ".join(steps),
        )

    def _where(self, key: int) -> str:
        pointer = self._nodes[key][0]
        return repr(pointer) if pointer else "the root"


def _find_cycle(keys: list[int], edges: dict[int, list[_Edge]]) -> list[_Edge] | None:
    """The edges of one cycle of the graph, in order, or None when there is none.

    Depth first without recursion (a schema may be nested deeper than Python's stack).
    """
    state: dict[int, bool] = {}  # False: on the current path; True: done, no cycle through
    for start in keys:
        if start in state:
            continue
        state[start] = False
        path: list[_Edge] = []
        todo = [iter(edges[start])]
        while todo:
            for edge in todo[-1]:
                target = edge[1]
                if target not in state:
                    state[target] = False
                    path.append(edge)
                    todo.append(iter(edges[target]))
                    break
                if state[target] is False:  # back to a schema on the path: a loop
                    entered = [at for at, (_, step, _) in enumerate(path) if step == target]
                    return [*path[entered[0] + 1 if entered else 0 :], edge]
            else:
                todo.pop()
                done = path.pop()[1] if path else start
                state[done] = True
    return None


def _place(schema: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The pointer of `target` inside `schema` (where a reference led outside subschemas)."""
    todo: list[tuple[str, Any]] = [("", schema)]
    seen: set[int] = set()
    while todo:
        pointer, value = todo.pop()
        if value is target:
            return pointer
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            todo.extend((f"{pointer}/{_escape(key)}", item) for key, item in value.items())
        elif isinstance(value, list):
            todo.extend((f"{pointer}/{index}", item) for index, item in enumerate(value))
    return None


def _resolve(at: str, key: str, ref: str, resolver: Resolver[Any]) -> tuple[Any, Resolver[Any]]:
    """What `ref` points at, or PydanticCustomError at `at` when it points nowhere."""
    try:
        resolved = resolver.lookup(ref)
    except Exception:  # referencing raises Unresolvable, and ValueError, TypeError...
        pass
    else:
        if isinstance(resolved.contents, dict | bool):
            return resolved.contents, resolved.resolver
        raise _fail(
            at,
            "The {key} {ref} points at {kind}, not at a schema. Point it at a schema, such as "
            "one under '$defs'.",
            key=key,
            ref=repr(ref),
            kind=_json_kind(resolved.contents),
        )
    if ref.startswith("#"):
        raise _fail(
            at,
            "The {key} {ref} points at nothing in this schema. Point it at a schema that "
            "exists, such as '#/$defs/NAME' for a schema under '$defs'.",
            key=key,
            ref=repr(ref),
        )
    raise _fail(
        at,
        "The {key} {ref} refers to another document, which the engine never reads: only "
        "references inside the same schema are supported, such as '#/$defs/NAME'. Copy the "
        "schema it refers to under '$defs' and refer to it as '#/$defs/NAME'.",
        key=key,
        ref=repr(ref),
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "a number"


def _check_patterns(pointer: str, node: dict[str, Any]) -> None:
    """The regexes of one schema object compile, as jsonschema will use them, and are not
    too large for the engine's bounded matcher (`safe_regex.expansion_problem`)."""
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        _check_pattern(f"{pointer}/pattern", pattern)
    patterns = node.get("patternProperties")
    if not isinstance(patterns, dict) or not patterns:
        return
    for key in patterns:
        if isinstance(key, str):
            _check_pattern(f"{pointer}/patternProperties/{_escape(key)}", key)
    # With additionalProperties, jsonschema also searches the patterns joined with "|",
    # which may not compile even when each one does ("(?i)a" after another pattern).
    joined = "|".join(key for key in patterns if isinstance(key, str))
    if "additionalProperties" not in node:
        return
    if (error := regex_error(joined)) is not None:
        raise _fail(
            f"{pointer}/patternProperties",
            "The keys of 'patternProperties' do not compile as one regular expression "
            "{joined} when joined with '|', as 'additionalProperties' matches them: {error}. "
            "Change the patterns (for instance, move flags such as '(?i)' out of them).",
            joined=repr(joined),
            error=error,
        )
    if (problem := expansion_problem(joined)) is not None:
        raise _fail(
            f"{pointer}/patternProperties",
            "'additionalProperties' matches the keys of 'patternProperties' joined with '|' "
            "as one regular expression. {problem}",
            problem=problem,
        )


def _check_pattern(pointer: str, pattern: str) -> None:
    if (error := regex_error(pattern)) is not None:
        raise _regex_failure(pointer, pattern, error)
    if (problem := expansion_problem(pattern)) is not None:
        raise _fail(pointer, "{problem}", problem=problem)


def _regex_failure(pointer: str, pattern: str, error: str) -> PydanticCustomError:
    return _fail(
        pointer,
        "The regular expression {pattern} does not compile: {error}. "
        "Write a pattern that Python's re module accepts.",
        pattern=repr(pattern),
        error=error,
    )


# How much of a violation's message (which quotes the caller's value) a reason keeps.
VIOLATION_MESSAGE_LIMIT = 300


def _where(violation: SchemaViolation) -> str:
    """`args.tasks.3.title`, each step cut to 40 characters and the path to 12 steps."""
    steps = [cut_caller_text(str(step), 40) for step in violation.path]
    if len(steps) > 12:
        steps = [*steps[:6], "…", *steps[-6:]]
    return "args" + "".join(f".{step}" for step in steps)


def describe_violation(tool: str, violation: SchemaViolation) -> str:
    """The denial reason for arguments that fail the tool's schema, as the caller gets it:
    the violation's message quotes the caller's own value (cut to a bounded prefix)."""
    message = cut_caller_text(violation.message, VIOLATION_MESSAGE_LIMIT)
    return (
        f"The arguments for {quote_caller_text(tool)} do not match its schema: at "
        f"{_where(violation)}, {message} ('{violation.keyword}'). Fix the arguments and call "
        "again."
    )


def describe_violation_for_log(tool: str, violation: SchemaViolation) -> str:
    """The same denial worded without the caller's value, for the audit log."""
    return (
        f"The arguments for {quote_caller_text(tool)} do not match its schema: at "
        f"{_where(violation)}, the value fails the schema keyword '{violation.keyword}' "
        "(the value is not logged). Fix the arguments and call again."
    )
