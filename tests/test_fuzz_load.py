"""Fuzzing `load_policy` (issue 9): mutated real policies, as JSON text and as documents.

Whatever it is given, `load_policy` returns a `LoadedPolicy` or raises `PolicyError` whose
issues each carry a pointer and a one-sentence message, with a line and column inside the
text when they have one. Nothing else escapes (no RecursionError, OverflowError, pydantic
ValidationError, KeyError...) and no input hangs. A mutant that loads builds a
`PolicyEngine` that answers calls without an internal failure.

The seeds are the repository's real policies: `examples/*.json`, every ```json block of
`docs/*.md` and `README.md`, and the files of `tests/fuzz_corpus/load/` (the output of
`policylayer suggest` for the qflow tools fixture, and every case fuzzing found). The
corpus is also replayed file by file (`test_load_corpus`); cases that only Python can
build (documents nested 20,000 levels deep) are `PYTHON_DOCUMENTS` below.

Examples per property: POLICYLAYER_FUZZ_EXAMPLES; see docs/fuzzing.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, FakeClock
from policylayer_core import (
    Decision,
    Effect,
    LoadedPolicy,
    PolicyEngine,
    PolicyError,
    PolicyIssue,
    cli,
    load_policy,
)
from policylayer_core.loader import load_text
from policylayer_core.model import OPERATORS

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"

# One knob for every property test of the suite (test_properties.py and test_jsontext.py read
# it too). The default keeps both fuzz files under 30 s on a 2-core CI machine.
EXAMPLE_COUNT = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLE_COUNT,
    deadline=None,
    # Regressions live in tests/fuzz_corpus and @example, never in a local database.
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
# A load or a decision that takes longer than this is a hang, and fails the example.
SECONDS_PER_CALL = 10.0


# --- shared helpers (test_fuzz_decide.py and fuzz/ import them) --------------------------------


class Hang(BaseException):
    """Raised by `time_limit` in the middle of a call that runs too long.

    A BaseException, so that the engine's fail-closed handler cannot turn it into a DENY.
    """


@contextlib.contextmanager
def time_limit(seconds: float = SECONDS_PER_CALL) -> Iterator[None]:
    """Interrupt the body with `Hang` after `seconds` (Unix, main thread; else no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() != threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"the call ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def engine_log() -> Iterator[list[logging.LogRecord]]:
    """The error records the engine logs (an internal failure logs its traceback)."""
    handler = _Records()
    logger = logging.getLogger("policylayer_core")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def describe_records(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    return "\n".join(
        formatter.formatException(r.exc_info) if r.exc_info else r.getMessage() for r in records
    )


def is_sentence(message: str) -> bool:
    """Written as sentences: a capital letter, a quote or a code name first, a full stop last."""
    if not message or message != message.strip():
        return False
    first = message.split(maxsplit=1)[0]
    return (first[0].isupper() or first[0] in "'\"`$" or "_" in first) and message.endswith(
        (".", "?", "!")
    )


def check_decision(decision: Any) -> Decision:
    """What every answer of `decide()` must look like, whatever the call."""
    assert isinstance(decision, Decision), decision
    assert isinstance(decision.effect, Effect)
    assert decision.effect in set(Effect)
    assert isinstance(decision.reason, str) and decision.reason, decision
    assert isinstance(decision.rule, str)
    assert decision.rule == "" or decision.rule.startswith("/"), decision.rule
    assert isinstance(decision.tool, str)
    assert decision.allowed is (decision.effect is Effect.ALLOW or not decision.enforced)
    if decision.effect is Effect.RATE_LIMITED:
        assert decision.retry_after is not None and decision.retry_after > 0, decision
    return decision


def known_bug(document: Any) -> str | None:
    """The xfail corpus case that explains an engine failure on a policy that loaded, if any.

    The fuzzing properties pass over these; the strict xfail cases of
    tests/fuzz_corpus/xfail.json fail once the bug is fixed, and then its line here goes.
    No such bug is open now: every policy that loads must build a working engine.
    """
    del document
    return None


# --- the property -------------------------------------------------------------------------------


def check_issues(error: PolicyError, text: str | None) -> None:
    """Every issue has a pointer and a sentence; a line:column lies inside `text`."""
    assert isinstance(error.issues, list) and error.issues, error
    assert isinstance(error.source, str)
    described = str(error)
    for issue in error.issues:
        assert isinstance(issue, PolicyIssue), issue
        assert isinstance(issue.pointer, str), issue
        assert issue.pointer == "" or issue.pointer.startswith("/"), issue
        assert isinstance(issue.message, str) and is_sentence(issue.message), issue
        assert issue.message in described
        assert (issue.line is None) == (issue.column is None), issue
        if issue.line is None:
            continue
        assert text is not None, f"an issue of a document that is not text has a line: {issue}"
        lines = text.removeprefix("\ufeff").split("\n")
        assert 1 <= issue.line <= len(lines), (issue, len(lines))
        assert issue.column is not None
        assert 1 <= issue.column <= len(lines[issue.line - 1]) + 1, (issue, lines[issue.line - 1])


def probe_calls(loaded: LoadedPolicy) -> Iterator[tuple[str, str, Any, bool]]:
    """A few calls that reach every tool key, hide entry and grant of a loaded policy."""
    identities = ["alice", *list(loaded.grants)[:4]]
    names = ["", "zzz", "qflow_task_batch", "qflow_spec_apply"]
    for policy in loaded.policies.values():
        names += list(policy.tools)[:8] + list(policy.hide)[:3]
    argument_sets: list[Any] = [
        None,
        {"action": "create", "projectRoot": "/srv/projects/a", "tasks": [{"title": "t"}] * 3},
        {"action": "rewrite", "projectRoot": "/srv/projects/../etc", "tasks": 3, "n": -1},
        ["not", "an", "object"],
    ]
    for identity in identities:
        for name in dict.fromkeys(names):
            for args in argument_sets:
                yield identity, name, args, False
            yield identity, name, {"taskId": "T1"}, True


def check_loaded(loaded: Any, *, strict: bool = False) -> LoadedPolicy:
    """A policy that loaded builds an engine, and the engine answers every probe call."""
    assert isinstance(loaded, LoadedPolicy), loaded
    bug = None if strict else known_bug(loaded.raw)
    with time_limit(), engine_log() as records:
        try:
            with warnings.catch_warnings():
                # Python's re warns about a pattern whose meaning will change ("[[a]"), and
                # the engine's bounded regexes (safe_regex) let that warning through when
                # they parse one; pytest's filterwarnings=error must not make it an
                # exception here. load_policy itself must not warn (check_load).
                warnings.filterwarnings("ignore", "Possible ", FutureWarning)
                engine = PolicyEngine(loaded, clock=FakeClock())
        except Exception as exc:
            if bug is not None:
                return loaded
            raise AssertionError(f"a policy that loaded builds no engine: {exc!r}") from exc
        for identity, tool, args, approved in probe_calls(loaded):
            check_decision(engine.decide(identity, tool, args, approved=approved))
        explained = engine.explain("alice", "qflow_task_batch", {"tasks": []})
        check_decision(explained.decision)
    if engine.internal_failures and bug is None:
        pytest.fail(
            f"the engine failed {engine.internal_failures} times on a policy that loaded:\n"
            + describe_records(records)
        )
    return loaded


def check_load(
    load: Callable[[], Any], text: str | None, *, strict: bool = False
) -> LoadedPolicy | PolicyError:
    """Run one load: a policy that works, or a PolicyError that reads well; nothing else.

    `strict` also fails on the known bugs that fuzzing properties pass over (`known_bug`).
    """
    # No warning filter here: under pytest's filterwarnings=error, a warning that loading
    # lets through (re's "Possible nested set" for "[[a]") escapes as an exception.
    try:
        with time_limit():
            loaded = load()
    except PolicyError as error:
        check_issues(error, text)
        return error
    except Exception as exc:
        raise AssertionError(f"loading let {type(exc).__name__} escape: {exc}") from exc
    return check_loaded(loaded, strict=strict)


def dispatches_as_text(text: str) -> bool:
    """Whether `load_policy(text)` reads `text` as JSON text rather than as a path."""
    return text.removeprefix("\ufeff").lstrip().startswith("{")


def _same(a: LoadedPolicy | PolicyError, b: LoadedPolicy | PolicyError) -> bool:
    if isinstance(a, PolicyError) and isinstance(b, PolicyError):
        return a.issues == b.issues
    if isinstance(a, LoadedPolicy) and isinstance(b, LoadedPolicy):
        return a.digest == b.digest
    return False


def check_text(text: str, *, strict: bool = False) -> LoadedPolicy | PolicyError:
    """The property for JSON text: through `load_text` and, as text, through `load_policy`."""
    outcome = check_load(lambda: load_text(text, "<fuzz>"), text, strict=strict)
    if dispatches_as_text(text):
        public = check_load(lambda: load_policy(text), text, strict=strict)
        assert _same(outcome, public), (outcome, public)
    return outcome


# --- seeds --------------------------------------------------------------------------------------


def read_corpus_text(path: Path) -> str:
    """A corpus file as text; bytes that are not UTF-8 become lone surrogates, as in fuzz/."""
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _json_blocks(markdown: str) -> Iterator[str]:
    yield from re.findall(r"```json\n(.*?)```", markdown, re.S)


def _seed_texts() -> dict[str, str]:
    seeds: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        text = path.read_text("utf-8")
        if isinstance(doc := json.loads(text), dict) and "version" in doc:
            seeds[f"examples/{path.name}"] = text
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for i, block in enumerate(_json_blocks(path.read_text("utf-8"))):
            with contextlib.suppress(ValueError):
                if isinstance(json.loads(block), dict):
                    seeds[f"{path.name}#{i}"] = block
    for path in sorted((CORPUS / "load").iterdir()):
        seeds[f"corpus/{path.name}"] = read_corpus_text(path)
    return seeds


SEED_TEXTS = _seed_texts()
SEED_DOCS: dict[str, Any] = {}
for _name, _text in SEED_TEXTS.items():
    with contextlib.suppress(ValueError, RecursionError):
        if isinstance(_doc := json.loads(_text), dict):
            SEED_DOCS[_name] = _doc


def test_the_seeds_are_the_repositorys_policies() -> None:
    assert "examples/qflow-policy.json" in SEED_TEXTS
    assert "corpus/seed-suggest-args-rules.json" in SEED_TEXTS
    assert sum(name.startswith("policy-format.md#") for name in SEED_TEXTS) >= 10
    loaded = [name for name in SEED_DOCS if isinstance(check_text(SEED_TEXTS[name]), LoadedPolicy)]
    assert len(loaded) >= 20


# --- text mutations -----------------------------------------------------------------------------

DEEP_ARRAY = "[" * 300 + "]" * 300
DEEP_OBJECT = '{"a":' * 300 + "1" + "}" * 300
HUGE_INT = "1" + "0" * 400
# Text that JSON parsers and policy loaders tend to get wrong, inserted anywhere.
TOKENS = [
    *'{}[]",:\\',
    "\x00",
    "\ud800",
    "\ufeff",
    "\u00a0",
    "\u200b",
    "\r\n",
    "\\u0000",
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\u0000"',
    "1e400",
    "-1e400",
    "1e-400",
    HUGE_INT,
    "-" + HUGE_INT,
    "18446744073709551616",
    "-0",
    "0.5",
    "true",
    "null",
    "NaN",
    "Infinity",
    "True",
    "//",
    "/*",
    "'",
    DEEP_ARRAY,
    DEEP_OBJECT,
    "[" * 40,
    "}" * 5,
    '"x-note": 1,',
    '"version": "1",',
    '"deny_if": [],',
    '"policies": {},',
    '"grants": {"*": "nope"},',
    '{"path": "args.a.*.b", "op": "regex", "value": "(a+)+$"}',
    '{"path": "identity.x", "op": "exists"}',
    '"op": "len_gt", "value": -1',
    '"window": 0,',
    '"max": 1e308,',
    '"cost": "args.tasks.*",',
]
# Values that replace a scalar of the text: wrong types, edge numbers, near-miss keywords.
VALUE_TOKENS = [
    "{}",
    "[]",
    "[{}]",
    '""',
    '"x"',
    '"*"',
    '"["',
    '"\\ud800"',
    '"\\u0000"',
    '"args."',
    '"args.tasks.*"',
    '"identity.x"',
    '"(?P<x"',
    '"(a+)+$"',
    '"[[a]"',
    '"a{4294967296}"',
    '"minute"',
    '"grant"',
    '"session"',
    '"global"',
    '"deny"',
    '"allow"',
    '"approve"',
    '"shadow"',
    '"2"',
    "0",
    "-1",
    "1.5",
    "1e308",
    "5e-324",
    "-0.0",
    HUGE_INT,
    "true",
    "false",
    "null",
    DEEP_ARRAY,
    DEEP_OBJECT,
]
KEYWORDS = [
    "version",
    "default",
    "hide",
    "all_tools",
    "tools",
    "mode",
    "description",
    "$schema",
    "policies",
    "grants",
    "action",
    "on_deny",
    "schema",
    "require",
    "deny_if",
    "approve_if",
    "limits",
    "conditions",
    "name",
    "path",
    "op",
    "value",
    "max",
    "window",
    "counter",
    "scope",
    "burst",
    "cost",
    "$ref",
    "type",
    "properties",
    "pattern",
]
# Strings a policy is made of: a value of the same type often keeps a mutant loadable.
WORDS = [
    *KEYWORDS,
    *OPERATORS,
    *("second", "minute", "hour", "day", "grant", "identity", "session", "global"),
    *("allow", "deny", "approve", "enforce", "shadow", "1", "2", "*", "qflow_*", "[a-z]*"),
    *("args.tasks", "args.tasks.*.title", "args.0", "tool", "(?i)drop", "/srv/projects/"),
]


_KEY = re.compile(r'"(?:[^"\\\n]|\\.)*"\s*:')
_SCALAR = re.compile(r':\s*("(?:[^"\\\n]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null)')
_STRUCTURAL = re.compile(r"[{\[,:]")
Draw = Callable[..., Any]


def _spot(draw: Draw, text: str) -> int:
    """A position in `text`: anywhere, or just after a bracket, comma or colon."""
    spots = [m.end() for m in _STRUCTURAL.finditer(text)]
    if spots and draw(st.booleans()):
        return int(draw(st.sampled_from(spots)))
    return int(draw(st.integers(0, len(text))))


def _near_miss(draw: Draw, key: str) -> str:
    return str(
        draw(
            st.sampled_from(
                [
                    key.replace("_", "-"),
                    key.upper(),
                    key + " ",
                    "x-" + key,
                    key + "\u200b",
                    key[:-1],
                    key.replace("o", "\u043e"),  # a Cyrillic look-alike
                    key + "\\u0000",
                ]
            )
        )
    )


def _flip(draw: Draw, text: str) -> str:
    at = draw(st.integers(0, max(len(text) - 1, 0)))
    char = draw(st.sampled_from(TOKENS[:12]) | st.characters())
    return text[:at] + char + text[at + 1 :]


def _delete(draw: Draw, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + text[at + draw(st.integers(1, 40)) :]


def _truncate(draw: Draw, text: str) -> str:
    return text[: draw(st.integers(0, len(text)))]


def _insert(draw: Draw, text: str) -> str:
    at = _spot(draw, text)
    return text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]


def _repeat(draw: Draw, text: str) -> str:
    at = _spot(draw, text)
    return text[:at] + text[at : at + draw(st.integers(1, 60))] + text[at:]


def _duplicate_key(draw: Draw, text: str) -> str:
    keys = list(_KEY.finditer(text))
    if not keys:
        return text
    key = draw(st.sampled_from(keys))
    value = draw(st.sampled_from(VALUE_TOKENS))
    return f"{text[: key.start()]}{key.group()} {value}, {text[key.start() :]}"


def _replace_value(draw: Draw, text: str) -> str:
    scalars = list(_SCALAR.finditer(text))
    if not scalars:
        return text
    found = draw(st.sampled_from(scalars))
    value = draw(st.sampled_from(VALUE_TOKENS) | st.sampled_from(WORDS).map(json.dumps))
    return text[: found.start(1)] + value + text[found.end(1) :]


def _rename_key(draw: Draw, text: str) -> str:
    keys = list(_KEY.finditer(text))
    if not keys:
        return text
    found = draw(st.sampled_from(keys))
    old = json.loads(found.group().rstrip(": \t\n\r"))
    new = draw(st.sampled_from(KEYWORDS) | st.just(_near_miss(draw, old)))
    quoted = json.dumps(new, ensure_ascii=False).replace("\\\\u0000", "\\u0000")
    return text[: found.start()] + quoted + ":" + text[found.end() :]


def _frame(draw: Draw, text: str) -> str:
    prefix = draw(st.sampled_from(["\ufeff", "\ufeff\ufeff", " \n\t", "\u00a0", "\ufeff  "]))
    text = prefix + text
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


TEXT_MUTATIONS: list[Callable[[Draw, str], str]] = [
    _flip,
    _delete,
    _truncate,
    _insert,
    _repeat,
    _duplicate_key,
    _replace_value,
    _rename_key,
    _frame,
]


@st.composite
def mutated_texts(draw: Draw) -> str:
    text = SEED_TEXTS[draw(st.sampled_from(sorted(SEED_TEXTS)))]
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4]))):
        text = draw(st.sampled_from(TEXT_MUTATIONS))(draw, text)
    return text


@FUZZ
@given(mutated_texts())
@example('\ufeff{"version": "1", "default": "deny"}')
@example('{"version": "1", "default": "deny", "tools": {"t": {"limits": [{"max": 1e400}]}}}')
def test_mutated_policy_text_loads_or_raises_policy_error(text: str) -> None:
    outcome = check_text(text)
    event("loaded" if isinstance(outcome, LoadedPolicy) else "refused")


# --- document mutations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` levels deep, built only when used (hypothesis prints this)."""

    kind: str
    depth: int

    def build(self) -> Any:
        value: Any = "bottom"
        for _ in range(self.depth):
            value = [value] if self.kind == "array" else {"a": value}
        return value


class _Str(str):
    """A str subclass, as a careless integration might put in a document."""

    __slots__ = ()


SPECIAL_VALUES: list[Any] = [
    10**400,
    -(10**400),
    2**63,
    1e308,
    -0.0,
    5e-324,
    "\ud800",
    "",
    "x-",
    "(a+)+$",
    "[",
    "*",
    "args.",
    "args.*",
    "identity.x",
    "args.tasks",
    Deep("array", 300),
    Deep("object", 300),
    Deep("array", 20_000),
    Deep("object", 20_000),
]
# What only a Python caller can put in a dict: load_policy(dict) must still answer.
PYTHON_VALUES: list[Any] = [
    float("nan"),
    float("inf"),
    (1, "a"),
    {1, 2},
    b"bytes",
    {1: "int key"},
    {None: "None key"},
    _Str("deny"),
    object(),
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(KEYWORDS),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYWORDS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
any_values = json_values | st.sampled_from(SPECIAL_VALUES) | st.sampled_from(PYTHON_VALUES)


def _paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every path into `doc` (without descending more than 40 levels)."""
    found: list[tuple[Any, ...]] = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while todo:
        path, value = todo.pop()
        found.append(path)
        if len(path) >= 40:
            continue
        if isinstance(value, dict):
            todo.extend(((*path, key), child) for key, child in value.items())
        elif isinstance(value, list):
            todo.extend(((*path, i), child) for i, child in enumerate(value))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _material(value: Any) -> Any:
    """A fresh value to put in a document (the shared examples must never be mutated)."""
    return value.build() if isinstance(value, Deep) else copy.deepcopy(value)


def _wrong_type(value: Any) -> Any:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return str(value)
    return {}


def _same_type(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers() | st.sampled_from([0, -1, 1, 2**31, 10**20])
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(value, str):
        return st.sampled_from(WORDS) | st.text(max_size=8)
    if isinstance(value, list) and value:
        # Elements are shared, not copied: a copy of a value 20,000 levels deep would fail.
        return st.lists(st.sampled_from(value), max_size=len(value) + 1)
    return st.just(value)


def mutate_document(draw: Draw, doc: Any) -> Any:
    """One structural change to a parsed document (in place where possible)."""
    path = draw(st.sampled_from(_paths(doc)))
    target = _get(doc, path)
    operations = ["replace", "same_type", "same_type", "wrong_type", "wrap"]
    if path:
        operations.append("delete")
    if isinstance(target, dict):
        operations += ["add_key", "rename_key"] if target else ["add_key"]
    operation = draw(st.sampled_from(operations))
    if operation == "add_key":
        key = draw(st.sampled_from(KEYWORDS) | st.text(max_size=6) | st.sampled_from(["x-k", 7]))
        target[key] = _material(draw(any_values))
        return doc
    if operation == "rename_key":
        old = draw(st.sampled_from(list(target)))
        new = draw(st.sampled_from(KEYWORDS) | st.just(_near_miss(draw, str(old))))
        target[new] = target.pop(old)
        return doc
    if operation == "replace":
        new_value = _material(draw(any_values))
    elif operation == "same_type":
        new_value = draw(_same_type(target))
    elif operation == "wrong_type":
        new_value = _wrong_type(target)
    elif operation == "wrap":
        new_value = draw(st.sampled_from([[target], {"a": target}, {"conditions": [target]}]))
    else:
        new_value = None
    if not path:
        return new_value
    parent = _get(doc, path[:-1])
    if operation == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = new_value
    return doc


def _dumps(doc: Any, indent: int | None, ascii_only: bool) -> str | None:
    """The document as JSON text, when json.dumps can write it at all."""
    try:
        return json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    except (TypeError, ValueError, RecursionError):
        return None


@FUZZ
@given(data=st.data())
def test_mutated_policy_documents_load_or_raise_policy_error(data: st.DataObject) -> None:
    doc = copy.deepcopy(SEED_DOCS[data.draw(st.sampled_from(sorted(SEED_DOCS)), label="seed")])
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4]), label="mutations")):
        doc = mutate_document(data.draw, doc)
    if not isinstance(doc, str):  # a str would be read as a path
        check_load(lambda: load_policy(doc), None)
    indent = data.draw(st.sampled_from([None, 1, 2]), label="indent")
    text = _dumps(doc, indent, data.draw(st.booleans(), label="ensure_ascii"))
    if text is not None:
        outcome = check_text(text)
        event("text loaded" if isinstance(outcome, LoadedPolicy) else "text refused")


# --- paths ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-policies-here")


@FUZZ
@given(name=st.text(max_size=40).map(lambda name: name.replace("..", "")))
@example(name="policy\x00.json")
@example(name="\ufeff{")
def test_a_path_that_does_not_hold_a_policy_is_a_policy_error(empty_dir: Path, name: str) -> None:
    # Joined as text, so the name stays inside the empty directory even when it starts with "/".
    path = f"{empty_dir}/{name}"
    check_load(lambda: load_policy(path), None)
    check_load(lambda: load_policy(Path(path)), None)


@pytest.mark.parametrize(
    "text",
    ["abc\x00def", "\x00", "\ufeff", "\ufeff[1]", "~" * 5000, ".", "/"],
)
def test_text_that_is_not_a_policy_is_read_as_a_path_and_refused(text: str) -> None:
    check_load(lambda: load_policy(text), None)


# --- the corpus ---------------------------------------------------------------------------------

XFAIL: dict[str, str] = json.loads((CORPUS / "xfail.json").read_text("utf-8"))


def corpus_cases(kind: str, check: str | None = None) -> list[Any]:
    """One pytest param per corpus file of `kind`, xfail(strict) when xfail.json lists it.

    xfail.json keys are "KIND/FILE", or "CHECK/FILE" for a check other than the replay of
    the file's own kind (`check` is the CLI replay of the load corpus).
    """
    cases = []
    for path in sorted((CORPUS / kind).iterdir()):
        key = f"{check or kind}/{path.name}"
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[key])] if key in XFAIL else []
        cases.append(pytest.param(path, id=path.name, marks=marks))
    return cases


def test_every_xfail_names_a_corpus_file() -> None:
    for key in XFAIL:
        kind, name = key.split("/", 1)
        assert (CORPUS / {"check": "load"}.get(kind, kind) / name).is_file(), key


@pytest.mark.parametrize("path", corpus_cases("load", "check"))
def test_policylayer_check_reports_on_the_load_corpus(path: Path) -> None:
    """`policylayer check FILE` reports on every file (status 0 or 1), in UTF-8."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as a pipe or a log is
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(["check", str(path)])
        out.flush()
    assert status in (0, 1), status


@pytest.mark.parametrize("path", corpus_cases("load"))
def test_load_corpus(path: Path) -> None:
    """Each file as text, as a file, and (when it is JSON) as a parsed document."""
    text = read_corpus_text(path)
    check_text(text, strict=True)
    check_load(lambda: load_policy(path), text, strict=True)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return
    if isinstance(doc, dict):
        check_load(lambda: load_policy(doc), None, strict=True)


def _deep_x_key() -> dict[str, Any]:
    return {"version": "1", "default": "deny", "x-data": Deep("array", 20_000).build()}


def _deep_condition_value() -> dict[str, Any]:
    condition = {"path": "args.a", "op": "eq", "value": Deep("object", 20_000).build()}
    rule = {"conditions": [condition]}
    return {"version": "1", "default": "deny", "tools": {"t": {"deny_if": [rule]}}}


def _deep_hide_entry() -> dict[str, Any]:
    return {"version": "1", "default": "deny", "hide": [Deep("array", 20_000).build()]}


def _python_values() -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "x-set": {1, 2},
        "tools": {"t": {"x-bytes": b"x", "x-mixed-keys": {1: 2, "b": 3}}, 5: {}},
    }


# Documents found by fuzzing that JSON text cannot express (too deep for json.loads, or
# holding Python values); the corpus of load_policy(dict).
PYTHON_DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "deep-x-key": _deep_x_key,
    "deep-condition-value": _deep_condition_value,
    "deep-hide-entry": _deep_hide_entry,
    "python-values": _python_values,
}


@pytest.mark.parametrize("name", sorted(PYTHON_DOCUMENTS))
def test_python_documents(name: str) -> None:
    doc = PYTHON_DOCUMENTS[name]()
    check_load(lambda: load_policy(doc), None, strict=True)
