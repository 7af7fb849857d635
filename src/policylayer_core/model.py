"""Pydantic models of policy.json, format "1" (see docs/policy-format.md).

The models only describe and check the document; nothing here runs on the decision
path. Checks that pydantic's types cannot express (an operator's value type, path
syntax, regexes, JSON Schemas, counter conflicts) are validators that raise
`PydanticCustomError("policy", ...)` so every problem in the document is collected
in one pass, each with its location.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from policylayer_core._spelling import did_you_mean
from policylayer_core.conditions import describe_type
from policylayer_core.paths import PathSyntaxError, parse_path
from policylayer_core.ratelimit import SLACK_TOKENS
from policylayer_core.safe_regex import expansion_problem
from policylayer_core.schemas import check_argument_schema

__all__ = [
    "DEFAULT_MAX_REGEX_INPUT",
    "OPERATORS",
    "Arguments",
    "Bundle",
    "Condition",
    "Limit",
    "Policy",
    "Rule",
    "RuleSet",
    "ToolEntry",
]

Operator = Literal[
    "eq",
    "neq",
    "in",
    "not_in",
    "lt",
    "lte",
    "gt",
    "gte",
    "regex",
    "glob",
    "starts_with",
    "ends_with",
    "contains",
    "len_gt",
    "len_gte",
    "len_lt",
    "len_lte",
    "len_eq",
    "exists",
]
OPERATORS: tuple[str, ...] = get_args(Operator)

_NUMBER_OPS = frozenset({"lt", "lte", "gt", "gte"})
_STRING_OPS = frozenset({"regex", "glob", "starts_with", "ends_with"})
_LENGTH_OPS = frozenset({"len_gt", "len_gte", "len_lt", "len_lte", "len_eq"})
_WINDOWS = ("second", "minute", "hour", "day")


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("policy", message)


def _json_text(value: Any) -> str:
    """A policy value as the author wrote it, in JSON (`true`, `"\\d+"`), not as Python shows it."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    return describe_type(value)


class _Strict(BaseModel):
    """Unknown keys are errors; keys beginning with `x-` are comments and vendor data."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=False)

    # Shown in "unknown key" messages: "Unknown key 'deny-if' in a tool entry".
    noun: ClassVar[str] = "this object"

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        kept = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        allowed = _allowed_keys(cls)
        context = info.context
        if isinstance(context, dict):
            for key in kept:
                if key not in allowed:
                    context.setdefault("unknown", {})[key] = cls
        return kept


def _drop_extension_names(names: Any) -> Any:
    """`x-` keys are ignored in the name maps too (tools, policies, grants), as the format says."""
    if not isinstance(names, dict):
        return names
    return {k: v for k, v in names.items() if not (isinstance(k, str) and k.startswith("x-"))}


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return sorted((field.alias or name) for name, field in model.model_fields.items())


class Condition(_Strict):
    """`{"path": "args.amount", "op": "gt", "value": 10000}`."""

    noun = "a condition"

    path: str
    op: Operator
    value: Any = None

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        try:
            parse_path(path)
        except PathSyntaxError as exc:
            raise _fail(str(exc)) from None
        return path

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value  # the operator itself is wrong; that error is reported on its own
        return _check_operand(op, value)

    @model_validator(mode="after")
    def _value_present(self) -> Condition:
        if "value" not in self.model_fields_set and self.op != "exists":
            raise _fail(
                f"The condition with op '{self.op}' has no 'value'; "
                # repr: a raw unpaired surrogate would garble pydantic's message.
                f"add the value to compare the argument at {_json_text(self.path)} with."
            )
        return self


def _fits_a_float(number: float) -> bool:
    """Finite, and (for an int) within a float's range, so float arithmetic can use it."""
    try:
        return math.isfinite(number)
    except OverflowError:  # an int with more than 308 digits
        return False


def _check_operand(op: str, value: Any) -> Any:
    """The type a condition's `value` must have for its operator."""
    if op in ("in", "not_in"):
        if not isinstance(value, list):
            raise _fail(
                f"'{op}' needs an array of allowed values, but the value is {_json_type(value)}."
            )
    elif op in _NUMBER_OPS:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # math.isnan would raise OverflowError for an int beyond a float's range.
        if not number or (isinstance(value, float) and math.isnan(value)):
            raise _fail(
                f"'{op}' compares numbers, but the value is {_json_type(value)}; write a number."
            )
    elif op in _STRING_OPS:
        if not isinstance(value, str):
            raise _fail(f"'{op}' needs a string, but the value is {_json_type(value)}.")
        if op == "regex":
            try:
                with warnings.catch_warnings():  # "[[a]" warns; under -W error it would raise
                    warnings.simplefilter("ignore")
                    re.compile(value)
            except (re.error, OverflowError) as exc:  # OverflowError: a{4294967296}
                raise _fail(
                    f"The regular expression {_json_text(value)} does not compile: {exc}."
                ) from None
            if (problem := expansion_problem(value)) is not None:  # (a{10000}){10000}
                raise _fail(problem)
    elif op in _LENGTH_OPS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(
                f"'{op}' needs a non-negative integer length, but the value is {_json_text(value)}."
            )
    elif op == "exists" and not isinstance(value, bool) and value is not None:
        raise _fail(
            f"'exists' takes true or false (or no value), but the value is {_json_type(value)}."
        )
    return value


class Rule(_Strict):
    """`{"conditions": [...], "on_deny": "message", "name": "id"}`; no conditions means always."""

    noun = "a rule"

    conditions: list[Condition] = Field(default_factory=list)
    on_deny: str | None = None
    name: str | None = None


def _rule_or_condition(item: Any) -> str:
    if isinstance(item, dict) and ("path" in item or "op" in item) and "conditions" not in item:
        return "__condition__"
    return "__rule__"


# In `require`, a bare condition is short for a rule holding that one condition.
RequireItem = Annotated[
    Annotated[Rule, Tag("__rule__")] | Annotated[Condition, Tag("__condition__")],
    Discriminator(_rule_or_condition),
]
UNION_TAGS = frozenset({"__rule__", "__condition__"})


class Limit(_Strict):
    """A token bucket: `{"counter": "writes", "window": "minute", "max": 30, ...}`."""

    noun = "a limit"

    max: Annotated[int, Field(gt=0)]
    window: Any
    counter: str | None = None
    scope: Literal["grant", "identity", "session", "global"] = "grant"
    burst: Annotated[int, Field(gt=0)] | None = None
    cost: Any = 1

    @field_validator("window")
    @classmethod
    def _check_window(cls, window: Any) -> Any:
        if window in _WINDOWS:
            return window
        number = isinstance(window, int | float) and not isinstance(window, bool)
        if not number or not _fits_a_float(window) or window <= 0:
            raise _fail(
                "The window must be 'second', 'minute', 'hour', 'day' or a positive number "
                f"of seconds, but it is {_json_text(window)}.{did_you_mean(window, _WINDOWS)}"
            )
        return window

    @field_validator("max", "burst")
    @classmethod
    def _check_count(cls, count: int | None, info: ValidationInfo) -> int | None:
        # Buckets count in floats: a larger int cannot even be converted to one.
        if count is not None and not _fits_a_float(count):
            raise _fail(
                f"The limit's '{info.field_name}' is too large to count tokens with; "
                "keep it below 1e308."
            )
        return count

    @field_validator("cost")
    @classmethod
    def _check_cost(cls, cost: Any) -> Any:
        if isinstance(cost, int) and not isinstance(cost, bool) and cost > 0:
            return cost
        if isinstance(cost, str):
            try:
                steps = parse_path(cost)
            except PathSyntaxError as exc:
                raise _fail(str(exc)) from None
            if steps.root != "args" or "*" in steps.steps:
                raise _fail(
                    "A cost path must be an 'args.' path to one value (no '*'), "
                    f"but it is {_json_text(cost)}."
                )
            return cost
        raise _fail(
            "The cost must be a positive integer or an 'args.' path such as 'args.tasks', "
            f"but it is {_json_text(cost)}."
        )

    @model_validator(mode="after")
    def _check_capacity(self) -> Limit:
        # A bucket counts in seconds: from empty to full takes window * burst / max of them
        # (plus a hair, SLACK_TOKENS). Beyond a float's range that is infinite, and every
        # take would fit in an infinite bucket.
        burst = self.burst if self.burst is not None else self.max
        interval = self.window_seconds / self.max
        if not math.isfinite((burst + SLACK_TOKENS) * interval):
            raise _fail(
                f"This limit's window ({_json_text(self.window)}) times its burst ({burst}) "
                f"divided by its max ({self.max}) is more seconds than a float can hold "
                "(about 1.8e308), and such a bucket would never run out; use a shorter "
                "window, a smaller burst or a larger max."
            )
        if interval <= 0.0:
            raise _fail(
                f"This limit's window ({_json_text(self.window)}) divided by its max "
                f"({self.max}) is too small a time to count in (it rounds to zero seconds a "
                "token), and such a bucket would never run out; use a longer window or a "
                "smaller max."
            )
        return self

    @property
    def window_seconds(self) -> float:
        """The window in seconds."""
        named = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
        return named[self.window] if isinstance(self.window, str) else float(self.window)


class RuleSet(_Strict):
    """The rule keys shared by `all_tools` and every tool entry."""

    noun = "all_tools"

    require: list[RequireItem] = Field(default_factory=list)
    deny_if: list[Rule] = Field(default_factory=list)
    approve_if: list[Rule] = Field(default_factory=list)
    limits: list[Limit] = Field(default_factory=list)


class ToolEntry(RuleSet):
    """What a `tools` key (an exact name or a glob) says about the tools it matches."""

    noun = "a tool entry"

    action: Literal["allow", "deny", "approve"] = "allow"
    on_deny: str | None = None
    json_schema: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    description: str | None = None

    @field_validator("json_schema", mode="before")
    @classmethod
    def _check_schema(cls, schema: Any) -> Any:
        if schema is not None:
            check_argument_schema(schema)
        return schema


# Characters of one string that a regex may examine when no `arguments` section says
# otherwise (docs/decisions.md, "Hostile arguments").
DEFAULT_MAX_REGEX_INPUT = 10_000

PositiveInt = Annotated[int, Field(gt=0)]


class Arguments(_Strict):
    """`{"max_depth": 32, "max_string_length": 65536}`: bounds on every call's arguments."""

    # An extension of this library (docs/policy-format.md, "Argument limits"). The size
    # keys and `non_json` are checked by one walk over the arguments
    # (`argument_limits.ArgumentLimits`), which runs only when the section sets one of
    # them; `max_regex_input` always applies, with its default when there is no section.

    noun = "the arguments section"

    max_depth: PositiveInt | None = None
    max_string_length: PositiveInt | None = None
    max_items: PositiveInt | None = None
    max_total_items: PositiveInt | None = None
    max_regex_input: PositiveInt = DEFAULT_MAX_REGEX_INPUT
    non_json: Literal["deny", "ignore"] | None = None


class Policy(_Strict):
    """A policy document."""

    noun = "a policy"

    version: Literal["1"]
    default: Literal["allow", "deny"]
    hide: list[str] = Field(default_factory=list)
    all_tools: RuleSet | None = None
    tools: dict[str, ToolEntry] = Field(default_factory=dict)
    mode: Literal["enforce", "shadow"] = "enforce"
    arguments: Arguments | None = None
    description: str | None = None
    # Editors find the format's JSON Schema through it (`policylayer schema`).
    schema_uri: str | None = Field(default=None, alias="$schema")

    _names = field_validator("tools", mode="before")(_drop_extension_names)


class Bundle(_Strict):
    """Several policies and the grants that bind identities to them."""

    noun = "a bundle"

    version: Literal["1"]
    policies: dict[str, Policy]
    grants: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    schema_uri: str | None = Field(default=None, alias="$schema")

    _names = field_validator("policies", "grants", mode="before")(_drop_extension_names)
