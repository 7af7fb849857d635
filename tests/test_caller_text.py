"""Caller text costs bounded time and memory: long names, the caches, reasons and events.

A tool name, an identity or a session is whatever a caller sends. Resolving one against
globs examines at most MAX_TOOL_NAME_LENGTH (MAX_IDENTITY_LENGTH) characters; the caches
that remember resolved names are bounded in characters as well as entries; and no
reason, explanation or audit event embeds more than a bounded prefix of such text.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from typing import Any

import pytest

from conftest import policy
from policylayer_core import Effect, PolicyEngine
from policylayer_core.audit import AUDIT_TEXT_LIMIT, MemorySink
from policylayer_core.compiler import MAX_TOOL_NAME_LENGTH, ROUTE_CACHE_CHARS
from policylayer_core.decision import CALLER_TEXT_LIMIT, cut_caller_text, quote_caller_text
from policylayer_core.engine import IDENTITY_CACHE_CHARS, MAX_IDENTITY_LENGTH
from policylayer_core.globs import BoundedCache

ALLOW, DENY = Effect.ALLOW, Effect.DENY
MB = 1_000_000

# A tool entry whose every decision names the tool: allow, deny_if, approve_if, a schema.
RULES = {
    "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "deny_if": [{"conditions": [{"path": "args.n", "op": "eq", "value": 1}]}],
    "approve_if": [{"conditions": [{"path": "args.n", "op": "eq", "value": 2}]}],
    "limits": [{"window": "minute", "max": 1000}],
}


def route_cache_chars(engine: PolicyEngine) -> int:
    (compiled,) = engine._state.policies.values()
    return compiled._cache.chars


# -- the helper ------------------------------------------------------------------------------


def test_caller_text_is_cut_to_a_prefix_that_says_what_was_cut() -> None:
    assert quote_caller_text("search") == "'search'"
    assert cut_caller_text("search") == "search"
    exact = "x" * CALLER_TEXT_LIMIT
    assert quote_caller_text(exact) == f"'{exact}'"
    long = "y" * 10 * MB
    assert quote_caller_text(long) == f"'{'y' * CALLER_TEXT_LIMIT}…' (9,999,872 more characters)"
    assert cut_caller_text(long, 4) == "yyyy… [9,999,996 more characters]"

    class Loud(str):
        def __str__(self) -> str:
            raise AssertionError("a subclass's own methods are not called")

        def __len__(self) -> int:
            raise AssertionError("a subclass's own methods are not called")

    assert quote_caller_text(Loud("abc")) == "'abc'"
    assert type(cut_caller_text(Loud("abc"))) is str


# -- tool names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        policy(default="allow"),
        policy({"*": RULES}),
        policy({"a*": {}}, hide=["*z"]),
        policy({"q": {}}),
    ],
    ids=["default allow", "glob", "hide glob", "default deny"],
)
def test_a_ten_megabyte_tool_name_gives_a_short_reason_and_a_short_event(
    doc: dict[str, Any],
) -> None:
    # Before: the reason embedded the whole name (10 MB to the client), and the audit
    # event both the name and the reason (a 20 MB line).
    sink = MemorySink()
    engine = PolicyEngine(doc, audit=sink)
    name = "a" * 10 * MB + "z"
    d = engine.decide("i", name, {"n": 1})
    assert (d.effect, d.rule) == (DENY, ""), d.reason[:300]
    assert len(d.reason) < 500
    assert f"longer than {MAX_TOOL_NAME_LENGTH:,} characters" in d.reason
    assert "10,000,001 characters long" in d.reason
    assert len(repr(d)) < 1000
    explained = engine.explain("i", name, {"n": 1})
    assert explained.decision == d and len(str(explained)) < 1500
    engine.close()
    (event,) = sink.events
    line = event.to_json()
    assert len(line) < 2 * AUDIT_TEXT_LIMIT + 2000
    assert json.loads(line)["tool"].endswith("… [9,995,905 more characters]")
    assert route_cache_chars(engine) == 0  # not remembered


def test_names_up_to_the_limit_are_resolved_and_longer_ones_denied_at_the_root() -> None:
    at_limit = "t" * MAX_TOOL_NAME_LENGTH
    over = at_limit + "t"
    engine = PolicyEngine(policy({"t*": {}, over + "!": {}}, hide=["*x"]))
    d = engine.decide("i", at_limit)
    assert (d.effect, d.rule) == (ALLOW, "/tools/t*")
    # The reasons of a name within the limit quote a bounded prefix of it.
    assert f"'{'t' * CALLER_TEXT_LIMIT}…' (896 more characters)" in d.reason
    assert (engine.decide("i", over).effect, engine.decide("i", over).rule) == (DENY, "")
    assert engine.decide("i", over + "x").rule == ""  # not even hide globs are examined
    # An exact key of the policy matches at any length: a policy author's text is trusted.
    assert engine.decide("i", over + "!").rule == "/tools/" + over + "!"
    assert engine.visible_tools("i", [at_limit, over]) == [at_limit]

    shadow = PolicyEngine(policy(default="allow", mode="shadow"))
    d = shadow.decide("i", over)
    assert (d.effect, d.allowed, d.enforced) == (DENY, True, False)


@pytest.mark.parametrize(
    "doc", [policy(default="allow"), policy({"*": RULES})], ids=["default allow", "glob"]
)
def test_fifty_megabyte_names_are_not_kept(doc: dict[str, Any]) -> None:
    # Before: each name was remembered in the route cache with a route whose reasons
    # held copies of it: 50 names of 1 MB kept about a gigabyte.
    engine = PolicyEngine(doc)
    engine.decide("i", "warm-up", {"n": 3})
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(50):
            engine.decide("i", f"{i:02d}" + "n" * MB, {"n": 3})
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 2 * MB
    assert route_cache_chars(engine) == len("warm-up")


def test_the_route_cache_is_bounded_in_characters() -> None:
    engine = PolicyEngine(policy({"*": {k: v for k, v in RULES.items() if k != "limits"}}))
    per_name = MAX_TOOL_NAME_LENGTH
    names = ROUTE_CACHE_CHARS // per_name + 50
    for i in range(names):
        assert engine.decide("i", f"{i:06d}".ljust(per_name, "n"), {"n": 3}).effect is ALLOW
    assert route_cache_chars(engine) <= ROUTE_CACHE_CHARS
    assert route_cache_chars(engine) > ROUTE_CACHE_CHARS - per_name


def test_a_huge_name_against_a_thousand_globs_answers_quickly() -> None:
    # Before: every glob scanned the whole name: about 11 s for a 1 MB name here, a
    # minute and more for 10 MB. Now a name over the limit is matched against none.
    engine = PolicyEngine(policy({f"*-{i:04d}-*": {} for i in range(1000)}))
    name = "a" * 2 * MB
    started = time.perf_counter()
    assert engine.decide("i", name).rule == ""
    assert engine.decide("i", name + "b").rule == ""
    assert time.perf_counter() - started < 2.0


# -- identities ------------------------------------------------------------------------------

BUNDLE = {
    "version": "1",
    "policies": {"p": {"version": "1", "default": "allow"}},
    "grants": {"user-*": "p"},
}


def test_a_huge_identity_is_not_matched_against_grant_globs_nor_kept() -> None:
    sink = MemorySink()
    long_exact = "u" * (MAX_IDENTITY_LENGTH + 10)
    engine = PolicyEngine({**BUNDLE, "grants": {**BUNDLE["grants"], long_exact: "p"}}, audit=sink)
    at_limit = "user-" + "x" * (MAX_IDENTITY_LENGTH - 5)
    assert engine.decide(at_limit, "t").effect is ALLOW
    assert engine.decide(long_exact, "t").effect is ALLOW  # exact grants: any length
    huge = "user-" + "x" * 10 * MB
    d = engine.decide(huge, "t", session="s" * 10 * MB)
    assert (d.effect, d.rule) == (DENY, "") and len(d.reason) < 600
    assert f"at most {MAX_IDENTITY_LENGTH:,} characters" in d.reason
    explained = engine.explain(huge, "t")
    assert explained.decision == d and len(str(explained)) < 1500
    engine.close()
    state = engine._state
    assert state._cache.chars == len(at_limit) and len(at_limit) <= IDENTITY_CACHE_CHARS
    event = [e for e in sink.events if e.kind == "decision"][-1]
    assert len(event.to_json()) < 3 * AUDIT_TEXT_LIMIT + 2000
    assert event.identity is not None and event.identity.endswith(" more characters]")


def test_an_identity_without_a_grant_is_named_by_a_prefix() -> None:
    engine = PolicyEngine({**BUNDLE, "grants": {"alice": "p"}})
    d = engine.decide("b" * MB, "t")
    assert (d.effect, d.rule) == (DENY, "/grants")  # no glob was skipped: simply no grant
    assert len(d.reason) < 500 and "(999,872 more characters)" in d.reason
    assert engine._state._cache.chars == 0


# -- the cache itself ------------------------------------------------------------------------


def test_bounded_cache_evicts_the_oldest_by_entries_and_by_characters() -> None:
    cache: BoundedCache[int] = BoundedCache(3, 10)
    for key in ("aa", "bb", "cc", "dd"):
        cache.put(key, len(key))
    assert [k for k in ("aa", "bb", "cc", "dd") if cache.get(k) is not None] == ["bb", "cc", "dd"]
    assert cache.put("eeeeeee", 7) == 7  # 6 + 7 > 10: the two oldest go
    assert (len(cache), cache.chars, cache.get("bb"), cache.get("dd")) == (2, 9, None, 2)
    assert cache.put("f" * 11, 1) == 1 and cache.get("f" * 11) is None  # never fits
    cache.put("dd", 5)  # an update costs nothing more
    assert (len(cache), cache.chars, cache.get("dd")) == (2, 9, 5)
