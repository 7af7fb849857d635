"""MemoryStore takes specialised to their buckets, for generated tool programs.

`MemoryStore.take` serves any list of charges; a tool's limits are known when the
policy compiles, so its program can instead call a closure that holds the bucket's
numbers in cells, needs no list of charges, and skips the checks the compiler has
already made (distinct buckets, costs of at least one token that fit the burst).
Each closure does exactly what `take` does for those charges, under the store's lock,
and returns the same receipt, so `refund` and every other store method see no
difference.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from policylayer_core.ratelimit import _NO_BUCKETS, BucketSpec, MemoryStore, Receipt, Shortfall

__all__ = ["pair_taker", "single_taker"]

SingleTake = Callable[[Hashable], "Receipt | Shortfall"]
PairTake = Callable[[Hashable, Hashable, int], "Receipt | Shortfall"]


def single_taker(store: MemoryStore, spec: BucketSpec, cost: int) -> SingleTake:
    """`take([(spec, key, cost)])` as `take(key)`, for a literal cost in 1..burst."""
    clock, lock, tables = store._clock, store._lock, store._tables
    acquire, release, sweep, insert = lock.acquire, lock.release, store._sweep, store._insert
    uid, step, limit, capacity = spec.uid, cost * spec.interval, spec._limit, spec.capacity

    def take(key: Hashable) -> Receipt | Shortfall:
        now = clock()
        acquire()
        try:
            if now >= store._sweep_at:
                sweep(now)
            table = tables.get(uid, _NO_BUCKETS)
            full_at = table.get(key)
            new = (now if full_at is None or full_at < now else full_at) + step
            if new - now > limit:
                return Shortfall(0, new - now - capacity)
            if full_at is None:
                insert(uid, key, new, now)
            else:
                table[key] = new
        finally:
            release()
        return [(spec, key, cost)]

    return take


def pair_taker(store: MemoryStore, first: BucketSpec, cost: int, second: BucketSpec) -> PairTake:
    """`take([(first, key, cost), (second, key2, cost2)])` as `take(key, key2, cost2)`,
    for two different buckets: `cost` is a literal and `cost2` is checked by the caller
    to be in 1..burst (the all_tools limit and the tool's own, usually)."""
    clock, lock, tables = store._clock, store._lock, store._tables
    acquire, release, sweep, insert = lock.acquire, lock.release, store._sweep, store._insert
    uid, step, limit = first.uid, cost * first.interval, first._limit
    uid2, interval2, limit2 = second.uid, second.interval, second._limit

    def take(key: Hashable, key2: Hashable, cost2: int) -> Receipt | Shortfall:
        now = clock()
        acquire()
        try:
            if now >= store._sweep_at:
                sweep(now)
            full_at = tables.get(uid, _NO_BUCKETS).get(key)
            new = (now if full_at is None or full_at < now else full_at) + step
            full_at2 = tables.get(uid2, _NO_BUCKETS).get(key2)
            new2 = (now if full_at2 is None or full_at2 < now else full_at2) + cost2 * interval2
            if new - now > limit or new2 - now > limit2:
                return _shortfall(new - now, first, new2 - now, second)
            # Each table fetched again at the write: an insert may sweep, and a sweep
            # replaces the tables.
            if full_at is None:
                insert(uid, key, new, now)
            else:
                tables[uid][key] = new
            if full_at2 is None:
                insert(uid2, key2, new2, now)
            else:
                table2 = tables.get(uid2)
                if table2 is None or key2 not in table2:
                    insert(uid2, key2, new2, now)
                else:
                    table2[key2] = new2
        finally:
            release()
        return [(first, key, cost), (second, key2, cost2)]

    return take


def _shortfall(ahead: float, first: BucketSpec, ahead2: float, second: BucketSpec) -> Shortfall:
    """The Shortfall `take` reports: the first bucket without room, the longest wait."""
    waits = [
        (index, wait - spec.capacity)
        for index, (wait, spec) in enumerate(((ahead, first), (ahead2, second)))
        if wait > spec._limit
    ]
    return Shortfall(waits[0][0], max(wait for _, wait in waits))
