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

Regexes run within `RegexLimits` (see `safe_regex`), in the compiled code and in the
jsonschema validators behind the fallbacks alike: a string a pattern cannot be matched
against safely makes the instance invalid, with a message that says why. Within the
limits the verdicts are jsonschema's. Every pattern of the schema is compiled when the
validator is built, and held as long as it lives, so no call ever compiles one.

Caller values are judged by their exact type, never through their own methods: a value
whose type is not exactly dict, list, str, int, float, bool or None (a subclass, a tuple,
an object whose `__class__` property claims a type), a key that is not exactly a str, or
a value that contains itself is not JSON (`_json_values`), and a check that meets one
makes the instance invalid, with a violation at its place that says so: in compiled code
where the value's exact type tests fail, and before a jsonschema check, for the whole value
it is handed (jsonschema's type checker believes `isinstance`, and its `equal` and
`uniqueItems` call the values' `==`). On JSON values the verdicts are jsonschema's.

Where jsonschema itself raises on a JSON instance (a float `multipleOf` and an integer
beyond a float's range, which its float division overflows), there is no verdict to
copy: the instance is invalid, with a violation that says why (`Unjudgeable`). Other
exceptions raised by a check on an odd instance (say RecursionError on a very deep one)
propagate; the caller fails closed. A panic of a compiled extension inside jsonschema (a
BaseException) is raised as an Exception too. No check ever retrieves a referenced
document (`schemas.NO_RETRIEVAL`).

Recursion is bounded by the instance: `check_argument_schema` refuses references that
loop without descending into the value, so each time round a recursion goes one level
deeper into the instance, and an instance deeper than the stack allows raises
RecursionError. `uniqueItems` and jsonschema's `unevaluatedItems`/`unevaluatedProperties`
take time near-linear in the array or object. A compiled recursion judges each part of
the value once per schema object, even where two branches reach it (see
`_schema_codegen`). jsonschema may judge a part again on every level (the annotations of
`unevaluatedProperties`/`Items`, its `anyOf`/`oneOf`), so each check left to it may take
a number of steps linear in the sizes of the schema and the instance (`_Steps`); past them
the instance is invalid, with a violation that says so.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FunctionType
from typing import Any, NoReturn, TypeAlias

from jsonschema import Draft7Validator, Draft201909Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for

from policylayer_core import _schema_codegen
from policylayer_core._schema_runtime import (
    Refusal,
    Unjudgeable,
    find_foreign,
    not_json,
    refused_message,
    too_large_for_multiple_of,
    unique,
)
from policylayer_core.safe_regex import (
    DEFAULT_REGEX_LIMITS,
    RegexLimits,
    RegexRefused,
    compile_search,
    needs_time_bound,
)
from policylayer_core.schemas import NO_RETRIEVAL

__all__ = [
    "ArgumentValidator",
    "SchemaViolation",
    "compile_validator",
    "schema_needs_time_bound",
    "schema_patterns",
]


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


def compile_validator(
    schema: dict[str, Any] | bool, *, regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS
) -> ArgumentValidator:
    """Build the validator for a schema that already passed `check_schema`.

    `regex_limits` bounds every regex search on the instance's strings and keys.
    """
    validator_class = validator_for(schema, default=Draft202012Validator)
    bounded = _bounded_class(validator_class, regex_limits)
    # jsonschema's keyword functions get a pattern's text at each call: every pattern is
    # compiled now, once, and held by the checks that may need it (see `_matcher`).
    held = _hold(schema_patterns(schema), regex_limits)
    # NO_RETRIEVAL: whatever the schema says, no check ever reads a file or the network
    # (`check_argument_schema` already refused references to other documents).
    reference = bounded(_without_dialect(schema), registry=NO_RETRIEVAL)
    dialect = _DIALECTS.get(validator_class)
    keys = _keys(schema)
    if dialect is None or _needs_whole_schema_fallback(schema):
        return _judging(_catching_refusals(_jsonschema_check(reference, held, keys)))
    fallbacks: list[ArgumentValidator] = []

    def node_fallback(node: dict[str, Any]) -> ArgumentValidator:
        check = _jsonschema_check(reference.evolve(schema=_without_dialect(node)), held, keys)
        fallbacks.append(check)
        return check

    try:
        compiled = _schema_codegen.generate(
            schema,
            dialect,
            violation=SchemaViolation,
            node_fallback=node_fallback,
            regex_limits=regex_limits,
        )
    except (_schema_codegen.WholeSchemaFallback, RecursionError):
        # RecursionError: a schema nested too deeply to generate code for.
        return _judging(_catching_refusals(_jsonschema_check(reference, held, keys)))
    if fallbacks:
        compiled = _walking_once(compiled)
    # Only multipleOf may be unjudgeable: leave the other validators without the wrapper.
    return _judging(compiled) if _mentions(schema, "multipleOf") else compiled


def _without_dialect(schema: Any) -> Any:
    """`schema` without its `$schema` key, for the bounded validator classes.

    jsonschema's `evolve` (used for every subschema it descends into, `$ref` targets
    included) picks the class registered for a `$schema` it finds, which would drop the
    bounded keywords; without the key it keeps the class, whose draft is already right.
    """
    if isinstance(schema, dict) and "$schema" in schema:
        return {key: value for key, value in schema.items() if key != "$schema"}
    return schema


class _Walked(threading.local):
    """The containers of the instance being validated on this thread that a jsonschema
    check has found to be JSON (by id: each lives as long as the call), or None outside a
    validator with such checks."""

    ids: set[int] | None = None


_walked = _Walked()


def _walking_once(check: ArgumentValidator) -> ArgumentValidator:
    """`check`, a compiled validator that calls jsonschema checks, with one set of walked
    containers per call: each jsonschema check first walks the value it is handed (see
    `_jsonschema_check`), and a recursion whose every level holds such a check would walk
    each part again on every level above it, time quadratic in the depth."""

    @functools.wraps(check)  # `__wrapped__`: tests tell generated code from jsonschema's
    def walking(instance: Any) -> SchemaViolation | None:
        saved = _walked.ids
        _walked.ids = set()
        try:
            return check(instance)
        finally:
            _walked.ids = saved

    return walking


def _catching_refusals(check: ArgumentValidator) -> ArgumentValidator:
    """`check`, returning the violation of a regex refusal raised anywhere inside it (the
    compiled validators do the same in their generated entry point)."""

    def refusing(instance: Any) -> SchemaViolation | None:
        try:
            return check(instance)
        except Refusal as refusal:
            return refusal.violation

    return refusing


def _judging(check: ArgumentValidator) -> ArgumentValidator:
    """`check`, returning a violation where jsonschema itself could not judge the instance
    (`Unjudgeable`, raised through every check like a regex refusal)."""

    @functools.wraps(check)  # `__wrapped__`: tests tell generated code from jsonschema's
    def judging(instance: Any) -> SchemaViolation | None:
        try:
            return check(instance)
        except Unjudgeable as unjudgeable:
            path = _path_to(instance, unjudgeable.instance)
            return SchemaViolation(path, unjudgeable.keyword, unjudgeable.message)

    return judging


def _path_to(instance: Any, part: Any) -> tuple[str | int, ...]:
    """Where `part` (the very object) sits inside `instance`; () when it is not found.

    Depth first, in the order of the instance; each node keeps only its parent's index,
    so a deeply nested instance costs linear time. Only exact dicts and lists are walked,
    through their storage (a value that is not JSON is never asked for its items).
    """
    steps: list[tuple[int, Any]] = [(-1, None)]  # (parent's index, key or position)
    todo: list[tuple[int, Any]] = [(0, instance)]
    while todo:
        at, value = todo.pop()
        if value is part:
            path: list[Any] = []
            while at > 0:
                at, step = steps[at]
                path.append(step)
            return tuple(reversed(path))
        kind = type(value)
        children = value.items() if kind is dict else enumerate(value) if kind is list else ()
        pushed = []
        for step, child in children:
            steps.append((at, step))
            pushed.append((len(steps) - 1, child))
        todo.extend(reversed(pushed))
    return ()


def _mentions(schema: Any, keyword: str) -> bool:
    """Whether `keyword` is a key anywhere in `schema` (a false alarm only costs speed)."""
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if keyword in node:
                return True
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False


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


def _jsonschema_check(validator: Validator, held: list[Any], keys: int) -> ArgumentValidator:
    """An ArgumentValidator backed by a jsonschema validator instance, whose work is
    bounded by `_Steps` (`keys`: how many keys the whole schema has); it keeps `held` (the
    schema's compiled patterns) alive for as long as it lives."""
    iter_errors = validator.iter_errors

    def check(instance: Any, _held: list[Any] = held) -> SchemaViolation | None:
        # jsonschema reads values through `isinstance` and their own `==`, `len` and
        # iteration: it only ever gets JSON values (this check is the slow path already).
        found = find_foreign(instance, _walked.ids)
        if found is not None:
            path, part, problem = found
            raise not_json(path, "type", part, problem)
        steps = _steps
        saved = steps.left, steps.instance, steps.per_value
        steps.left, steps.instance, steps.per_value = _BASE_STEPS, instance, keys
        try:
            # One pass: best_match stops at once when there is no error at all.
            error = best_match(iter_errors(instance))
        except Exception:
            raise
        except BaseException as failure:
            _raise_panic(failure)
        finally:
            steps.left, steps.instance, steps.per_value = saved
        if error is None:
            return None
        keyword = error.validator if isinstance(error.validator, str) else "false"
        return SchemaViolation(tuple(error.absolute_path), keyword, error.message)

    return check


def _raise_panic(failure: BaseException) -> NoReturn:
    """Raise `failure` as an `Exception` when it is a panic of a compiled extension.

    `referencing` looks references up in `rpds` maps, written in Rust: when Python's
    recursion limit is reached inside one of them (a deep instance under a recursive
    schema, checked from a deep stack), the Rust code panics, and pyo3 raises its
    `PanicException`, which derives from BaseException and so escapes `except Exception`.
    That is a RecursionError in all but name; any other panic is a failure of the check.
    Everything else (KeyboardInterrupt, SystemExit, ...) is raised as it is.
    """
    kind = type(failure)
    if kind.__name__ != "PanicException" or kind.__module__ != "pyo3_runtime":
        raise failure
    if "RecursionError" in str(failure):
        raise RecursionError("the instance is nested too deeply to check") from failure
    raise RuntimeError(f"the schema check failed inside a compiled extension: {failure}")


# -- a bound on jsonschema's work --------------------------------------------------------
#
# jsonschema judges some subschemas twice: unevaluatedProperties/Items collect annotations by
# validating again the in-place subschemas (allOf, anyOf, oneOf, if, dependentSchemas) and
# the values under additionalProperties, and its anyOf/oneOf try every branch. In a
# recursion (a base schema extended with `unevaluatedProperties: false`, a common 2019-09
# pattern) that doubles the work on every level of the instance: 14 levels took 10 s.
# Every applicator keyword (those that judge subschemas; the others do bounded work on the
# value at hand) counts one step; a check may take `_BASE_STEPS`, and once past them (the
# instance is then measured) as many more as `_STEPS_PER_KEY` times the schema's keys times
# the values in the instance, which no check that judges each value a bounded number of
# times reaches. Beyond that the instance is invalid, with a violation that says why,
# raised through every check like a regex refusal. Most checks take a few dozen steps.

_BASE_STEPS = 100
_STEPS_PER_KEY = 8
_APPLICATORS = frozenset(
    {
        "$ref", "$dynamicRef", "$recursiveRef", "allOf", "anyOf", "oneOf", "not", "if",
        "dependentSchemas", "dependencies", "properties", "patternProperties",
        "additionalProperties", "items", "prefixItems", "additionalItems", "contains",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip
_MAX_COUNTED = 1_000_000  # values counted in an instance; more are taken as that many


class _Steps(threading.local):
    """The steps left to the jsonschema check running on this thread."""

    left = 0
    instance: Any = None
    per_value = 0  # the schema's keys; 0 once the budget has grown to the instance's size


_steps = _Steps()


def _counted(keyword: str, function: Any) -> Any:
    """`function`, a keyword function, counting one step of the running check."""

    def counting(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        steps = _steps
        steps.left -= 1
        if steps.left < 0:
            _spend_more(steps, keyword)
        return function(validator, value, instance, schema)

    return counting


def _spend_more(steps: _Steps, keyword: str) -> None:
    if steps.per_value:
        values = _values(steps.instance)
        steps.left += _STEPS_PER_KEY * steps.per_value * values
        steps.per_value = 0
        if steps.left >= 0:
            return
    message = (
        "the value is too costly to check against the schema (more steps than the sizes "
        "of the schema and of the value allow; a schema that judges some parts again on "
        "every level of nesting doubles the work per level), so it cannot be checked "
        "safely"
    )
    raise Refusal(SchemaViolation((), keyword, message))


def _values(instance: Any) -> int:
    """How many values `instance` holds (itself included), up to `_MAX_COUNTED`; read
    through the base types, never the values' own methods."""
    count = 0
    todo = [instance]
    while todo and count < _MAX_COUNTED:
        value = todo.pop()
        count += 1
        kind = type(value)
        if issubclass(kind, dict):
            todo.extend(dict.values(value))
        elif issubclass(kind, list):
            todo.extend(list.copy(value))
    return count


def _keys(schema: Any) -> int:
    """How many keys the objects of `schema` have, all the way down (at least one)."""
    count = 1
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            count += len(node)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return count


# -- the schema's patterns ------------------------------------------------------------------


def schema_patterns(schema: Any) -> list[str]:
    """Every regex a validator for `schema` may search with: `pattern` values, the keys of
    `patternProperties`, and those keys joined with "|" (as `additionalProperties` matches
    them). Every object in the schema is looked at, keyword or not: a pattern found in
    data (an `enum` value) is only compiled for nothing."""
    found: dict[str, None] = {}
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                found[pattern] = None
            keys = node.get("patternProperties")
            if isinstance(keys, dict) and keys:
                strings = [key for key in keys if isinstance(key, str)]
                found.update(dict.fromkeys(strings))
                found["|".join(strings)] = None
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return list(found)


def schema_needs_time_bound(schema: Any) -> bool:
    """Whether a validator for `schema` may search with a pattern that runs on the
    bounded engine (`safe_regex.needs_time_bound`), and so needs a call's regex budget."""
    return any(needs_time_bound(pattern) for pattern in schema_patterns(schema) if pattern)


# Compiled patterns of live validators, by (pattern, limits); an entry lasts as long as a
# validator holds its matcher. compile_search's own cache is bounded, so with more
# patterns than it keeps, jsonschema's keyword functions would compile again in a call.
_HELD: weakref.WeakValueDictionary[tuple[str, RegexLimits], Callable[[str], bool]] = (
    weakref.WeakValueDictionary()
)


def _hold(patterns: list[str], limits: RegexLimits) -> list[Any]:
    held = []
    for pattern in patterns:
        try:
            matcher = compile_search(pattern, limits)
        except (re.error, OverflowError, RecursionError):
            continue  # not a pattern after all (data), or one the loader reports
        _HELD[(pattern, limits)] = matcher
        held.append(matcher)
    return held


def _matcher(pattern: str, limits: RegexLimits) -> Callable[[str], bool]:
    """The compiled matcher for one of a live validator's patterns."""
    matcher = _HELD.get((pattern, limits))
    return matcher if matcher is not None else compile_search(pattern, limits)


# -- regexes in jsonschema's own keyword functions ---------------------------------------
#
# jsonschema calls `re.search(pattern, string)` in four places: the `pattern` keyword, the
# `patternProperties` keyword, and the helpers that find the properties `additionalProperties`
# and `unevaluatedProperties` apply to. The validators built here use copies of those
# functions whose global `re` is a bounded stand-in, so the code and the verdicts stay
# jsonschema's own. A refusal raises `Refusal`, which ends the validation with a violation
# at the place of the jsonschema check (jsonschema's own error paths are not at hand).

_keywords: Any = importlib.import_module("jsonschema._keywords")
_legacy: Any = importlib.import_module("jsonschema._legacy_keywords")
_utils: Any = importlib.import_module("jsonschema._utils")


class _BoundedRe:
    """Stands in for the `re` module inside copied jsonschema functions."""

    def __init__(self, limits: RegexLimits, keyword: str) -> None:
        self._limits = limits
        self._keyword = keyword

    def search(self, pattern: str, string: str) -> bool:
        try:
            return _matcher(pattern, self._limits)(string)
        except RegexRefused as refused:
            message = refused_message(refused, "a property name", pattern)
            raise Refusal(SchemaViolation((), self._keyword, message)) from None


def _rebound(function: Any, **names: Any) -> Any:
    """`function` with some of its globals replaced (itself too, when it recurses)."""
    namespace = {**function.__globals__, **names}
    copy = FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    if function.__name__ in namespace and namespace[function.__name__] is function:
        namespace[function.__name__] = copy
    return copy


def _multiple_of(
    validator: Any, divisor: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """jsonschema's multipleOf, with `Unjudgeable` where it would raise OverflowError."""
    try:
        yield from _keywords.multipleOf(validator, divisor, instance, schema)
    except OverflowError:
        raise too_large_for_multiple_of(instance, divisor) from None


def _bounded_pattern(limits: RegexLimits) -> Callable[..., Iterator[ValidationError]]:
    def pattern(
        validator: Any, patrn: str, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "string"):
            return
        try:
            matched = _matcher(patrn, limits)(instance)
        except RegexRefused as refused:
            message = refused_message(refused, "the string", patrn)
            raise Refusal(SchemaViolation((), "pattern", message)) from None
        if not matched:
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    return pattern


def _unique_items(
    validator: Any, unique_items: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """jsonschema's uniqueItems, with the near-linear `unique` (the instance is JSON: see
    `_jsonschema_check`)."""
    if unique_items and validator.is_type(instance, "array") and not unique(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


@functools.lru_cache(maxsize=64)
def _bounded_class(validator_class: Any, limits: RegexLimits) -> Any:
    """`validator_class` extended with bounded versions of its regex-using keywords."""
    find_extras = _rebound(
        _utils.find_additional_properties, re=_BoundedRe(limits, "additionalProperties")
    )
    unevaluated = _BoundedRe(limits, "unevaluatedProperties")
    replacements = {
        _keywords.multipleOf: _multiple_of,
        _keywords.uniqueItems: _unique_items,
        _keywords.pattern: _bounded_pattern(limits),
        _keywords.patternProperties: _rebound(
            _keywords.patternProperties, re=_BoundedRe(limits, "patternProperties")
        ),
        _keywords.additionalProperties: _rebound(
            _keywords.additionalProperties, find_additional_properties=find_extras
        ),
        _keywords.unevaluatedProperties: _rebound(
            _keywords.unevaluatedProperties,
            find_evaluated_property_keys_by_schema=_rebound(
                _utils.find_evaluated_property_keys_by_schema, re=unevaluated
            ),
        ),
        _legacy.unevaluatedProperties_draft2019: _rebound(
            _legacy.unevaluatedProperties_draft2019,
            find_evaluated_property_keys_by_schema=_rebound(
                _legacy.find_evaluated_property_keys_by_schema, re=unevaluated
            ),
        ),
    }
    overrides = {
        keyword: replacements[function]
        for keyword, function in validator_class.VALIDATORS.items()
        if function in replacements
    }
    for keyword in ("unevaluatedItems", "unevaluatedProperties"):
        if keyword in validator_class.VALIDATORS:
            overrides[keyword] = _evaluated_in_sets(
                overrides.get(keyword, validator_class.VALIDATORS[keyword])
            )
    overrides.update(
        (keyword, _counted(keyword, overrides.get(keyword, function)))
        for keyword, function in validator_class.VALIDATORS.items()
        if keyword in _APPLICATORS
    )
    return extend(validator_class, overrides)  # type: ignore[no-untyped-call]


def _evaluated_in_sets(keyword: Any) -> Any:
    """An unevaluatedItems/Properties keyword function that finds the evaluated indexes or
    keys in a set: jsonschema's own keeps them in a list and tests every item or key
    against it with `in`, which takes minutes for 50,000 items next to `items`."""
    finders = {
        name: _as_set(keyword.__globals__[name])
        for name in keyword.__code__.co_names
        if name.startswith("find_evaluated_")
    }
    return _rebound(keyword, **finders)


def _as_set(find: Callable[..., list[Any]]) -> Callable[..., set[Any]]:
    def finding(validator: Any, instance: Any, schema: Any) -> set[Any]:
        # Indexes, or the instance's keys (hashable, and equal as `in` on a list tests).
        return set(find(validator, instance, schema))

    return finding
