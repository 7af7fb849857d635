"""Fast argument validators compiled from a tool's JSON Schema.

A policy constrains a tool call's arguments with a JSON Schema, and that check sits on
the hot path of every decision. Calling jsonschema there costs tens of microseconds, so
`compile_validator` translates the schema, once, at load time, into generated Python
source (as fastjsonschema does) and returns the resulting function.

The contract is that the verdict always equals jsonschema's `is_valid` for the same
draft (2020-12 unless `$schema` names draft-07 or 2019-09), with format an annotation
only, as jsonschema treats it by default. Three rules keep that true:

* The generated checks copy jsonschema's keyword functions, including JSON's notion of
  equality (`True != 1` but `1 == 1.0`), its type checker (only `dict` is an object and
  only `list` an array; 1.0 is an integer, True is not), and its float `multipleOf`.
* Keywords outside the compiled set (if/then/else, contains, dependentSchemas,
  propertyNames, ...) are checked by a jsonschema validator built once, here, for just
  those keywords of their schema object; everything else stays compiled. A schema
  object carrying unevaluatedProperties/Items goes to jsonschema whole, since those
  read the annotations of all its other keywords (see `_schema_codegen`).
* Anything that changes how references resolve (`$id` below the root, `$anchor`
  references, `$dynamicRef`/`$recursiveRef`, references to other documents, a nested
  `$schema`) makes the whole schema fall back to jsonschema, as does a draft the
  generator does not know.

An exception raised by a check on an odd instance (say RecursionError on a very deep
one) propagates; the caller fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from jsonschema import Draft7Validator, Draft201909Validator, Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from policylayer_core import _schema_codegen

__all__ = ["ArgumentValidator", "SchemaViolation", "compile_validator"]


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """Why arguments failed their schema.

    `path` locates the offending value inside the instance (() for the root);
    `keyword` is the schema keyword that failed, or "false" when a `false` subschema
    rejected the value; `message` reads like jsonschema's `ValidationError.message`.
    """

    path: tuple[str | int, ...]
    keyword: str
    message: str


ArgumentValidator: TypeAlias = Callable[[Any], SchemaViolation | None]
"""Returns None when the instance is valid, else the first violation found."""


def _dialect(validator: type[Validator], *, legacy: bool) -> _schema_codegen.Dialect:
    return _schema_codegen.Dialect(
        keywords=frozenset(validator.VALIDATORS),
        legacy_items=legacy,
        ref_overrides_siblings=validator is Draft7Validator,
    )


_DIALECTS: dict[type[Validator], _schema_codegen.Dialect] = {
    Draft202012Validator: _dialect(Draft202012Validator, legacy=False),
    Draft201909Validator: _dialect(Draft201909Validator, legacy=True),
    Draft7Validator: _dialect(Draft7Validator, legacy=True),
}

# Keys whose string value redirects reference resolution away from plain JSON pointers
# into the one document; below the root, `$id` and `$schema` change the base URI or the
# draft of everything under them.
_DYNAMIC_REFERENCES = frozenset({"$dynamicRef", "$recursiveRef"})
_ROOT_ONLY = frozenset({"$id", "$schema"})


def compile_validator(schema: dict[str, Any] | bool) -> ArgumentValidator:
    """Build the validator for a schema that already passed `check_schema`."""
    validator_class = validator_for(schema, default=Draft202012Validator)
    reference = validator_class(schema)
    dialect = _DIALECTS.get(validator_class)
    if dialect is None or _needs_whole_schema_fallback(schema):
        return _jsonschema_check(reference)
    try:
        return _schema_codegen.generate(
            schema,
            dialect,
            violation=SchemaViolation,
            node_fallback=lambda node: _jsonschema_check(reference.evolve(schema=node)),
        )
    except (_schema_codegen.WholeSchemaFallback, RecursionError):
        # RecursionError: a schema nested too deeply to generate code for.
        return _jsonschema_check(reference)


def _needs_whole_schema_fallback(schema: dict[str, Any] | bool) -> bool:
    """Whether the schema uses referencing beyond same-document JSON pointers.

    Every nested dict is inspected, keyword or not (an `enum` value, a property named
    "$id"), since telling schema positions from data would take the full referencing
    rules; a false alarm only costs speed, never correctness.
    """
    stack: list[tuple[Any, bool]] = [(schema, True)]
    while stack:
        node, is_root = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if key in _DYNAMIC_REFERENCES or (key in _ROOT_ONLY and not is_root):
                        return True
                    if key == "$ref" and value != "#" and not value.startswith("#/"):
                        return True
                else:
                    stack.append((value, False))
        elif isinstance(node, list):
            stack.extend((item, False) for item in node)
    return False


def _jsonschema_check(validator: Validator) -> ArgumentValidator:
    """An ArgumentValidator backed by a jsonschema validator instance."""
    iter_errors = validator.iter_errors

    def check(instance: Any) -> SchemaViolation | None:
        # One pass: best_match stops at once when there is no error at all.
        error = best_match(iter_errors(instance))
        if error is None:
            return None
        keyword = error.validator if isinstance(error.validator, str) else "false"
        return SchemaViolation(tuple(error.absolute_path), keyword, error.message)

    return check
