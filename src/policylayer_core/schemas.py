"""Argument schemas: checked when the policy loads, described when a call fails one.

The checking of a call's arguments is compiled by `validators.py`; this module owns
what the format says about schemas (which dialects are allowed, how a load error
points into a schema) and how a violation reads in a denial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema.exceptions import best_match
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from policylayer_core.validators import SchemaViolation

__all__ = ["DIALECTS", "check_argument_schema", "describe_violation"]

DIALECTS: dict[str, type[Any]] = {
    "https://json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema.Draft201909Validator,
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
}


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
    error = best_match(dialect(dialect.META_SCHEMA).iter_errors(schema))
    if error is None:
        return
    inner = "".join("/" + _escape(step) for step in error.absolute_path)
    raise PydanticCustomError(
        "policy",
        "This schema is not a valid JSON Schema: {detail}. Fix the schema at this place.",
        {"detail": error.message, "subpointer": inner},
    )


def describe_violation(tool: str, violation: SchemaViolation) -> str:
    """The denial reason for arguments that fail the tool's schema."""
    where = "args" + "".join(f".{step}" for step in violation.path)
    return (
        f"The arguments for '{tool}' do not match its schema: at {where}, {violation.message} "
        f"('{violation.keyword}'). Fix the arguments and call again."
    )
