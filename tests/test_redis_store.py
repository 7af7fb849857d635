"""RedisStore against a real redis-server, and the same behavioural suite on MemoryStore.

The first half is one suite of bucket behaviour (the cases of test_ratelimit.py and
test_limits.py) run on both stores through the `subject` fixture. Time moves by a fake
clock: the memory store reads it directly; the Redis store adds its offset to the
server's `TIME` inside the script (the `_time_offset` test hook). Real time still passes
on the Redis server between two calls of a test (milliseconds), which can only add
tokens, so a Redis `retry_after` may be up to `tol` below the exact figure, never above.

The second half is Redis only: key layout and expiry, NOSCRIPT recovery, processes
racing one bucket, a killed or frozen server (fail closed, fail open, recovery), the
back-off, lost refunds. Without a `redis-server` binary these tests skip (they fail
instead when the environment variable CI is set); see redis_server.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import FakeClock, policy
from policylayer_core import Effect, PolicyEngine
from policylayer_core.ratelimit import (
    BucketSpec,
    Charge,
    MemoryStore,
    Receipt,
    Shortfall,
    StoreUnavailable,
)
from redis_server import REQUIRED_BY, RedisServer, require_redis_server
from test_ratelimit import make, ok

try:
    import redis
    from redis.cluster import RedisCluster

    from policylayer_core.redis_store import RedisStore
except ImportError:  # pragma: no cover - the `test` extra installs redis
    if any(os.environ.get(name) for name in REQUIRED_BY):
        raise
    pytest.skip("redis-py is not installed (pip install -e '.[redis]')", allow_module_level=True)

ALLOW, DENY, RATE = Effect.ALLOW, Effect.DENY, Effect.RATE_LIMITED
REDIS_TOL = 0.25  # seconds of real time a Redis test may spend between a drain and a check
SLOW = 5.0  # timeout of the behavioural suite: a loaded machine must not turn into a failure


# -- the stores under test ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    require_redis_server()
    with_server = RedisServer()
    try:
        with_server.start()
        yield with_server
    finally:
        with_server.stop()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server for one test, which that test may kill, pause and restart."""
    require_redis_server()
    with_server = RedisServer()
    try:
        with_server.start()
        yield with_server
    finally:
        with_server.stop()


@dataclass
class Subject:
    """A store, the fake clock its time follows, and how far a Redis answer may drift."""

    name: str
    store: Any  # MemoryStore or RedisStore: both RateLimitStore
    clock: FakeClock
    tol: float
    count: Callable[[], int]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def refused(self, outcome: Receipt | Shortfall | None, index: int, retry_after: float) -> bool:
        return (
            isinstance(outcome, Shortfall)
            and outcome.index == index
            and retry_after - self.tol - 1e-9 <= outcome.retry_after <= retry_after + 1e-9
        )

    def available(self, spec: BucketSpec, key: Hashable) -> int:
        """Whole tokens in a bucket, found by dry runs (check never changes anything)."""
        costs = range(spec.burst, -1, -1)
        return next(c for c in costs if self.store.check([(spec, key, c)]) is None)


def redis_store(url: str, clock: FakeClock | None = None, **options: Any) -> RedisStore:
    offset = None
    if clock is not None:
        start = clock.now
        offset = lambda: clock.now - start  # noqa: E731
    options.setdefault("prefix", f"test-{uuid.uuid4().hex[:8]}")
    options.setdefault("timeout", SLOW)
    return RedisStore(url, _time_offset=offset, **options)


def key_count(store: RedisStore) -> int:
    if store.cluster:
        keys = store.client.keys(f"{store._prefix}:*", target_nodes=RedisCluster.PRIMARIES)
        return len(keys)
    return len(store.client.keys(f"{store._prefix}:*"))


@pytest.fixture(params=["memory", "redis", "redis-cluster", "valkey-cluster"])
def subject(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Subject]:
    """The store under test: in memory, on one redis-server, on a 3-primary Redis Cluster
    and on a 3-primary Valkey cluster (the session's clusters, see conftest.py)."""
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        yield Subject("memory", memory, clock, 0.0, memory.__len__)
        return
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("server")
        url = server.url
    else:
        url = request.getfixturevalue(request.param.replace("-", "_")).url
    store = redis_store(url, clock)
    store.client.flushdb()
    yield Subject(request.param, store, clock, REDIS_TOL, lambda: key_count(store))
    store.client.close()


# -- the shared suite: bucket behaviour ------------------------------------------------------


def test_thirty_per_minute_then_refused_for_two_seconds(subject: Subject) -> None:
    store, spec = subject.store, make(30, 60.0)
    assert all(ok(store.take([(spec, "alice", 1)])) for _ in range(30))
    outcome = store.take([(spec, "alice", 1)])
    assert subject.refused(outcome, 0, 2.0)
    assert subject.refused(store.check([(spec, "alice", 1)]), 0, 2.0)
    subject.advance(1.0)
    assert subject.refused(store.take([(spec, "alice", 1)]), 0, 1.0)
    subject.advance(1.0)
    assert ok(store.take([(spec, "alice", 1)]))
    assert not ok(store.take([(spec, "alice", 1)]))


def test_burst_differs_from_max(subject: Subject) -> None:
    store, spec = subject.store, make(10, 60.0, burst=3)  # a token every 6 s, at most 3 held
    assert [ok(store.take([(spec, "a", 1)])) for _ in range(4)] == [True] * 3 + [False]
    assert subject.refused(store.check([(spec, "a", 1)]), 0, 6.0)
    subject.advance(6.0)
    assert ok(store.take([(spec, "a", 1)]))
    subject.advance(86400.0)  # a long idle refills to burst, never beyond
    assert subject.available(spec, "a") == 3


def test_window_given_as_seconds(subject: Subject) -> None:
    store, spec = subject.store, make(5, 90.0)
    assert all(ok(store.take([(spec, "a", 1)])) for _ in range(5))
    assert subject.refused(store.take([(spec, "a", 1)]), 0, 18.0)


@pytest.mark.parametrize(("max", "window"), [(7, 60.0), (11, 1.0), (99, 90.0), (1000, 1.0)])
def test_a_whole_burst_in_one_call_passes_for_awkward_rates(
    subject: Subject, max: int, window: float
) -> None:
    # window / max is inexact: summing it `max` times can overshoot burst * interval. One
    # call is one instant on both stores, so even 1000 per second is exact here.
    store, spec = subject.store, make(max, window)
    assert isinstance(store.check([(spec, "a", 1)] * max), type(None))
    outcome = store.take([(spec, "b", 1)] * (max + 1))
    assert isinstance(outcome, Shortfall) and outcome.index == max
    assert abs(outcome.retry_after - spec.interval) <= 1e-9
    assert ok(store.take([(spec, "a", 1)] * max))


def test_a_full_bucket_not_yet_dropped_counts_as_full(subject: Subject) -> None:
    store = subject.store
    spec, other = make(1, 10.0, burst=2), make(1, 60.0, counter="other")
    assert ok(store.take([(spec, "a", 2), (other, "a", 1)]))
    subject.advance(30.0)  # `spec` is full again after 20 s, but its entry or key remains
    assert subject.count() == 2
    assert ok(store.take([(spec, "a", 2)]))
    assert subject.refused(store.take([(other, "a", 1), (spec, "a", 1)]), 0, 30.0)


def test_cost_above_one(subject: Subject) -> None:
    store, spec = subject.store, make(10, 10.0)  # a token a second
    assert ok(store.take([(spec, "a", 4)]))
    assert ok(store.take([(spec, "a", 4)]))
    assert subject.refused(store.take([(spec, "a", 4)]), 0, 2.0)  # 2 left, 4 wanted
    assert ok(store.take([(spec, "a", 2)]))
    subject.advance(10.0)
    assert ok(store.take([(spec, "a", 10)]))


def test_cost_zero_takes_nothing_and_always_passes(subject: Subject) -> None:
    store, spec, other = subject.store, make(1, 60.0), make(5, 60.0, counter="other")
    assert ok(store.take([(spec, "a", 1)]))
    assert store.take([(spec, "a", 0)]) == []
    assert store.check([(spec, "a", 0)]) is None
    assert store.take([(spec, "a", 0), (other, "a", 2)]) == [(other, "a", 2)]
    assert store.take([]) == []
    assert subject.count() == 2
    assert subject.available(other, "a") == 3


def test_all_or_nothing_with_the_longest_wait(subject: Subject) -> None:
    store = subject.store
    roomy, short, shorter = make(10, 100.0), make(1, 10.0, counter="b"), make(1, 60.0, counter="c")
    assert ok(store.take([(short, "k", 1), (shorter, "k", 1)]))
    charges: list[Charge] = [(roomy, "k", 3), (short, "k", 1), (shorter, "k", 1)]
    # The first without room is `short`; all three have room only once `shorter` does.
    assert subject.refused(store.take(charges), 1, 60.0)
    assert subject.refused(store.check(charges), 1, 60.0)
    assert subject.refused(store.take(charges[::-1]), 0, 60.0)
    assert subject.available(roomy, "k") == 10
    subject.advance(10.0)
    assert subject.refused(store.take(charges), 2, 50.0)
    subject.advance(50.0)
    assert ok(store.take(charges))
    assert [subject.available(s, "k") for s in (roomy, short, shorter)] == [7, 0, 0]


def test_a_bucket_charged_twice_in_one_call_is_charged_the_sum(subject: Subject) -> None:
    store, spec = subject.store, make(4, 40.0)  # a token every 10 s
    outcome = store.take([(spec, "k", 3), (spec, "k", 3)])
    assert isinstance(outcome, Shortfall) and outcome.index == 1
    assert abs(outcome.retry_after - 20.0) <= 1e-9  # one call: one instant
    assert ok(store.take([(spec, "k", 2), (spec, "k", 2)]))
    assert subject.available(spec, "k") == 0


def test_refund_gives_back_exactly_once_and_never_above_burst(subject: Subject) -> None:
    store, spec = subject.store, make(10, 100.0)  # a token every 10 s
    first, second = store.take([(spec, "a", 5)]), store.take([(spec, "a", 3)])
    assert isinstance(first, list) and isinstance(second, list)
    store.refund(first)
    store.refund(first)
    assert first == []  # a refunded receipt is emptied: nothing is left to give back
    assert subject.available(spec, "a") == 7
    subject.advance(20.0)  # 9 tokens now: giving back 3 stops at 10
    store.refund(second)
    assert subject.available(spec, "a") == 10
    assert subject.count() == 0, "a refund that fills a bucket drops it"
    assert ok(store.take([(spec, "a", 10)]))
    assert not ok(store.take([(spec, "a", 1)]))


def test_refund_is_once_across_threads(subject: Subject) -> None:
    # Two buckets of one caller: a cluster keeps one call's buckets in the caller's slot.
    store, spec, other = subject.store, make(100, 86400.0), make(100, 86400.0, counter="b")
    receipt = store.take([(spec, "a", 60), (other, "a", 60)])
    assert isinstance(receipt, list)
    assert ok(store.take([(spec, "a", 30)]))
    start = threading.Barrier(8)

    def refund() -> None:
        start.wait()
        store.refund(receipt)

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (subject.available(spec, "a"), subject.available(other, "a")) == (70, 100)


def test_scope_keys_are_separate_buckets(subject: Subject) -> None:
    grant, session, glob = (
        make(1, 60.0),
        make(1, 60.0, scope="session"),
        make(1, 60.0, scope="global"),
    )
    keys: list[tuple[BucketSpec, Hashable]] = [
        (grant, "alice"),
        (grant, "bob"),
        (grant, "x" * 10_000),  # odd identities get bounded keys in Redis
        (grant, "caf\u00e9 \ud800 \u0000:*"),
        (session, ("alice", "s1")),
        (session, ("alice", "s2")),
        (session, ("alice", None)),
        (glob, None),
    ]
    assert all(ok(subject.store.take([(spec, key, 1)])) for spec, key in keys)
    assert not any(ok(subject.store.take([(spec, key, 1)])) for spec, key in keys)
    assert subject.count() == len(keys)


def test_equal_specs_share_buckets_and_different_ones_do_not(subject: Subject) -> None:
    store, spec = subject.store, make(2, 60.0, namespace="p", counter="calls")
    twin = BucketSpec("p", "calls", "grant", 2, 60, 2)  # int window, a separate object
    assert twin == spec and twin is not spec
    assert ok(store.take([(spec, "a", 2)]))
    assert not ok(store.take([(twin, "a", 1)]))
    changes: list[dict[str, Any]] = [
        {"max": 3},
        {"window": 61.0},
        {"burst": 3},
        {"scope": "session"},
        {"namespace": ""},
        {"counter": "other"},
    ]
    for change in changes:
        other = BucketSpec(**{**_fields(spec), **change})
        assert ok(store.take([(other, "a", 2)])), change


def _fields(spec: BucketSpec) -> dict[str, Any]:
    names = ("namespace", "counter", "scope", "max", "window", "burst")
    return {name: getattr(spec, name) for name in names}


def test_threads_racing_one_bucket_never_overdraw(subject: Subject) -> None:
    store = subject.store
    spec, pair = make(300, 86400.0), make(5000, 86400.0, counter="pair")
    passed = [0] * 8
    start = threading.Barrier(8)

    def hammer(slot: int) -> None:
        start.wait()
        for i in range(100):
            charges = [(spec, "shared", 1)] if i % 2 else [(pair, "shared", 1), (spec, "shared", 1)]
            passed[slot] += ok(store.take(charges))

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(passed) == 300
    assert subject.available(spec, "shared") == 0


# -- the shared suite: through the engine ---------------------------------------------------


def engine_on(subject: Subject, doc: dict[str, Any]) -> PolicyEngine:
    return PolicyEngine(doc, clock=subject.clock, store=subject.store)


def passes(engine: PolicyEngine, n: int, tool: str = "t", args: Any = None, **kw: Any) -> int:
    return sum(engine.decide("i", tool, args, **kw).effect is ALLOW for _ in range(n))


def test_engine_thirty_per_minute(subject: Subject) -> None:
    limit = {"counter": "batch", "window": "minute", "max": 30}
    engine = engine_on(subject, policy({"b": {"limits": [limit]}}))
    assert passes(engine, 30, "b") == 30
    d = engine.decide("i", "b")
    assert (d.effect, d.rule) == (RATE, "/tools/b/limits/0")
    assert d.retry_after is not None and 2.0 - subject.tol <= d.retry_after <= 2.0 + 1e-9
    assert d.reason.startswith("Rate limit 'batch' (30 per minute) exceeded; retry in ")
    subject.advance(1.0)
    assert engine.decide("i", "b").effect is RATE
    subject.advance(1.0)
    assert passes(engine, 2, "b") == 1


def test_engine_all_or_nothing_costs_and_refunds(subject: Subject) -> None:
    doc = policy(
        {
            "t": {"limits": [{"counter": "tool", "window": "minute", "max": 2}]},
            "u": {"limits": [{"counter": "n", "window": "hour", "max": 5, "cost": "args.n"}]},
        },
        all_tools={"limits": [{"counter": "all", "window": 100, "max": 10}]},
    )
    engine = engine_on(subject, doc)
    assert passes(engine, 3) == 2
    d = engine.decide("i", "t")
    assert (d.effect, d.rule) == (RATE, "/tools/t/limits/0")
    first = engine.decide("i", "u", {"n": 3})  # 'all': 10 - 2 - 1 = 7 tokens before it
    assert first.effect is ALLOW
    assert engine.decide("i", "u", {"n": 3}).effect is RATE
    first.refund()
    first.refund()
    second = engine.decide("i", "u", {"n": 3})
    assert second.effect is ALLOW
    assert engine.decide("i", "u", {"n": 3}).effect is RATE  # the second refund gave nothing
    assert engine.decide("i", "u", {"n": 0}).effect is ALLOW  # 'n' costs 0, 'all' still 1
    assert engine.decide("i", "u", {"n": 9}).effect is DENY  # above burst: can never pass
    second.refund()
    assert passes(engine, 1, "u", {"n": 5}) == 1  # never above burst
    # 'all' holds 10 - 2 - 1 - 1 = 6 now; spend it, and 'all' is the first bucket named
    assert passes(engine, 7, "u", {"n": 0}) == 6
    d = engine.decide("i", "t")
    assert (d.effect, d.rule) == (RATE, "/all_tools/limits/0")
    assert engine.decide("j", "t").effect is ALLOW  # another identity, its own buckets


def test_engine_scopes_and_explain(subject: Subject) -> None:
    engine = engine_on(
        subject, policy({"t": {"limits": [{"max": 2, "window": "hour", "scope": "session"}]}})
    )
    for _ in range(20):
        assert engine.explain("i", "t", session="s1").decision.effect is ALLOW  # takes nothing
    assert passes(engine, 3, session="s1") == 2
    assert passes(engine, 3, session="s2") == 2
    assert engine.explain("i", "t", session="s1").decision.effect is RATE


# -- Redis only: layout, expiry, scripts --------------------------------------------------


def test_key_layout_value_and_expiry(server: RedisServer) -> None:
    store = redis_store(server.url, prefix="layout")
    client = store.client
    client.flushdb()
    spec = make(10, 100.0)  # a token every 10 s
    assert store.check([(spec, "alice", 3)]) is None
    assert client.dbsize() == 0, "check writes nothing"
    assert ok(store.take([(spec, "alice", 3)]))
    key = store.key(spec, "alice")
    prefix, spec_part, key_part = key.split(":")
    assert (prefix, len(spec_part), len(key_part)) == ("layout", 16, 32)
    assert client.keys("*") == [key.encode()]
    at, debt = client.get(key).split()
    server_now = client.time()
    assert abs(int(at) - (server_now[0] * 1_000_000 + server_now[1])) < 5_000_000
    assert float(debt) == pytest.approx(30.0)
    assert 29_000 <= client.pttl(key) <= 30_002, "expires when the bucket is full again"
    long = store.key(spec, ("x" * 100_000, None))
    assert len(long) == len(key), "any scope key gives a key of the same, bounded size"
    store.client.close()


def test_a_key_expires_once_its_bucket_is_full_again(server: RedisServer) -> None:
    store = redis_store(server.url)
    spec = make(20, 1.0)  # a token every 50 ms
    assert ok(store.take([(spec, "a", 2)]))
    key = store.key(spec, "a")
    assert store.client.exists(key)
    deadline = time.monotonic() + 2.0
    while store.client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not store.client.exists(key)
    assert ok(store.take([(spec, "a", 20)]))
    store.client.close()


def test_the_script_is_reloaded_after_script_flush(server: RedisServer) -> None:
    store = redis_store(server.url)
    spec = make(3, 60.0)
    assert ok(store.take([(spec, "a", 1)]))
    store.client.script_flush()
    assert not store.client.script_exists(store._script.sha)[0]
    assert ok(store.take([(spec, "a", 1)]))  # NOSCRIPT, then SCRIPT LOAD and EVALSHA
    assert store.client.script_exists(store._script.sha)[0]
    assert ok(store.take([(spec, "a", 1)]))
    assert not ok(store.take([(spec, "a", 1)]))
    store.client.close()


def test_two_stores_on_one_server_share_buckets_by_prefix(server: RedisServer) -> None:
    spec = make(4, 3600.0, scope="global")
    one = redis_store(server.url, prefix="shared")
    two = RedisStore(redis.Redis.from_url(server.url), prefix="shared")  # a client we made
    other = redis_store(server.url, prefix="other")
    assert ok(one.take([(spec, None, 3)]))
    assert not ok(two.take([(spec, None, 2)]))
    assert ok(two.take([(spec, None, 1)]))
    assert ok(other.take([(spec, None, 4)]))
    for store in (one, two, other):
        store.client.close()


def test_constructor_checks_its_options(server: RedisServer) -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisStore(server.url, timeout=0)
    with pytest.raises(ValueError, match="backoff"):
        RedisStore(server.url, backoff=-1)
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(server.url, prefix="")
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        RedisStore(6379)  # type: ignore[arg-type]
    store = RedisStore(server.url, timeout=0.2)
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.2
    assert kwargs["retry"]._retries == 0  # no retry: a retry would multiply the wait
    store.client.close()


# -- Redis only: processes ----------------------------------------------------------------

PROCESSES, ATTEMPTS, ALLOWED = 4, 150, 200
RACE_DOC = policy(
    {"t": {"limits": [{"counter": "t", "window": "day", "max": ALLOWED, "scope": "global"}]}},
    all_tools={"limits": [{"counter": "all", "window": "day", "max": 10_000, "scope": "global"}]},
)


def _hammer(url: str, prefix: str, start: Any, results: Any) -> None:
    """One process: ATTEMPTS decisions on the shared global bucket, as fast as it can."""
    engine = PolicyEngine(RACE_DOC, store=RedisStore(url, prefix=prefix, timeout=SLOW))
    start.wait()
    allowed = sum(engine.decide(f"w{os.getpid()}", "t").effect is ALLOW for _ in range(ATTEMPTS))
    results.put(allowed)


def test_processes_hammering_one_bucket_never_pass_more_than_it_allows(
    server: RedisServer,
) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    workers = [
        context.Process(target=_hammer, args=(server.url, prefix, start, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        allowed = [results.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    assert sum(allowed) == ALLOWED, allowed
    assert sum(n > 0 for n in allowed) >= 2, f"the processes really raced: {allowed}"
    late = redis_store(server.url, prefix=prefix)
    assert PolicyEngine(RACE_DOC, store=late).decide("late", "t").effect is RATE
    late.close()


# -- Redis only: failures ------------------------------------------------------------------

LIMITED = policy({"t": {"limits": [{"window": "hour", "max": 100}]}})


def _timed(engine: PolicyEngine) -> tuple[Any, float]:
    started = time.monotonic()
    decision = engine.decide("i", "t")
    return decision, time.monotonic() - started


@pytest.fixture
def closing() -> Iterator[list[RedisStore]]:
    """Stores a test made, closed after it: a socket left to the garbage collector is a
    ResourceWarning, which this suite turns into an error wherever the collector runs."""
    stores: list[RedisStore] = []
    yield stores
    for store in stores:
        store.close()


def test_a_killed_server_gives_fail_closed_and_fail_open_answers_then_recovers(
    own_server: RedisServer, closing: list[RedisStore]
) -> None:
    # timeout 0.25 s: generous for a loaded machine; a refused connection fails at once anyway.
    closing += [
        RedisStore(own_server.url, timeout=0.25, backoff=0),
        RedisStore(own_server.url, timeout=0.25, backoff=0, fail_open=True),
    ]
    closed, opened = (PolicyEngine(LIMITED, store=store) for store in closing)
    assert closed.decide("i", "t").effect is ALLOW
    assert opened.decide("i", "t").effect is ALLOW
    own_server.kill()
    for _ in range(3):  # every call answers, fast, and none raises
        d, elapsed = _timed(closed)
        assert (d.effect, d.rule) == (DENY, "/tools/t/limits/0")
        assert "rate-limit store is unavailable (Redis ConnectionError" in d.reason
        assert elapsed < 2.0, "no hang"
        d, elapsed = _timed(opened)
        assert d.effect is ALLOW and d.allowed
        assert "allowed without counting it" in d.reason and "fail open" in d.reason
        assert elapsed < 2.0, "no hang"
    assert closed.internal_failures == opened.internal_failures == 0
    own_server.start()  # same port, empty: the buckets start full again
    assert closed.decide("i", "t").effect is ALLOW
    d = opened.decide("i", "t")
    assert d.effect is ALLOW and "unavailable" not in d.reason
    assert own_server.process is not None


def test_a_frozen_server_times_out_then_the_store_backs_off(
    own_server: RedisServer, closing: list[RedisStore]
) -> None:
    clock = FakeClock()
    store = RedisStore(own_server.url, timeout=0.1, backoff=1.0, _clock=clock)
    closing.append(store)
    engine = PolicyEngine(LIMITED, store=store)
    spec = make(5, 3600.0)
    assert ok(store.take([(spec, "a", 1)]))
    own_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="Redis TimeoutError") as caught:
            store.take([(spec, "a", 1)])
        assert time.monotonic() - started < 2.0, "no hang"
        assert caught.value.fail_open is False
        d, elapsed = _timed(engine)  # backing off: the store does not even ask Redis
        assert d.effect is DENY and "not retried until then" in d.reason
        assert elapsed < 2.0, "no hang"
    finally:
        own_server.resume()
    with pytest.raises(StoreUnavailable, match="not retried"):
        store.check([(spec, "a", 1)])  # Redis answers again, but the back-off still holds
    clock.advance(1.0)
    assert store.check([(spec, "a", 1)]) is None
    assert engine.decide("i", "t").effect is ALLOW


def test_a_lost_refund_is_logged_and_never_raises(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture, closing: list[RedisStore]
) -> None:
    store = RedisStore(own_server.url, timeout=0.25)
    closing.append(store)
    spec = make(5, 3600.0)
    receipt = store.take([(spec, "a", 4)])
    assert isinstance(receipt, list)
    own_server.kill()
    with caplog.at_level(logging.WARNING, logger="policylayer_core.redis_store"):
        store.refund(receipt)
    assert receipt == []
    assert "refund of 1 charge(s) was lost" in caplog.text
    with pytest.raises(StoreUnavailable):
        store.take([(spec, "a", 1)])
    own_server.start()
    store.refund(receipt)  # already emptied: nothing is sent twice
    assert ok(store.take([(spec, "a", 5)])), "a restarted server starts with full buckets"


def test_every_store_failure_is_store_unavailable(server: RedisServer) -> None:
    """A key of the wrong type (someone else's data under our prefix) is a Redis error too:
    it becomes StoreUnavailable, never another exception."""
    store = redis_store(server.url, fail_open=True)
    spec = make(5, 3600.0)
    store.client.lpush(store.key(spec, "a"), "not a bucket")
    with pytest.raises(StoreUnavailable) as caught:
        store.take([(spec, "a", 1)])
    assert caught.value.fail_open is True
    assert "WRONGTYPE" in str(caught.value)
    store.client.close()
