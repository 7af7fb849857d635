"""Bounded regex work (issue 9): `re.search`'s verdicts within the limits, a refusal beyond.

Set POLICYLAYER_FUZZ_EXAMPLES to run the differential test with more examples. No test
here measures time: each asserts what a search answered, or that it was refused.
"""

from __future__ import annotations

import array
import os
import re
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import FakeClock, policy
from policylayer_core import Effect, PolicyEngine
from policylayer_core._charsets import atom_set
from policylayer_core.conditions import Indeterminate, compile_condition
from policylayer_core.regex_safety import linear_safe
from policylayer_core.safe_regex import (
    DEFAULT_REGEX_LIMITS,
    RegexLimits,
    RegexRefused,
    bounded_search,
    compile_search,
    required_literal,
    reversed_search,
)
from policylayer_core.validators import compile_validator

EXAMPLES = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
GENEROUS = RegexLimits(timeout=30.0)  # the differential test compares verdicts, not speed
MAX = DEFAULT_REGEX_LIMITS.max_input
EVIL = "(a+)+$"

# -- the differential test ----------------------------------------------------------------

# Characters where `re` and other engines tend to disagree: case folding beyond ASCII
# (long s, Kelvin sign, dotted I, final sigma, sharp s), digits and word characters
# beyond ASCII, \x1c (a space to `re` only), a combining mark, a lone surrogate, astral.
CHARS = [
    *"abABkKsS_- 1\n\t",
    *"\u017f\u212a\u00e9\u00c9\u00df\u1e9e\u0130i\u0131\u0661\uff11\x1c\u0301",
    *"\u4e2d\U0001f600\ud800\u03c3\u03c2\u03a3\xb2",
]
LEAVES = [
    *"abAks1_-",
    "\u00e9",
    "\u00df",
    "\u03c3",
    " ",
    r"\n",
    *[r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "."],
    *["[a-c]", "[^ab]", r"[\w-]", r"[^\W\d]", "[k-s]", r"[\s\d]", "[\u00e0-\u00ff]"],
    *[r"\u017f", r"\u212a", "^", "$", r"\A", r"\Z", r"\b", r"\B", "(?!)"],
]
QUANTIFIERS = ["*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "+?", "??", "{1,3}?", "*+", "++"]


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map("".join),
        pair.map(lambda p: f"(?:{p[0]}|{p[1]})"),
        inner.map(lambda p: f"({p})"),
        st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda p: f"(?:{p[0]}){p[1]}"),
        inner.map(lambda p: f"(?>{p})"),
        inner.map(lambda p: f"(?={p})"),
        inner.map(lambda p: f"(?!{p})"),
        st.tuples(st.sampled_from(["i", "m", "s", "a", "-i", "i-s"]), inner).map(
            lambda p: f"(?{p[0]}:{p[1]})"
        ),
    )


PATTERNS = st.tuples(
    st.sampled_from(["", "", "(?i)", "(?m)", "(?s)", "(?a)", "(?ai)", "(?im)"]),
    st.recursive(st.sampled_from(LEAVES), _grow, max_leaves=8),
    st.sampled_from(["", "", "", r"\1", "(?(1)a|b)", "(?<=a)", r"(?<!\w)", "$", r"(?i:\1)"]),
).map("".join)
TEXTS = st.lists(st.sampled_from(CHARS), max_size=10).map("".join)


@FUZZ
@given(pattern=PATTERNS, texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_verdicts_equal_re_search(pattern: str, texts: list[str]) -> None:
    try:
        expected = re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        assume(False)
        return
    # The bounded engine is tried on every pattern, not only those linear_safe sends to it,
    # and the mirrored search on every pattern it can mirror, linear or not.
    searches = [bounded_search(pattern, GENEROUS), compile_search(pattern, GENEROUS)]
    mirrored = reversed_search(pattern, GENEROUS)
    if mirrored is not None:
        searches.append(mirrored)
    for search in searches:
        for text in texts:
            try:
                got = search(text)
            except RegexRefused as refused:
                # The one documented refusal within the limits (see safe_regex).
                assert "outside ASCII" in refused.reason
                assert not text.isascii()
                continue
            assert got is (expected.search(text) is not None), (pattern, text)


# Patterns the mirrored search can take (no lookarounds, atomic groups, possessive
# repeats or backreferences), so that nearly every example exercises it.
MIRRORABLE_LEAVES = [leaf for leaf in LEAVES if leaf != "(?!)"]
MIRRORABLE_QUANTIFIERS = [q for q in QUANTIFIERS if not q.endswith("+") or q == "+"]


def _grow_mirrorable(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map("".join),
        pair.map(lambda p: f"(?:{p[0]}|{p[1]})"),
        inner.map(lambda p: f"({p})"),
        st.tuples(inner, st.sampled_from(MIRRORABLE_QUANTIFIERS)).map(
            lambda p: f"(?:{p[0]}){p[1]}"
        ),
        st.tuples(st.sampled_from(["i", "m", "s", "a", "-i", "i-s"]), inner).map(
            lambda p: f"(?{p[0]}:{p[1]})"
        ),
    )


MIRRORABLE = st.tuples(
    st.sampled_from(["", "", "(?i)", "(?m)", "(?s)", "(?a)", "(?im)", "^", r"\A"]),
    st.recursive(st.sampled_from(MIRRORABLE_LEAVES), _grow_mirrorable, max_leaves=8),
    st.sampled_from(["", "$", "$", r"\Z", "\n$", "(?m:$)", r"\b"]),
).map("".join)


@FUZZ
@given(pattern=MIRRORABLE, texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_mirrored_verdicts_equal_re_search(pattern: str, texts: list[str]) -> None:
    """The mirrored search (`reversed_search`, which runs end-anchored patterns such as
    `\\s+$` in linear time) finds a match exactly when `re.search` does."""
    try:
        expected = re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        assume(False)
        return
    mirrored = reversed_search(pattern, GENEROUS)
    assert mirrored is not None, pattern
    for text in [*texts, *(text + "\n" for text in texts)]:
        assert mirrored(text) is (expected.search(text) is not None), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        EVIL,
        r"(\w+\s?)+$",
        r"^(([a-z])+.)+[A-Z]([a-z])+$",
        "(a|aa)+$",
        ".*a.*b",
        r"(\w+) \1",
        r"\bx\B",
        "(?s).*x",
        r"(?m)^a$",
    ],
)
def test_risky_patterns_answer_like_re_on_short_strings(pattern: str) -> None:
    search = compile_search(pattern, GENEROUS)
    for text in ["", "a", "aaaaaaaaaaaa!", "ab\n", "Word word", "x\u00e9", "a\nab", "é"]:
        assert search(text) is (re.search(pattern, text) is not None), text


# -- the bound ---------------------------------------------------------------------------------


def test_a_catastrophic_pattern_answers_without_hanging() -> None:
    # `re` needs about 2**30 steps here; the bounded engine answers as re eventually would.
    assert compile_search(EVIL, GENEROUS)("a" * 30 + "!") is False
    assert compile_search(EVIL, GENEROUS)("a" * 30) is True


@pytest.mark.parametrize("pattern", ["^[a-z]+$", EVIL])  # linear_safe, and not
def test_the_length_cap_is_exact(pattern: str) -> None:
    assert linear_safe(pattern) is (pattern != EVIL)
    search = compile_search(pattern, GENEROUS)
    assert search("a" * MAX) is True
    with pytest.raises(RegexRefused) as refused:
        search("a" * (MAX + 1))
    assert refused.value.reason == (
        "The string is 10,001 characters long, over the 10,000 characters a regex may "
        "examine (arguments.max_regex_input), so the pattern cannot be judged safely."
    )


def test_a_search_past_its_time_is_refused() -> None:
    # A timeout of zero makes every search on the bounded engine run out of time.
    search = compile_search(EVIL, RegexLimits(timeout=0.0))
    with pytest.raises(RegexRefused) as refused:
        search("aaa")
    assert refused.value.about("the argument args.q") == (
        "Matching the argument args.q against the pattern took longer than the 0 s a regex may run"
    )
    # A linear_safe pattern runs on `re`, which needs no time bound.
    assert compile_search("^a+$", RegexLimits(timeout=0.0))("aaa") is True


def test_case_insensitive_backreferences_refuse_non_ascii_text() -> None:
    search = compile_search(r"(?i)(\w+)+ \1", GENEROUS)
    assert search("Abc aBC") is True
    with pytest.raises(RegexRefused, match="outside ASCII"):
        search("\u017f \u017f")


# -- through the engine ------------------------------------------------------------------------


def _engine(tools: dict[str, Any]) -> PolicyEngine:
    return PolicyEngine.from_dict(policy(tools), clock=FakeClock())


def test_an_over_long_argument_denies_at_the_regex_condition() -> None:
    condition = {"path": "args.title", "op": "regex", "value": EVIL}
    engine = _engine({"t": {"deny_if": [{"conditions": [condition]}]}})
    d = engine.decide("alice", "t", {"title": "a" * 12_000})
    assert d.effect is Effect.DENY
    assert d.rule == "/tools/t/deny_if/0/conditions/0"
    assert d.reason == (
        "The argument args.title is 12,000 characters long, over the 10,000 characters a "
        "regex may examine (arguments.max_regex_input); the call is denied because the "
        "pattern cannot be judged safely."
    )
    assert engine.decide("alice", "t", {"title": "a" * 30 + "!"}).effect is Effect.ALLOW
    assert engine.decide("alice", "t", {"title": "aaa"}).effect is Effect.DENY


def test_a_catastrophic_near_miss_is_decided() -> None:
    # Whether the bounded engine answers (no match: the requirement fails) or runs out of
    # time (indeterminate), the call is denied at the same place and nothing hangs.
    engine = _engine({"t": {"require": [{"path": "args.q", "op": "regex", "value": EVIL}]}})
    d = engine.decide("alice", "t", {"q": "a" * 30 + "!"})
    assert (d.effect, d.rule) == (Effect.DENY, "/tools/t/require/0")


@pytest.mark.parametrize("path", ["args.q", "args.items.*", "args.deep.q"])
def test_a_refusal_is_indeterminate_on_every_path_shape(path: str) -> None:
    check = compile_condition(
        "/x", path, "regex", EVIL, True, regex_limits=RegexLimits(timeout=0.0)
    )
    args = {"q": "aaa", "items": ["aaa"], "deep": {"q": "aaa"}}
    with pytest.raises(Indeterminate) as unknown:
        check("alice", "t", args, None)
    assert unknown.value.pointer == "/x"
    assert unknown.value.reason.startswith(f"Matching the argument {path} against the pattern")
    assert unknown.value.reason.endswith(
        "the call is denied because the pattern cannot be judged safely."
    )


def test_a_schema_pattern_past_the_cap_denies_with_a_reason() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string", "pattern": EVIL}}}
    engine = _engine({"t": {"schema": schema}})
    d = engine.decide("alice", "t", {"title": "a" * 10_001})
    assert (d.effect, d.rule) == (Effect.DENY, "/tools/t/schema")
    assert d.reason == (
        "The arguments for 't' do not match its schema: at args.title, the string is 10,001 "
        "characters long, over the 10,000 characters a regex may examine "
        "(arguments.max_regex_input), so it cannot be checked against the pattern "
        "'(a+)+$' safely ('pattern'). Fix the arguments and call again."
    )
    assert engine.decide("alice", "t", {"title": "a" * 10_000}).effect is Effect.ALLOW
    assert engine.decide("alice", "t", {"title": "a" * 30 + "!"}).effect is Effect.DENY


LONG = "a" * (MAX + 1)


@pytest.mark.parametrize(
    ("schema", "instance", "path", "keyword"),
    [
        # Under `not` or `anyOf`, "could not be checked" must not become a pass.
        ({"not": {"pattern": EVIL}}, LONG, (), "pattern"),
        ({"anyOf": [{"pattern": EVIL}, {"type": "string"}]}, LONG, (), "pattern"),
        ({"properties": {"a": {"not": {"pattern": "^b"}}}}, {"a": LONG}, ("a",), "pattern"),
        (
            {"$defs": {"p": {"pattern": EVIL}}, "items": {"$ref": "#/$defs/p"}},
            [LONG],
            (0,),
            "pattern",
        ),
        ({"patternProperties": {EVIL: {"type": "null"}}}, {LONG: None}, (), "patternProperties"),
        (
            {"patternProperties": {"^x": True}, "additionalProperties": False},
            {LONG: 1},
            (),
            "additionalProperties",
        ),
        ({"patternProperties": {"^x": {}}, "additionalProperties": {}}, {LONG: 1}, (), None),
        # jsonschema itself checks these keywords; its regexes are bounded the same way.
        ({"propertyNames": {"pattern": "^x"}}, {LONG: 1}, (), "pattern"),
        (
            {"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
            {LONG: 1},
            (),
            "patternProperties",  # the first keyword to meet the key
        ),
        (
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "patternProperties": {"^x": {}},
                "unevaluatedProperties": False,
            },
            {LONG: 1},
            (),
            "patternProperties",  # the first keyword to meet the key
        ),
        ({"$id": "https://example.com/s", "pattern": "^a"}, LONG, (), "pattern"),
    ],
)
def test_schema_refusals_make_the_instance_invalid(
    schema: dict[str, Any], instance: Any, path: tuple[Any, ...], keyword: str | None
) -> None:
    violation = compile_validator(schema)(instance)
    if keyword is None:  # the key's verdict changes nothing here, so it is not needed
        assert violation is None
        return
    assert violation is not None
    assert (violation.path, violation.keyword) == (path, keyword)
    assert "10,001 characters long" in violation.message
    assert "cannot be checked against the pattern" in violation.message


def test_schema_regex_limits_are_threaded_through() -> None:
    validate = compile_validator({"pattern": EVIL}, regex_limits=RegexLimits(max_input=5))
    assert validate("aaaaa") is None
    violation = validate("aaaaaa")
    assert violation is not None and "6 characters long, over the 5" in violation.message


# -- the analysis --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?i)drop\s+table",
        "(?i)password|密码",
        r"(^|/)\.\.(/|$)",
        "^[a-z0-9-]+$",
        r"\.(exe|sh)$",
        r"rm\s+-rf",
        "^/srv/.*",
        "x[^x]*y",
        r"^\d+(?:\.\d+)?$",
        r"\bfoo\b",
        r"\d{3}-\d{4}",
        r"https?://(www\.)?example\.com/\S*",
        r"(?i)(drop|delete)\s+(table|database)",
    ],
)
def test_common_patterns_are_linear_safe(pattern: str) -> None:
    assert linear_safe(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        EVIL,  # exponential
        "(a|aa)+$",  # overlapping alternatives under a repeat
        r"(\d+,)+",  # a repeat of more than one character
        ".*a.*b",  # two unbounded repeats over the same characters: cubic
        r"\w+@",  # quadratic: every start position rescans the run of letters
        "[a-z]+\\d",
        ".*secret",
        r"(?m)^\s*#",  # \s crosses lines, so line starts do not guard it
        "(?=.*x)",  # a lookahead that scans
        r"(a)\1",  # backreferences
        r"x[a-z]+,.*y",
    ],
)
def test_risky_patterns_are_not_linear_safe(pattern: str) -> None:
    assert not linear_safe(pattern)


@pytest.mark.parametrize(
    "source",
    [
        r"(?i:k)",
        r"(?i:[^a-z])",
        r"[^\d\s]",
        r"(?i:[^\W\d])",
        r"(?a:\w)",
        r"(?ai:[^k])",
        ".",
        "(?s:.)",
        "(?i:\u0130)",
        r"(?i:[^σ])",
        r"\W",
    ],
)
def test_character_sets_are_the_ones_re_matches(source: str) -> None:
    everything = array.array("I", range(0x110000)).tobytes().decode("utf-32-le", "surrogatepass")
    parsed = re._parser.parse(source)  # type: ignore[attr-defined]
    (op, av), *inner = parsed.data
    flags = parsed.state.flags
    if str(op) == "SUBPATTERN":  # (?flags:item)
        flags = (flags & ~(re.ASCII | re.UNICODE) if av[1] & re.ASCII else flags) | av[1]
        (op, av), *inner = av[3]
    assert not inner
    expected = [(m.start(), m.end() - 1) for m in re.finditer(f"(?:{source})+", everything)]
    assert list(atom_set(str(op), av, flags)) == expected


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r"(^|/)\.\.(/|$)", ".."),
        (r"drop\s+table", "table"),
        ("ab?c", "a"),
        ("(?x) a b  c", "abc"),
        ("abc|d", None),  # a top-level alternation: no character is in every match
        ("(?i)drop", None),  # case folded: the plain text need not appear
        ("^$", None),
    ],
)
def test_required_literal_is_in_every_match(pattern: str, literal: str | None) -> None:
    assert required_literal(pattern) == literal
    if literal is not None:
        search = compile_search(pattern)
        assert not search("x" * 50)  # answered by the literal test alone
        for text in ("x/../y", "drop   table", "abc", "ac", "a b c", literal * 3):
            assert search(text) == (re.search(pattern, text) is not None), text


def test_an_engine_builds_under_warnings_as_errors() -> None:
    """`[[a]` makes re warn ("possible nested set"); with -W error no step of loading and
    compiling the policy may turn that warning into an exception."""
    doc = {
        "version": "1",
        "default": "deny",
        "tools": {
            "t": {
                "deny_if": [{"conditions": [{"path": "args.a", "op": "regex", "value": "[[a]"}]}],
                "schema": {"properties": {"b": {"pattern": "[[a]"}}},
            }
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = PolicyEngine.from_dict(doc)
    assert engine.decide("i", "t", {"a": "[a"}).rule == "/tools/t/deny_if/0"
