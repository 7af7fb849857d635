"""Token buckets: refill maths, all-or-nothing charges, refunds, lazy dropping, memory,
threads, and a stateful fuzz against a plain (tokens, last time) reference model."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import tracemalloc
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from conftest import FakeClock
from policylayer_core.ratelimit import (
    _MIN_SWEEP_LEN,
    WINDOW_SECONDS,
    BucketSpec,
    Charge,
    MemoryStore,
    Receipt,
    Shortfall,
)


def make(
    max: int = 30,
    window: float = 60.0,
    burst: int | None = None,
    *,
    scope: str = "grant",
    namespace: str = "",
    counter: str = "calls",
) -> BucketSpec:
    return BucketSpec(namespace, counter, scope, max, window, max if burst is None else burst)


def ok(outcome: Receipt | Shortfall) -> bool:
    return isinstance(outcome, list)


def refused(outcome: Receipt | Shortfall | None, index: int, retry_after: float) -> bool:
    return (
        isinstance(outcome, Shortfall)
        and outcome.index == index
        and math.isclose(outcome.retry_after, retry_after, rel_tol=1e-9, abs_tol=1e-9)
    )


def available(store: MemoryStore, spec: BucketSpec, key: Hashable) -> int:
    """Whole tokens in a bucket, found by dry runs (check never changes anything)."""
    return max(c for c in range(spec.burst + 1) if store.check([(spec, key, c)]) is None)


def test_thirty_per_minute_then_refused_for_two_seconds(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(30, WINDOW_SECONDS["minute"])
    assert spec.label == "30 per minute"
    assert all(ok(store.take_one(spec, "alice", 1)) for _ in range(15))
    assert all(ok(store.take([(spec, "alice", 1)])) for _ in range(15))
    outcome = store.take([(spec, "alice", 1)])
    assert refused(outcome, 0, 2.0)
    assert store.check([(spec, "alice", 1)]) == outcome
    clock.advance(1.999)
    assert refused(store.take_one(spec, "alice", 1), 0, 0.001)
    clock.advance(0.001)
    assert ok(store.take_one(spec, "alice", 1))
    assert not ok(store.take_one(spec, "alice", 1))


@pytest.mark.parametrize(("every", "all_pass"), [(1.9, True), (1.5, False), (0.1, False)])
def test_sustained_rate_over_ten_simulated_minutes(
    clock: FakeClock, every: float, all_pass: bool
) -> None:
    store = MemoryStore(clock=clock)
    spec = make(30, 60.0)  # 0.5 tokens per second
    start, calls, passed = clock.now, 0, 0
    while clock.now - start <= 600.0:
        calls += 1
        passed += ok(store.take_one(spec, "alice", 1))
        clock.advance(every)
    elapsed = clock.now - every - start
    assert (passed == calls) is all_pass
    if not all_pass:
        assert abs(passed - (30 + 0.5 * elapsed)) <= 1


def test_burst_differs_from_max(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(10, 60.0, burst=3)  # a token every 6 s, at most 3 held
    assert [ok(store.take_one(spec, "a", 1)) for _ in range(4)] == [True] * 3 + [False]
    assert refused(store.check([(spec, "a", 1)]), 0, 6.0)
    clock.advance(6.0)
    assert ok(store.take_one(spec, "a", 1))
    clock.advance(86400.0)  # a long idle refills to burst, never beyond
    assert available(store, spec, "a") == 3


def test_window_given_as_seconds(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(5, 90.0)
    assert (spec.label, spec.interval, spec.rate) == ("5 per 90 s", 18.0, 5 / 90)
    assert make(2, 1.5).label == "2 per 1.5 s"
    for _ in range(5):
        assert ok(store.take_one(spec, "a", 1))
    assert refused(store.take_one(spec, "a", 1), 0, 18.0)


@pytest.mark.parametrize("window", [1.0, 60.0, 90.0, 3600.0])
@pytest.mark.parametrize("max", [7, 9, 11, 21, 99, 1000])
def test_a_whole_burst_at_one_instant_passes_for_awkward_rates(
    clock: FakeClock, max: int, window: float
) -> None:
    # window / max is inexact: summing it `max` times can overshoot burst * interval.
    store = MemoryStore(clock=clock)
    spec = make(max, window)
    assert all(ok(store.take_one(spec, "a", 1)) for _ in range(max))
    assert refused(store.take_one(spec, "a", 1), 0, spec.interval)


def test_calls_exactly_at_the_rate_pass_for_a_long_run(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(7, 60.0)  # every 8.571428... s, for about ten simulated days
    assert ok(store.take_one(spec, "a", 7))
    for _ in range(100_000):
        clock.advance(spec.interval)
        assert ok(store.take_one(spec, "a", 1))
    clock.advance(spec.interval * 0.99)
    assert refused(store.take_one(spec, "a", 1), 0, spec.interval * 0.01)


def test_a_full_bucket_not_yet_swept_counts_as_full(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec, other = make(10, 1.0, burst=2), make(10, 1.0, counter="other")
    assert ok(store.take([(spec, "a", 2), (other, "a", 1)]))
    clock.advance(0.5)  # full again after 0.2 s, but no sweep is due yet
    assert len(store) == 2
    assert ok(store.take([(spec, "a", 2), (other, "a", 1)]))
    assert available(store, spec, "a") == 0
    assert refused(store.take([(other, "a", 1), (spec, "a", 1)]), 1, 0.1)


def test_cost_above_one(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(10, 1.0)
    assert ok(store.take_one(spec, "a", 4))
    assert ok(store.take([(spec, "a", 4)]))
    # 2 tokens left, 4 wanted: 2 more at 10 per second.
    assert refused(store.take_one(spec, "a", 4), 0, 0.2)
    assert ok(store.take_one(spec, "a", 2))
    clock.advance(1.0)
    assert ok(store.take_one(spec, "a", 10))


def test_cost_zero_takes_nothing_and_always_passes(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec, other = make(1, 60.0), make(5, 60.0, counter="other")
    assert ok(store.take_one(spec, "a", 1))
    assert ok(store.take_one(spec, "a", 0))
    assert store.check([(spec, "a", 0)]) is None
    both = store.take([(spec, "a", 0), (other, "a", 2)])
    assert both == [(other, "a", 2)]
    assert store.take([]) == []
    assert len(store) == 2
    assert available(store, other, "a") == 3


def test_all_or_nothing_with_the_longest_wait(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    roomy, short, shorter = make(10, 1.0), make(1, 10.0, counter="b"), make(1, 60.0, counter="c")
    assert ok(store.take([(short, "k", 1), (shorter, "k", 1)]))
    charges: list[Charge] = [(roomy, "k", 3), (short, "k", 1), (shorter, "k", 1)]
    outcome = store.take(charges)
    # The first without room is `short`; all three have room only once `shorter` does.
    assert refused(outcome, 1, 60.0)
    assert store.check(charges) == outcome
    assert refused(store.take(charges[::-1]), 0, 60.0)
    assert available(store, roomy, "k") == 10
    clock.advance(10.0)
    assert refused(store.take(charges), 2, 50.0)
    clock.advance(50.0)
    assert ok(store.take(charges))
    assert [available(store, s, "k") for s in (roomy, short, shorter)] == [7, 0, 0]


def test_a_bucket_charged_twice_in_one_call_is_charged_the_sum(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(4, 4.0)
    assert refused(store.take([(spec, "k", 3), (spec, "k", 3)]), 1, 2.0)
    assert ok(store.take([(spec, "k", 2), (spec, "k", 2)]))
    assert available(store, spec, "k") == 0


def test_refund_gives_back_exactly_once_and_never_above_burst(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(10, 10.0)
    first, second = store.take_one(spec, "a", 5), store.take_one(spec, "a", 3)
    assert isinstance(first, list)
    assert isinstance(second, list)
    store.refund(first)
    store.refund(first)
    assert first == []  # a refunded receipt is emptied: nothing is left to give back
    assert available(store, spec, "a") == 7
    clock.advance(2.0)  # 9 tokens now: giving back 3 stops at 10
    store.refund(second)
    assert available(store, spec, "a") == 10
    assert len(store) == 0, "a refund that fills a bucket drops it"
    assert ok(store.take_one(spec, "a", 10))
    assert not ok(store.take_one(spec, "a", 1))


def test_refund_is_once_across_threads(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(100, 3600.0)
    receipt = store.take([(spec, "a", 60), (spec, "b", 60)])
    assert isinstance(receipt, list)
    assert ok(store.take_one(spec, "a", 30))
    start = threading.Barrier(8)

    def refund() -> None:
        start.wait()
        store.refund(receipt)

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (available(store, spec, "a"), available(store, spec, "b")) == (70, 100)


def test_scope_keys_are_separate_buckets(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    grant, session, glob = (
        make(1, 60.0),
        make(1, 60.0, scope="session"),
        make(1, 60.0, scope="global"),
    )
    keys: list[tuple[BucketSpec, Hashable]] = [
        (grant, "alice"),
        (grant, "bob"),
        (session, ("alice", "s1")),
        (session, ("alice", "s2")),
        (session, ("alice", None)),
        (glob, None),
    ]
    assert all(ok(store.take_one(spec, key, 1)) for spec, key in keys)
    assert not any(ok(store.take_one(spec, key, 1)) for spec, key in keys)
    assert len(store) == len(keys)


def test_equal_specs_share_buckets_and_different_ones_do_not(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(2, 60.0, namespace="p", counter="calls")
    twin = BucketSpec("p", "calls", "grant", 2, 60, 2)  # int window, a separate object
    assert twin == spec
    assert hash(twin) == hash(spec)
    assert twin is not spec
    assert ok(store.take_one(spec, "a", 2))
    assert not ok(store.take_one(twin, "a", 1))
    changes: list[dict[str, Any]] = [
        {"max": 3},
        {"window": 61.0},
        {"burst": 3},
        {"scope": "session"},
        {"namespace": ""},
        {"counter": "other"},
    ]
    for change in changes:
        other = dataclasses.replace(spec, **change)
        assert other != spec
        assert ok(store.take_one(other, "a", 2)), change


def test_invalid_specs_and_stores_are_refused() -> None:
    good: dict[str, Any] = {
        "namespace": "",
        "counter": "c",
        "scope": "grant",
        "max": 1,
        "window": 1.0,
        "burst": 1,
    }
    bad: list[dict[str, Any]] = [
        {"scope": "identity"},
        {"max": 0},
        {"burst": -1},
        {"max": 1.5},
        {"burst": True},
        {"window": 0.0},
        {"window": math.inf},
        {"window": math.nan},
    ]
    for change in bad:
        with pytest.raises(ValueError):
            BucketSpec(**(good | change))
    with pytest.raises(ValueError):
        MemoryStore(max_buckets=0)


def test_full_buckets_are_dropped_lazily(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(30, 60.0)
    for i in range(1000):
        assert ok(store.take_one(spec, f"user-{i}", 1))
    assert len(store) == 1000
    assert store.check([(make(1, 1.0, counter="x"), "other", 1)]) is None
    assert len(store) == 1000, "a dry run creates and drops nothing"
    clock.advance(3600.0)
    receipt = store.take_one(make(1, 1.0, counter="x"), "other", 1)
    assert len(store) == 1, "the take swept every full bucket"
    assert isinstance(receipt, list)
    store.refund(receipt)
    assert len(store) == 0


def test_a_sweep_drops_only_the_full_buckets(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(1, 1.0, burst=100)
    for i in range(10):
        assert ok(store.take_one(spec, f"slow-{i}", 100))  # full again in 100 s
    for i in range(5):
        assert ok(store.take_one(spec, f"fast-{i}", 1))  # full again in 1 s
    clock.advance(2.0)
    assert ok(store.take_one(spec, "new", 1))
    assert len(store) == 11
    for i in range(5):
        assert ok(store.take_one(spec, f"fast-{i}", 100))
    assert len(store) == 16
    assert all(available(store, spec, f"slow-{i}") == 2 for i in range(10))


def test_many_short_lived_callers_stay_bounded_without_time_passing_a_sweep(
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    spec = make(1000, 1.0, burst=1)  # full again 1 ms after a call
    most = 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):  # 2 simulated seconds, a new caller every 0.1 ms
            assert ok(store.take_one(spec, f"caller-{i}", 1))
            most = max(most, len(store))
            clock.advance(0.0001)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert most <= _MIN_SWEEP_LEN
    assert retained <= _MIN_SWEEP_LEN * 150, "what len() says is gone is really gone"


def test_the_cap_forgets_the_buckets_nearest_full(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, max_buckets=100)
    spec = make(10, 3600.0)
    for i in range(10):
        assert ok(store.take_one(spec, f"heavy-{i}", 5))
    for i in range(990):
        assert ok(store.take_one(spec, f"light-{i}", 1))
        # Each time the cap is hit, exactly an eighth (12) goes, all of equal full_at.
        assert 100 - 12 <= len(store) <= 100 or i < 90
    assert all(available(store, spec, f"heavy-{i}") == 5 for i in range(10))
    assert available(store, spec, "light-989") == 9
    assert available(store, spec, "light-0") == 10, "evicted: counted as full again"
    tiny = MemoryStore(clock=clock, max_buckets=1)
    assert ok(tiny.take_one(spec, "a", 1))
    assert ok(tiny.take_one(spec, "b", 1))
    assert len(tiny) == 1


def test_memory_per_bucket_under_budget(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec = make(30, 60.0)
    count = 100_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Identities are made here and only the store keeps them, so they are counted too.
        for i in range(count):
            store.take_one(spec, f"user-{i:06d}", 1)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == count
    assert retained / count <= 150


def test_threads_racing_one_bucket_never_overdraw(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    spec, pair = make(1000, 3600.0), make(5000, 3600.0, counter="pair")
    passed = [0] * 8
    start = threading.Barrier(8)

    def hammer(slot: int) -> None:
        start.wait()
        for i in range(500):
            if i % 2:
                passed[slot] += ok(store.take_one(spec, "shared", 1))
            else:
                passed[slot] += ok(store.take([(pair, "shared", 1), (spec, "shared", 1)]))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert sum(passed) == 1000
    assert available(store, spec, "shared") == 0


# -- stateful fuzz against a reference model ---------------------------------------------

SPECS = (
    make(3, 1.0, burst=5),
    make(30, 60.0, counter="b"),
    make(7, 10.0, burst=2, scope="global", namespace="p"),
    make(1, 90.0, burst=3, scope="session"),
)
KEYS: tuple[Hashable, ...] = ("alice", "bob", ("alice", "s1"), None)
TOLERANCE = 1e-5  # tokens; verdicts this close to a boundary may go either way

charge_st = st.integers(0, len(SPECS) - 1).flatmap(
    lambda i: st.tuples(st.just(SPECS[i]), st.sampled_from(KEYS), st.integers(0, SPECS[i].burst))
)
charges_st = st.lists(charge_st, min_size=1, max_size=3)
step_st = st.one_of(
    st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 18.0, 90.0]),
    st.floats(0.0, 2.0),
    st.floats(0.0, 100.0),
)


class Taken:
    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt
        self.refunded = False


class StoreAgainstModel(RuleBasedStateMachine):
    """MemoryStore (one float per bucket) against tokens integrated the obvious way."""

    taken = Bundle("taken")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = MemoryStore(clock=self.clock)
        self.levels: dict[tuple[BucketSpec, Hashable], tuple[float, float]] = {}

    def level(self, spec: BucketSpec, key: Hashable) -> float:
        tokens, at = self.levels.get((spec, key), (float(spec.burst), self.clock.now))
        return min(spec.burst, tokens + (self.clock.now - at) * spec.rate)

    def expect(self, charges: Sequence[Charge]) -> tuple[Shortfall | None, bool]:
        """The model's verdict, and whether any charge sits too close to call."""
        demand: dict[tuple[BucketSpec, Hashable], int] = {}
        first, longest, close = -1, 0.0, False
        for index, (spec, key, cost) in enumerate(charges):
            if not cost:
                continue
            demand[spec, key] = demand.get((spec, key), 0) + cost
            missing = demand[spec, key] - self.level(spec, key)
            close = close or abs(missing) < TOLERANCE
            if missing > 0:
                longest = max(longest, missing / spec.rate)
                first = index if first < 0 else first
        return (None if first < 0 else Shortfall(first, longest)), close

    def apply(self, charges: Sequence[Charge], sign: int) -> None:
        for spec, key, cost in charges:
            level = min(spec.burst, self.level(spec, key) - sign * cost)
            self.levels[spec, key] = (level, self.clock.now)

    def compare(self, got: Shortfall | None, want: Shortfall | None) -> None:
        assert (got is None) == (want is None), (got, want)
        if got is not None and want is not None:
            assert got.index == want.index
            assert got.retry_after == pytest.approx(want.retry_after, rel=1e-6, abs=1e-6)

    @rule(seconds=step_st)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(target=taken, charges=charges_st)
    def take(self, charges: list[Charge]) -> Any:
        want, close = self.expect(charges)
        outcome = self.store.take(charges)
        got = outcome if isinstance(outcome, Shortfall) else None
        if not close:
            self.compare(got, want)
        if isinstance(outcome, Shortfall):
            return multiple()
        self.apply(charges, +1)
        return Taken(outcome)

    @rule(charges=charges_st)
    def check(self, charges: list[Charge]) -> None:
        want, close = self.expect(charges)
        if not close:
            self.compare(self.store.check(charges), want)

    @rule(taken=taken)
    def refund(self, taken: Taken) -> None:
        if not taken.refunded:
            self.apply(list(taken.receipt), -1)
        taken.refunded = True
        self.store.refund(taken.receipt)

    @invariant()
    def levels_agree(self) -> None:
        for spec in SPECS:
            for key in KEYS:
                level = self.level(spec, key)
                for cost in {math.floor(level), math.floor(level) + 1}:
                    if 1 <= cost <= spec.burst and abs(level - cost) >= TOLERANCE:
                        got = self.store.check([(spec, key, cost)]) is None
                        assert got is (level >= cost), (spec, key, cost, level)
        refilling = sum(
            self.level(spec, key) < spec.burst - TOLERANCE for spec in SPECS for key in KEYS
        )
        assert refilling <= len(self.store) <= len(SPECS) * len(KEYS)


StoreAgainstModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "150")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreAgainstModel = StoreAgainstModel.TestCase
