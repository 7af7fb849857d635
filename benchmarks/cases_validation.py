"""Argument validation alone: our compiled validator and the peers, on one schema and instance.

The schema is qflow_task_batch's from examples/qflow-policy.json; the instance is the
realistic call's arguments (valid). pydantic validates an equivalent TypedDict in
strict mode (no coercion, as JSON Schema does none); extra keys are allowed by both.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

from benchmarks.harness import Case, Feed, Shape
from benchmarks.policies import BATCH_ARGS, BATCH_SCHEMA
from benchmarks.suite import Row, Sizes, optional
from policylayer_core.validators import compile_validator

__all__ = ["FASTJSONSCHEMA", "JSONSCHEMA", "OURS", "PYDANTIC", "validation_rows"]

OURS = "validate.ours"
FASTJSONSCHEMA = "validate.fastjsonschema"
JSONSCHEMA = "validate.jsonschema"
PYDANTIC = "validate.pydantic"

NAMES = {
    OURS: "validate: compile_validator (ours)",
    FASTJSONSCHEMA: "validate: fastjsonschema (compiled)",
    JSONSCHEMA: "validate: jsonschema is_valid",
    PYDANTIC: "validate: pydantic TypeAdapter (strict TypedDict)",
}


def _none(result: Any) -> str | None:
    return None if result is None else f"expected no violation, got {result!r}"


def _true(result: Any) -> str | None:
    return None if result is True else f"expected True, got {result!r}"


def _same(result: Any) -> str | None:
    return None if result == BATCH_ARGS else f"expected the instance back, got {result!r}"


def _fastjsonschema() -> list[Case]:
    import fastjsonschema  # noqa: PLC0415 - optional peer

    validate = fastjsonschema.compile(BATCH_SCHEMA)
    return [
        Case(FASTJSONSCHEMA, NAMES[FASTJSONSCHEMA], validate, Shape.CALL1,
             Feed.const(BATCH_ARGS), check=_same, group="validation"),
    ]  # fmt: skip


def _jsonschema() -> list[Case]:
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - optional peer

    validator = Draft202012Validator(BATCH_SCHEMA)
    return [
        Case(JSONSCHEMA, NAMES[JSONSCHEMA], validator.is_valid, Shape.CALL1,
             Feed.const(BATCH_ARGS), check=_true, group="validation"),
    ]  # fmt: skip


def _pydantic() -> list[Case]:
    from pydantic import ConfigDict, Field, TypeAdapter  # noqa: PLC0415 - optional peer
    from typing_extensions import TypedDict  # noqa: PLC0415 - pydantic wants it before 3.12

    class Task(TypedDict):
        __pydantic_config__ = ConfigDict(strict=True)  # type: ignore[misc]
        title: Required[Annotated[str, Field(min_length=1)]]
        priority: NotRequired[Annotated[int, Field(ge=1, le=10)]]

    class Batch(TypedDict):
        __pydantic_config__ = ConfigDict(strict=True)  # type: ignore[misc]
        action: Required[Literal["create", "update", "status", "rewrite"]]
        projectRoot: NotRequired[str]  # the tool's own argument name
        tasks: NotRequired[list[Task]]

    adapter = TypeAdapter(Batch)
    return [
        Case(PYDANTIC, NAMES[PYDANTIC], adapter.validate_python, Shape.CALL1,
             Feed.const(BATCH_ARGS), check=_same, group="validation"),
    ]  # fmt: skip


def validation_rows(sizes: Sizes) -> list[Row]:
    ours = compile_validator(BATCH_SCHEMA)
    rows: list[Row] = [
        Case(OURS, NAMES[OURS], ours, Shape.CALL1,
             Feed.const(BATCH_ARGS), check=_none, group="validation"),
    ]  # fmt: skip
    rows += optional(NAMES, [FASTJSONSCHEMA], _fastjsonschema, "validation")
    rows += optional(NAMES, [JSONSCHEMA], _jsonschema, "validation")
    rows += optional(NAMES, [PYDANTIC], _pydantic, "validation")
    return rows
