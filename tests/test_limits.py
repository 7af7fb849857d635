"""Token-bucket limits through the engine, with a fake clock (never a sleep)."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest import FakeClock, policy
from policylayer_core import Decision, Effect, PolicyEngine
from policylayer_core.ratelimit import StoreUnavailable

ALLOW, DENY, RATE, APPROVAL = (
    Effect.ALLOW,
    Effect.DENY,
    Effect.RATE_LIMITED,
    Effect.APPROVAL_REQUIRED,
)


def engine_for(doc: dict[str, Any], clock: FakeClock) -> PolicyEngine:
    return PolicyEngine(doc, clock=clock)


def passes(
    engine: PolicyEngine, n: int, tool: str = "t", identity: str = "i", args: Any = None, **kw: Any
) -> int:
    return sum(engine.decide(identity, tool, args, **kw).effect is ALLOW for _ in range(n))


SEED = policy(
    {
        "qflow_task_batch": {
            "limits": [
                {
                    "counter": "qflow_task_batch_rate",
                    "window": "minute",
                    "max": 30,
                    "scope": "grant",
                }
            ]
        }
    }
)


def test_thirty_per_minute_then_rate_limited_for_two_seconds(clock: FakeClock) -> None:
    engine = engine_for(SEED, clock)
    assert passes(engine, 30, "qflow_task_batch") == 30
    d = engine.decide("i", "qflow_task_batch")
    assert d.effect is RATE and not d.allowed
    assert d.rule == "/tools/qflow_task_batch/limits/0"
    assert d.retry_after == pytest.approx(2.0)
    assert (
        d.reason == "Rate limit 'qflow_task_batch_rate' (30 per minute) exceeded; retry in 2.0 s."
    )
    clock.advance(1.9)
    assert engine.decide("i", "qflow_task_batch").effect is RATE
    clock.advance(0.1)
    assert engine.decide("i", "qflow_task_batch").effect is ALLOW
    assert engine.decide("i", "qflow_task_batch").effect is RATE


def test_sustained_rate_over_simulated_minutes(clock: FakeClock) -> None:
    engine = engine_for(SEED, clock)
    passed = 0
    for _ in range(600):  # one call a second for ten minutes
        passed += engine.decide("i", "qflow_task_batch").effect is ALLOW
        clock.advance(1.0)
    assert abs(passed - (30 + 600 / 2)) <= 1
    steady = engine_for(SEED, clock)
    for _ in range(200):  # slower than the refill: never limited
        assert steady.decide("j", "qflow_task_batch").effect is ALLOW
        clock.advance(2.0)


def test_burst_and_numeric_windows(clock: FakeClock) -> None:
    engine = engine_for(policy({"t": {"limits": [{"max": 5, "window": 90, "burst": 2}]}}), clock)
    assert passes(engine, 5) == 2
    d = engine.decide("i", "t")
    assert d.retry_after == pytest.approx(18.0)  # one token every 90/5 s
    assert "(5 per 90 s)" in d.reason
    clock.advance(36.0)
    assert passes(engine, 5) == 2


@pytest.mark.parametrize(
    ("scope", "shared_by"),
    [("grant", "session"), ("identity", "session"), ("session", None), ("global", "identity")],
)
def test_scopes(clock: FakeClock, scope: str, shared_by: str | None) -> None:
    engine = engine_for(
        policy({"t": {"limits": [{"max": 2, "window": "hour", "scope": scope}]}}), clock
    )
    assert passes(engine, 3, identity="a", session="s1") == 2
    other_session = passes(engine, 1, identity="a", session="s2")
    other_identity = passes(engine, 1, identity="b", session="s1")
    assert other_session == (0 if shared_by in ("session", "identity") else 1)
    assert other_identity == (0 if shared_by == "identity" else 1)


def test_named_counters_share_a_bucket_across_tools_unnamed_never_do(clock: FakeClock) -> None:
    w = {"counter": "writes", "window": "minute", "max": 3}
    anon = {"window": "minute", "max": 3}
    engine = engine_for(
        policy(
            {
                "a": {"limits": [w]},
                "b": {"limits": [w]},
                "c": {"limits": [anon]},
                "d": {"limits": [anon]},
            }
        ),
        clock,
    )
    assert passes(engine, 2, "a") + passes(engine, 2, "b") == 3
    assert passes(engine, 3, "c") == 3 and passes(engine, 3, "d") == 3
    d = engine.decide("i", "c")
    assert "'/tools/c/limits/0'" in d.reason


def test_all_or_nothing_and_retry_after_is_the_longest_wait(clock: FakeClock) -> None:
    doc = policy(
        {"t": {"limits": [{"counter": "tool", "window": "minute", "max": 2}]}, "u": {}},
        all_tools={"limits": [{"counter": "all", "window": 10, "max": 5}]},
    )
    engine = engine_for(doc, clock)
    assert passes(engine, 2) == 2
    d = engine.decide("i", "t")
    assert (d.effect, d.rule) == (RATE, "/tools/t/limits/0")
    # the refused call took nothing from 'all': three more calls to another tool fit
    assert passes(engine, 3, "u") == 3
    d = engine.decide("i", "t")
    # 'all' is now empty too (2 s per token) and is named first; 'tool' needs 30 s - 0 s
    assert (d.effect, d.rule) == (RATE, "/all_tools/limits/0")
    assert d.retry_after == pytest.approx(30.0)


def test_cost_literal_and_from_arguments(clock: FakeClock) -> None:
    doc = policy(
        {
            "lit": {"limits": [{"counter": "a", "window": "hour", "max": 10, "cost": 4}]},
            "path": {
                "limits": [{"counter": "b", "window": "hour", "max": 10, "cost": "args.tasks"}]
            },
        }
    )
    engine = engine_for(doc, clock)
    assert passes(engine, 3, "lit") == 2
    assert engine.decide("i", "path", {"tasks": [1, 2, 3, 4, 5, 6]}).effect is ALLOW
    assert engine.decide("i", "path", {"tasks": "abc"}).effect is ALLOW  # a string's length
    assert engine.decide("i", "path", {"tasks": {"k": 1}}).effect is ALLOW  # an object's size
    assert engine.decide("i", "path", {"tasks": 0}).effect is ALLOW  # takes nothing
    assert engine.decide("i", "path", {"tasks": 0.0}).effect is ALLOW
    assert engine.decide("i", "path", {}).effect is RATE  # a missing path costs 1, and 10 are spent
    assert engine.decide("i", "path", {"tasks": []}).effect is ALLOW  # cost 0 passes even now


@pytest.mark.parametrize("bad", [-1, 1.5, True, None, float("nan"), float("inf")])
def test_unusable_cost_is_indeterminate(clock: FakeClock, bad: Any) -> None:
    engine = engine_for(
        policy({"t": {"limits": [{"window": "hour", "max": 10, "cost": "args.n"}]}}), clock
    )
    d = engine.decide("i", "t", {"n": bad})
    assert (d.effect, d.rule) == (DENY, "/tools/t/limits/0")
    assert "args.n" in d.reason


def test_cost_above_burst_is_denied_not_rate_limited(clock: FakeClock) -> None:
    engine = engine_for(
        policy(
            {
                "t": {
                    "limits": [
                        {"counter": "w", "window": "minute", "max": 30, "cost": "args.tasks"}
                    ]
                }
            }
        ),
        clock,
    )
    d = engine.decide("i", "t", {"tasks": list(range(31))})
    assert (d.effect, d.rule, d.retry_after) == (DENY, "/tools/t/limits/0", None)
    assert "can never pass" in d.reason
    assert passes(engine, 1, args={"tasks": list(range(30))}) == 1


def test_a_counter_named_by_all_tools_and_the_tool_is_charged_once_with_the_larger_cost(
    clock: FakeClock,
) -> None:
    lim = {"counter": "w", "window": "hour", "max": 10}
    engine = engine_for(
        policy({"t": {"limits": [{**lim, "cost": 3}]}}, all_tools={"limits": [lim]}), clock
    )
    assert passes(engine, 4) == 3  # 3 tokens a call, not 4


def test_denied_and_approval_calls_take_nothing_approved_calls_do(clock: FakeClock) -> None:
    doc = policy(
        {
            "t": {
                "deny_if": [{"conditions": [{"path": "args.bad", "op": "eq", "value": True}]}],
                "approve_if": [{"conditions": [{"path": "args.big", "op": "eq", "value": True}]}],
                "limits": [{"window": "hour", "max": 2}],
            }
        }
    )
    engine = engine_for(doc, clock)
    for _ in range(5):
        assert engine.decide("i", "t", {"bad": True}).effect is DENY
        assert engine.decide("i", "t", {"big": True}).effect is APPROVAL
    assert engine.decide("i", "t", {"big": True}, approved=True).effect is ALLOW
    assert passes(engine, 2) == 1


def test_refund_gives_back_exactly_once(clock: FakeClock) -> None:
    engine = engine_for(
        policy({"t": {"limits": [{"window": "hour", "max": 5, "cost": "args.n"}]}}), clock
    )
    first = engine.decide("i", "t", {"n": 3})
    assert engine.decide("i", "t", {"n": 3}).effect is RATE
    first.refund()
    first.refund()
    second = engine.decide("i", "t", {"n": 3})
    assert second.effect is ALLOW
    assert engine.decide("i", "t", {"n": 3}).effect is RATE  # the second refund gave nothing
    engine.decide("i", "t", {"n": 9}).refund()  # a denial has nothing to give back
    second.refund()
    second.refund()
    assert passes(engine, 1, args={"n": 5}) == 1  # never above burst


def test_explain_takes_nothing(clock: FakeClock) -> None:
    engine = engine_for(SEED, clock)
    for _ in range(50):
        ex = engine.explain("i", "qflow_task_batch")
        assert ex.decision.effect is ALLOW
    assert passes(engine, 31, "qflow_task_batch") == 30
    ex = engine.explain("i", "qflow_task_batch")
    assert ex.decision.effect is RATE and "rate limited" in str(ex)


def test_reload_keeps_unchanged_counters_and_resets_changed_ones(clock: FakeClock) -> None:
    lim = {"counter": "w", "window": "minute", "max": 3}
    engine = engine_for(
        policy(
            {
                "t": {"limits": [lim]},
                "u": {"limits": [{"counter": "v", "window": "minute", "max": 3}]},
            }
        ),
        clock,
    )
    passes(engine, 3, "t")
    passes(engine, 3, "u")
    engine.reload(
        policy(
            {
                "t": {"limits": [lim]},
                "u": {"limits": [{"counter": "v", "window": "minute", "max": 4}]},
                "x": {},
            }
        )
    )
    assert passes(engine, 1, "t") == 0  # unchanged: still empty
    assert passes(engine, 4, "u") == 4  # max changed: a new, full bucket


def test_counters_in_two_policies_of_a_bundle_are_separate(clock: FakeClock) -> None:
    sub = {
        "version": "1",
        "default": "deny",
        "tools": {
            "t": {"limits": [{"counter": "w", "window": "hour", "max": 2, "scope": "global"}]}
        },
    }
    doc = {"version": "1", "policies": {"a": sub, "b": sub}, "grants": {"x": "a", "y": "b"}}
    engine = engine_for(doc, clock)
    assert passes(engine, 3, identity="x") == 2
    assert passes(engine, 3, identity="y") == 2


def test_grant_scope_is_per_identity_within_one_policy(clock: FakeClock) -> None:
    sub = {
        "version": "1",
        "default": "deny",
        "tools": {"t": {"limits": [{"window": "hour", "max": 1}]}},
    }
    engine = engine_for({"version": "1", "policies": {"p": sub}, "grants": {"*": "p"}}, clock)
    assert [passes(engine, 2, identity=who) for who in ("a", "b", "c")] == [1, 1, 1]


def test_shadow_mode_counts_but_lets_through(clock: FakeClock) -> None:
    engine = engine_for(
        policy({"t": {"limits": [{"window": "hour", "max": 1}]}}, mode="shadow"), clock
    )
    first, second = engine.decide("i", "t"), engine.decide("i", "t")
    assert (first.effect, second.effect) == (ALLOW, RATE)
    assert second.allowed and not second.enforced


def test_eight_threads_racing_one_bucket_never_exceed_it() -> None:
    frozen = FakeClock()
    engine = PolicyEngine(
        policy({"t": {"limits": [{"window": "day", "max": 1000, "scope": "global"}]}}), clock=frozen
    )
    allowed = [0] * 8
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        barrier.wait()
        allowed[k] = passes(engine, 500, identity=f"w{k}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 1000


def test_memory_is_bounded_by_active_callers(clock: FakeClock) -> None:
    engine = engine_for(policy({"t": {"limits": [{"window": "second", "max": 10}]}}), clock)
    for k in range(20_000):
        engine.decide(f"user-{k}", "t")
    clock.advance(5.0)  # every bucket is full again
    for _ in range(200):
        engine.decide("late", "t")
        clock.advance(0.001)
    assert len(engine.store) < 1_000  # type: ignore[arg-type]


# -- the engine against a reference model of the buckets --------------------------------

EXAMPLES = int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "60"))

MODEL_DOC = policy(
    {
        "a": {
            "limits": [{"counter": "shared", "window": 10, "max": 4, "burst": 6, "cost": "args.n"}]
        },
        "b": {
            "limits": [
                {"counter": "shared", "window": 10, "max": 4, "burst": 6},
                {"counter": "b", "window": 3, "max": 2},
            ]
        },
    },
    all_tools={"limits": [{"counter": "all", "window": 5, "max": 5, "scope": "global"}]},
)
SPECS = {"shared": (0.4, 6.0), "b": (2 / 3, 2.0), "all": (1.0, 5.0)}


class EngineAgainstModel(RuleBasedStateMachine):
    """Integer-millisecond time steps keep the model's floats far from exact ties."""

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock(0.0)
        self.engine = PolicyEngine(MODEL_DOC, clock=self.clock)
        self.tokens: dict[tuple[str, str | None], float] = {}
        self.last = 0.0
        self.granted: list[tuple[Decision, dict[tuple[str, str | None], float]]] = []

    def _refill(self) -> None:
        elapsed = self.clock.now - self.last
        self.last = self.clock.now
        for (counter, who), level in self.tokens.items():
            rate, burst = SPECS[counter]
            self.tokens[(counter, who)] = min(burst, level + rate * elapsed)

    def _level(self, key: tuple[str, str | None]) -> float:
        return self.tokens.setdefault(key, SPECS[key[0]][1])

    @rule(ms=st.integers(1, 4000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000 + 0.0001234)

    @rule(tool=st.sampled_from(["a", "b"]), who=st.sampled_from(["x", "y"]), n=st.integers(0, 7))
    def call(self, tool: str, who: str, n: int) -> None:
        self._refill()
        cost = n if tool == "a" else 1
        wanted = {("all", None): 1.0} | (
            {("shared", who): float(cost)}
            if tool == "a"
            else {("shared", who): 1.0, ("b", who): 1.0}
        )
        wanted = {k: v for k, v in wanted.items() if v > 0}
        d = self.engine.decide(who, tool, {"n": n})
        if cost > SPECS["shared"][1]:
            assert d.effect is DENY
            return
        room = all(self._level(k) >= v - 1e-9 for k, v in wanted.items())
        assert (d.effect is ALLOW) == room, (d, self.tokens, wanted)
        if room:
            for k, v in wanted.items():
                self.tokens[k] = self._level(k) - v
            self.granted.append((d, wanted))

    @rule()
    def refund_oldest(self) -> None:
        if not self.granted:
            return
        self._refill()
        d, wanted = self.granted.pop(0)
        d.refund()
        for k, v in wanted.items():
            self.tokens[k] = min(SPECS[k[0]][1], self._level(k) + v)

    @invariant()
    def explain_agrees_and_takes_nothing(self) -> None:
        if not hasattr(self, "engine"):
            return
        before = self.engine.explain("x", "b").decision.effect
        assert self.engine.explain("x", "b").decision.effect is before


EngineAgainstModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None
)
test_engine_against_model = EngineAgainstModel.TestCase


def test_a_cost_path_that_meets_the_wrong_shape_is_indeterminate(clock: FakeClock) -> None:
    engine = engine_for(
        policy({"t": {"limits": [{"window": "hour", "max": 10, "cost": "args.a.0"}]}}), clock
    )
    d = engine.decide("i", "t", {"a": "text"})
    assert (d.effect, d.rule) == (DENY, "/tools/t/limits/0")
    assert "args.a.0" in d.reason and "a string" in d.reason and "_Missing" not in d.reason
    assert engine.decide("i", "t", {"a": {"0": 3}}).effect is ALLOW


class UnreachableStore:
    """A store whose backend is down, as a network store reports it."""

    def __init__(self, *, fail_open: bool) -> None:
        self.fail_open = fail_open

    def take(self, charges: Any) -> Any:
        raise StoreUnavailable("connection refused", fail_open=self.fail_open)

    def check(self, charges: Any) -> Any:
        raise StoreUnavailable("connection refused", fail_open=self.fail_open)

    def refund(self, receipt: Any) -> None:
        raise AssertionError("nothing was taken, so nothing is refunded")


@pytest.mark.parametrize(("fail_open", "effect"), [(False, DENY), (True, ALLOW)])
def test_an_unavailable_store_follows_its_failure_policy(fail_open: bool, effect: Effect) -> None:
    doc = policy(
        {
            "t": {"limits": [{"window": "hour", "max": 5}]},
            "u": {"limits": [{"window": "hour", "max": 5}]},
        },
        all_tools={"limits": [{"window": "hour", "max": 9}]},
    )
    engine = PolicyEngine(doc, store=UnreachableStore(fail_open=fail_open))  # type: ignore[arg-type]
    d = engine.decide("i", "t")
    assert (d.effect, d.rule) == (effect, "/all_tools/limits/0")
    assert "rate-limit store is unavailable (connection refused)" in d.reason
    assert engine.explain("i", "t").decision.effect is effect
    d.refund()  # nothing taken: a no-op
    assert engine.internal_failures == 0
    single = PolicyEngine(
        policy({"t": {"limits": [{"window": "hour", "max": 5}]}}),
        store=UnreachableStore(fail_open=fail_open),
    )  # type: ignore[arg-type]
    assert single.decide("i", "t").effect is effect  # the one-bucket fast path too
