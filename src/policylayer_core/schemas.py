"""Argument schemas: checked when the policy loads, described when a call fails one.

The checking of a call's arguments is compiled by `validators.py`; this module owns
what the format says about schemas (which dialects are allowed, how a load error
points into a schema) and how a violation reads in a denial.

Beyond the meta-schema, a schema is refused when the engine could not check calls
against it: a `$ref` that does not resolve inside the schema itself (the format allows
no reference to another document, so nothing is ever read from a file or the network),
and a `pattern` or `patternProperties` key that Python's `re` cannot compile or that is
too large for the bounded regex matcher (`safe_regex.expansion_problem`).
"""

from __future__ import annotations

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
    while nodes:
        pointer, node, resolver = nodes.popleft()
        _check_patterns(pointer, node)
        for key in _REFERENCES:
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            at = f"{pointer}/{_escape(key)}"
            target, target_resolver = _resolve(at, key, ref, resolver)
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


def describe_violation(tool: str, violation: SchemaViolation) -> str:
    """The denial reason for arguments that fail the tool's schema."""
    where = "args" + "".join(f".{step}" for step in violation.path)
    return (
        f"The arguments for '{tool}' do not match its schema: at {where}, {violation.message} "
        f"('{violation.keyword}'). Fix the arguments and call again."
    )
