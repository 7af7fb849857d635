"""Token buckets for rate limits, behind a store interface that Redis can also implement.

A bucket holds at most `burst` tokens and refills at `rate = max / window` tokens per
second. A call takes `cost` tokens from every bucket it charges, or from none.

Instead of a token count and a last-update time, a bucket keeps ONE float: `full_at`,
the time at which it will be full again (GCRA's "theoretical arrival time"). With
`interval = 1 / rate` (seconds per token) and `capacity = burst * interval`:

    tokens(now)   = burst - max(0, full_at - now) / interval
    take c        needs tokens(now) >= c, i.e. max(full_at, now) + c * interval - now <= capacity
    after it      full_at = max(full_at, now) + c * interval
    retry_after   = max(full_at, now) + c * interval - now - capacity  (when refused)
    refund c      full_at -= c * interval       (at or below now means full: never above burst)

A bucket with `full_at <= now` is full; it carries no information and is not stored,
so a missing bucket is a full one. Memory is one dict entry and one float per bucket.

Floating point: `full_at` is an absolute time compared with the clock, so no token
count is integrated and no error builds up in one: each take rounds `full_at` by at most
half the float spacing at the clock's value (6e-11 s after ten days of `time.monotonic`),
shifting when a token falls due by that much, never how many there are. Adding an inexact
`interval` `burst` times can still land a hair past `capacity`, so a take may pass up to
`SLACK_TOKENS` of a token early; that keeps exact boundaries exact (30 takes of 1 from
30 per minute at one instant all pass, the 31st waits 2.0 s). Use a clock with a small
origin, as `time.monotonic` has: near 1e9 (epoch seconds) the spacing is ~2e-7 s.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from math import isfinite
from typing import Final, Protocol

from policylayer_core._token_lock import TokenLock

__all__ = [
    "SLACK_TOKENS",
    "WINDOW_SECONDS",
    "BucketSpec",
    "Charge",
    "MemoryStore",
    "RateLimitStore",
    "Receipt",
    "Shortfall",
    "StoreUnavailable",
]

WINDOW_SECONDS: Final[dict[str, float]] = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
}
_UNIT_NAMES: Final = {seconds: unit for unit, seconds in WINDOW_SECONDS.items()}
_SCOPES: Final = frozenset({"grant", "session", "global"})

SLACK_TOKENS: Final = 1e-6
"""How early (in tokens) a take may pass, absorbing float rounding at exact boundaries."""

_MIN_SWEEP_LEN: Final = 1024
_MIN_SWEEP_PERIOD: Final = 1.0
# A sweep costs ~30 ns per bucket kept and ~100 ns per bucket dropped on the dev box;
# spacing time-triggered sweeps 10 us per bucket held apart keeps them near 1% of a core.
_SWEEP_PERIOD_PER_BUCKET: Final = 10e-6


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One counter definition. Equal specs name the same buckets, which is how reload keeps
    state of unchanged counters.

    Derived, not compared: `rate` (tokens per second), `interval` (seconds per token),
    `capacity` (seconds from empty to full), `label` ("30 per minute", "5 per 90 s") and
    `uid`, a string equal exactly for equal specs, which stores use as the table key.
    """

    namespace: str
    counter: str
    scope: str
    max: int
    window: float
    burst: int
    rate: float = field(init=False, repr=False, compare=False)
    interval: float = field(init=False, repr=False, compare=False)
    capacity: float = field(init=False, repr=False, compare=False)
    label: str = field(init=False, repr=False, compare=False)
    _limit: float = field(init=False, repr=False, compare=False)
    uid: str = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"scope must be grant, session or global, not {self.scope!r}")
        for name, count in (("max", self.max), ("burst", self.burst)):
            # The store names buckets by repr(); an int and an equal float would differ.
            if not isinstance(count, int) or isinstance(count, bool):
                raise ValueError(f"{name} must be an int, not {count!r}")
        if self.max <= 0 or self.burst <= 0:
            raise ValueError(f"max and burst must be positive, not {self.max} and {self.burst}")
        if not (self.window > 0 and isfinite(self.window)):
            raise ValueError(f"window must be a positive number of seconds, not {self.window}")
        interval = self.window / self.max
        if not isfinite((self.burst + SLACK_TOKENS) * interval):
            # An infinite capacity holds every take: the limit would allow every call.
            raise ValueError(
                f"window * burst / max must be a finite number of seconds, not "
                f"{self.window} * {self.burst} / {self.max}"
            )
        unit = _UNIT_NAMES.get(self.window)
        put = object.__setattr__
        put(self, "rate", self.max / self.window)
        put(self, "interval", interval)
        put(self, "capacity", self.burst * interval)
        put(self, "label", f"{self.max} per {unit or f'{self.window:g} s'}")
        put(self, "_limit", (self.burst + SLACK_TOKENS) * interval)
        # Stores key their tables by this string, not by the spec: its hash is computed
        # once and cached by str, where a spec's own __hash__ is a Python call per lookup.
        uid = repr(
            (self.namespace, self.counter, self.scope, self.max, float(self.window), self.burst)
        )
        put(self, "uid", uid)
        put(self, "_hash", hash(uid))

    def __hash__(self) -> int:
        return self._hash


Charge = tuple[BucketSpec, Hashable, int]
"""(spec, scope key, cost); the key is the identity for grant, (identity, session) for
session and None for global."""


Receipt = list[Charge]
"""What one successful take took: its charges, as plain data. A store's `refund` empties
the list under its lock, which is how a receipt is refunded once and only once. A list
rather than a class because an allowed call builds one, and a list is the cheapest
object that carries both the charges and the "already refunded" state."""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A refused take: `index` of the first charge without room, and the seconds until
    every bucket of the call would have room (`retry_after` > 0)."""

    index: int
    retry_after: float


class StoreUnavailable(Exception):  # noqa: N818 - a state of the world, named as such
    """A store could not answer in time (a network store that is down or slow).

    Raised by `take`/`check`; the engine turns it into a decision, never an error:
    `fail_open=False` (the default of every store) denies the call, `fail_open=True`
    allows it without counting, and either way the reason says the store was unavailable.
    """

    def __init__(self, message: str, *, fail_open: bool = False) -> None:
        super().__init__(message)
        self.fail_open = fail_open


class RateLimitStore(Protocol):
    """Where buckets live. Implementations must be thread-safe and all-or-nothing."""

    def take(self, charges: Sequence[Charge]) -> Receipt | Shortfall:
        """Take every charge's cost, or nothing and say which bucket lacked room."""
        ...

    def check(self, charges: Sequence[Charge]) -> Shortfall | None:
        """The verdict `take` would give now, taking nothing."""
        ...

    def refund(self, receipt: Receipt) -> None:
        """Give back what `receipt` took, once, never above burst."""
        ...


# Stands in for a spec that has no buckets yet; only ever read from.
_NO_BUCKETS: Final[dict[Hashable, float]] = {}


class MemoryStore:
    """Buckets in this process: `{spec.uid: {scope key: full_at}}` under one lock.

    Full buckets are dropped lazily, by a sweep inside a take: when the clock passes
    the next sweep time (`max(1 s, 10 us per bucket held)` after the last sweep), or
    when a new bucket would double the count the last sweep left (at least 1024). So
    a bucket full for longer than a sweep period is gone at the next take, and between
    sweeps the store holds at most max(1024, twice what the last sweep kept).
    Both triggers cost O(1) amortised per take; the take that sweeps pays O(n).

    `max_buckets` is the last line of defence against a flood of distinct callers: when
    it is reached with every bucket still refilling, the store forgets the eighth of
    its buckets that will be full soonest (a sort of all of them, once per
    `max_buckets / 8` new callers). A forgotten bucket is full again, so each evicted
    caller may get back the tokens its bucket was still missing: at the cap the store
    fails open a little for the callers nearest full, and never refuses a caller
    because it has no room to count them.
    """

    __slots__ = ("_clock", "_count", "_lock", "_max_buckets", "_sweep_at", "_sweep_len", "_tables")

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = 1_000_000
    ) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, not {max_buckets}")
        self._clock = clock
        self._max_buckets = max_buckets
        self._lock = TokenLock()
        self._tables: dict[str, dict[Hashable, float]] = {}
        self._count = 0
        self._sweep_len = min(_MIN_SWEEP_LEN, max_buckets)
        self._sweep_at = clock() + _MIN_SWEEP_PERIOD

    def __len__(self) -> int:
        return self._count

    def take_one(self, spec: BucketSpec, key: Hashable, cost: int) -> Receipt | Shortfall:
        """`take([(spec, key, cost)])` without building and walking a list."""
        if cost <= 0:
            return []
        now = self._clock()
        lock = self._lock
        # acquire/put costs a quarter of `with lock` here: no __exit__(None, None, None).
        lock.acquire()
        try:
            if now >= self._sweep_at:
                self._sweep(now)
            table = self._tables.get(spec.uid, _NO_BUCKETS)
            full_at = table.get(key)
            new = (now if full_at is None or full_at < now else full_at) + cost * spec.interval
            if new - now > spec._limit:
                return Shortfall(0, new - now - spec.capacity)
            if full_at is None:
                self._insert(spec.uid, key, new, now)
            else:
                table[key] = new
        finally:
            lock.put(None)
        return [(spec, key, cost)]

    def take(self, charges: Sequence[Charge]) -> Receipt | Shortfall:
        if len(charges) == 1:
            spec, key, cost = charges[0]
            return self.take_one(spec, key, cost)
        now = self._clock()
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._sweep_at:
                self._sweep(now)
            distinct = self._take_distinct(charges, now)
            if distinct is not None:
                return distinct
            plan = self._plan(charges, now)
            if isinstance(plan, Shortfall):
                return plan
            for bucket, new in plan.items():
                table = self._tables.get(bucket[0], _NO_BUCKETS)
                if bucket[1] in table:
                    table[bucket[1]] = new
                else:
                    self._insert(bucket[0], bucket[1], new, now)
        finally:
            lock.put(None)
        return [charge for charge in charges if charge[2] > 0]

    def _take_distinct(self, charges: Sequence[Charge], now: float) -> Receipt | Shortfall | None:
        """`take` for the usual call, whose buckets are all different: one pass to read
        and check, one to write, no dict of plans. None when a bucket repeats (the
        general plan then sums its costs). Called with the lock held."""
        tables = self._tables
        uids: list[str] = []
        keys: list[Hashable] = []
        news: list[float] = []
        first = -1
        longest = 0.0
        index = -1
        skipped = False
        for spec, key, cost in charges:
            index += 1
            if cost <= 0:
                skipped = True
                continue
            uid = spec.uid
            if uid in uids and any(u == uid and k == key for u, k in zip(uids, keys, strict=True)):
                return None
            table = tables.get(uid)
            full_at = table.get(key) if table is not None else None
            new = (now if full_at is None or full_at < now else full_at) + cost * spec.interval
            if new - now > spec._limit:
                longest = max(longest, new - now - spec.capacity)
                if first < 0:
                    first = index
            uids.append(uid)
            keys.append(key)
            news.append(new)
        if first >= 0:
            return Shortfall(first, longest)
        for uid, key, new in zip(uids, keys, news, strict=True):
            # Fetched again: an insert may sweep, and a sweep replaces the tables.
            table = tables.get(uid, _NO_BUCKETS)
            if key in table:
                table[key] = new
            else:
                self._insert(uid, key, new, now)
        return [charge for charge in charges if charge[2] > 0] if skipped else list(charges)

    def check(self, charges: Sequence[Charge]) -> Shortfall | None:
        now = self._clock()
        with self._lock:
            plan = self._plan(charges, now)
        return plan if isinstance(plan, Shortfall) else None

    def refund(self, receipt: Receipt) -> None:
        now = self._clock()
        with self._lock:
            charges = receipt.copy()
            receipt.clear()
            for spec, key, cost in charges:
                table = self._tables.get(spec.uid, _NO_BUCKETS)
                full_at = table.get(key)
                if full_at is None:
                    continue  # already full: a refund never goes above burst
                back = full_at - cost * spec.interval
                # Within the slack of full counts as full, so rounding leaves no stub behind.
                if back - now <= spec._limit - spec.capacity:
                    del table[key]
                    self._count -= 1
                else:
                    table[key] = back

    def _plan(
        self, charges: Sequence[Charge], now: float
    ) -> dict[tuple[str, Hashable], float] | Shortfall:
        """The new `full_at` of every charged bucket, or the Shortfall; changes nothing.

        A bucket charged twice in one call is charged the sum, so waits are cumulative.
        """
        planned: dict[tuple[str, Hashable], float] = {}
        tables = self._tables
        first = -1
        longest = 0.0
        for index, (spec, key, cost) in enumerate(charges):
            if cost <= 0:
                continue
            bucket = (spec.uid, key)
            full_at = planned.get(bucket)
            if full_at is None:
                full_at = tables.get(bucket[0], _NO_BUCKETS).get(key, now)
            new = (full_at if full_at > now else now) + cost * spec.interval
            planned[bucket] = new
            if new - now > spec._limit:
                longest = max(longest, new - now - spec.capacity)
                if first < 0:
                    first = index
        return planned if first < 0 else Shortfall(first, longest)

    def table(self, uid: str) -> dict[Hashable, float]:
        """The buckets of the spec with this uid, `{scope key: full_at}`: one dict for
        the store's life (emptied and refilled, never replaced), so generated takes can
        hold it. Only ever changed under the store's lock."""
        return self._tables.setdefault(uid, {})  # one step under the GIL: no race

    def _insert(self, uid: str, key: Hashable, full_at: float, now: float) -> None:
        if self._count >= self._sweep_len:
            self._sweep(now)
            if self._count >= self._max_buckets:
                self._evict(self._count - self._max_buckets + max(1, self._max_buckets // 8))
        table = self._tables.get(uid)
        if table is None:
            table = self._tables[uid] = {}
        table[key] = full_at
        self._count += 1

    def _sweep(self, now: float) -> None:
        # Tables are emptied in place, never dropped: one may be bound into generated
        # code. What stays is an empty dict per spec ever used, which the policies bound.
        count = 0
        for table in self._tables.values():
            full = [key for key, full_at in table.items() if full_at <= now]
            if len(full) == len(table):
                table.clear()  # and frees its slots
                continue
            count += len(table) - len(full)
            if 2 * len(full) > len(table):
                # A dict keeps its size when keys go until it next grows: refill to shrink.
                kept = {k: v for k, v in table.items() if v > now}
                table.clear()
                table.update(kept)
            else:
                for key in full:
                    del table[key]
        self._count = count
        self._sweep_at = now + max(_MIN_SWEEP_PERIOD, count * _SWEEP_PERIOD_PER_BUCKET)
        self._sweep_len = min(max(2 * count, _MIN_SWEEP_LEN), self._max_buckets)

    def _evict(self, excess: int) -> None:
        """Forget the `excess` buckets that will be full soonest (exactly that many)."""
        times = sorted(full_at for table in self._tables.values() for full_at in table.values())
        cut = times[excess - 1]
        ties = excess - bisect_left(times, cut)  # buckets at exactly `cut` that must go too
        for table in self._tables.values():
            kept: dict[Hashable, float] = {}
            for key, full_at in table.items():
                if full_at > cut or (full_at == cut and ties <= 0):
                    kept[key] = full_at
                elif full_at == cut:
                    ties -= 1
            table.clear()
            table.update(kept)
        self._count -= excess
        self._sweep_len = self._max_buckets
