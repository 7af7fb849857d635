"""MemoryStore takes written into generated tool programs.

`MemoryStore.take` serves any list of charges. A tool's limits are known when the
policy compiles, so its generated program can instead do the take itself, in its own
frame: the bucket's numbers are constants, there is no list of charges to walk, and
the checks the compiler has already made (distinct buckets, costs of at least one
token that fit the burst) are not made again. The lines written here do exactly what
`take` does for those charges, under the store's lock; a refund gives back what
`refund` would give back for the receipt `take` returns, so the store sees no difference.

A call spends most of a one-limit decision on fixed costs (the clock, the lock, the
Decision); a Python frame and a receipt built by a closure were a fifth of it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from policylayer_core.ratelimit import BucketSpec, MemoryStore, Shortfall

__all__ = [
    "MemoryTakes",
    "PairRefund",
    "SingleRefund",
    "SourceWriter",
    "pair_shortfall",
    "write_pair",
    "write_single",
]


class SourceWriter(Protocol):
    def const(self, value: Any) -> str:
        """Bind `value` into the generated function; return the name it has there."""
        ...

    def line(self, depth: int, text: str) -> None:
        """Add one line, indented `depth` levels."""
        ...


class MemoryTakes:
    """What generated takes use of one MemoryStore, each object fetched once.

    Tools share a generated function only when the values bound into it are the same
    objects, and a bound method is a new object at every lookup; equal bucket specs of
    different tools are mapped to one object for the same reason.
    """

    __slots__ = (
        "_pairs",
        "_singles",
        "_specs",
        "acquire",
        "clock",
        "insert",
        "release",
        "store",
        "sweep",
    )

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.clock: Callable[[], float] = store._clock
        self.acquire = store._lock.acquire
        self.release = store._lock.put  # put(None): hands the token back
        self.sweep = store._sweep
        self.insert = store._insert
        self._specs: dict[BucketSpec, BucketSpec] = {}
        self._singles: dict[tuple[BucketSpec, int], SingleRefund] = {}
        self._pairs: dict[tuple[BucketSpec, int, BucketSpec], PairRefund] = {}

    def spec(self, spec: BucketSpec) -> BucketSpec:
        return self._specs.setdefault(spec, spec)

    def table(self, spec: BucketSpec) -> dict[Hashable, float]:
        return self.store.table(spec.uid)

    def single_refund(self, spec: BucketSpec, cost: int) -> SingleRefund:
        """The refunder of a single take; its decisions' payload is the bucket's key."""
        made = self._singles.get((spec, cost))
        if made is None:
            made = self._singles[spec, cost] = SingleRefund(self.store, spec, cost)
        return made

    def pair_refund(self, first: BucketSpec, cost: int, second: BucketSpec) -> PairRefund:
        """The refunder of a pair take; its decisions' payload is (key, key2, cost2)."""
        made = self._pairs.get((first, cost, second))
        if made is None:
            made = self._pairs[first, cost, second] = PairRefund(self.store, first, cost, second)
        return made


class SingleRefund:
    """Gives back what a generated single take took: `refund(key)`. The decision holds
    the key and this refunder, two slot writes, where a receipt (a list of charge
    tuples) cost a fifth of a limited allow. `_Taken.refund` makes it happen once."""

    __slots__ = ("_cost", "_spec", "_store")

    def __init__(self, store: MemoryStore, spec: BucketSpec, cost: int) -> None:
        self._store, self._spec, self._cost = store, spec, cost

    def refund(self, key: Hashable) -> None:
        self._store.refund([(self._spec, key, self._cost)])


class PairRefund:
    """As `SingleRefund`, for a pair take: `refund((key, key2, cost2))`."""

    __slots__ = ("_cost", "_first", "_second", "_store")

    def __init__(
        self, store: MemoryStore, first: BucketSpec, cost: int, second: BucketSpec
    ) -> None:
        self._store, self._first, self._cost, self._second = store, first, cost, second

    def refund(self, payload: tuple[Hashable, Hashable, int]) -> None:
        key, key2, cost2 = payload
        self._store.refund([(self._first, key, self._cost), (self._second, key2, cost2)])


def _open(w: SourceWriter, takes: MemoryTakes, depth: int) -> None:
    """Read the clock, take the lock and sweep when due, as `take` does."""
    w.line(depth, f"now = {w.const(takes.clock)}()")
    w.line(depth, f"{w.const(takes.acquire)}()")
    w.line(depth, "try:")
    w.line(depth + 1, f"if now >= {w.const(takes.store)}._sweep_at:")
    w.line(depth + 2, f"{w.const(takes.sweep)}(now)")


def _ahead(w: SourceWriter, full_at: str, fresh: str, step: str, depth: int) -> None:
    """`fresh`: when the bucket will be full again after this call's tokens."""
    w.line(
        depth, f"{fresh} = (now if {full_at} is None or {full_at} < now else {full_at}) + {step}"
    )


def _write_back(
    w: SourceWriter, insert: str, bucket: tuple[str, str, str, str], missing: str, depth: int
) -> None:
    """Store a bucket's new time: an insert (which counts, and may sweep) when `missing`
    holds, else a plain write. `bucket` names, in the generated code, its uid, key, table
    and new time."""
    uid, key, table, fresh = bucket
    w.line(depth, f"if {missing}:")
    w.line(depth + 1, f"{insert}({uid}, {key}, {fresh}, now)")
    w.line(depth, "else:")
    w.line(depth + 1, f"{table}[{key}] = {fresh}")


def _close(w: SourceWriter, takes: MemoryTakes, depth: int) -> None:
    w.line(depth, "finally:")
    w.line(depth + 1, f"{w.const(takes.release)}(None)")


def write_single(
    w: SourceWriter, takes: MemoryTakes, *, spec: BucketSpec, cost: int, key: str, depth: int
) -> tuple[str, str]:
    """Lines that take `cost` (in 1..burst) from `spec`'s bucket at `key` (a name or
    a literal in the generated code) and set `out` to None when taken, else to the
    Shortfall. Returns the names of the decision's refunder and refund payload."""
    spec = takes.spec(spec)
    uid, insert, table = w.const(spec.uid), w.const(takes.insert), w.const(takes.table(spec))
    _open(w, takes, depth)
    inner = depth + 1
    w.line(inner, f"full_at = {table}.get({key})")
    _ahead(w, "full_at", "fresh", w.const(cost * spec.interval), inner)
    w.line(inner, f"if fresh - now > {w.const(spec._limit)}:")
    w.line(inner + 1, f"out = Shortfall(0, fresh - now - {w.const(spec.capacity)})")
    w.line(inner, "else:")
    w.line(inner + 1, "out = None")
    _write_back(w, insert, (uid, key, table, "fresh"), "full_at is None", inner + 1)
    _close(w, takes, depth)
    return w.const(takes.single_refund(spec, cost)), key


def write_pair(
    w: SourceWriter,
    takes: MemoryTakes,
    *,
    first: BucketSpec,
    cost: int,
    second: BucketSpec,
    keys: tuple[str, str],
    cost2: str,
    depth: int,
) -> tuple[str, str]:
    """As `write_single`, for two different buckets: `cost` is a literal and `cost2`
    names a value the caller has checked to be in 1..burst (the all_tools limit and the
    tool's own, usually)."""
    first, second = takes.spec(first), takes.spec(second)
    table, table2 = w.const(takes.table(first)), w.const(takes.table(second))
    uid, uid2, insert = w.const(first.uid), w.const(second.uid), w.const(takes.insert)
    key, key2 = keys
    _open(w, takes, depth)
    inner = depth + 1
    w.line(inner, f"full_at = {table}.get({key})")
    _ahead(w, "full_at", "fresh", w.const(cost * first.interval), inner)
    w.line(inner, f"full_at2 = {table2}.get({key2})")
    _ahead(w, "full_at2", "fresh2", f"{cost2} * {w.const(second.interval)}", inner)
    limit, limit2 = w.const(first._limit), w.const(second._limit)
    spec, spec2 = w.const(first), w.const(second)
    w.line(inner, f"if fresh - now > {limit} or fresh2 - now > {limit2}:")
    w.line(inner + 1, f"out = pair_shortfall(fresh - now, {spec}, fresh2 - now, {spec2})")
    w.line(inner, "else:")
    w.line(inner + 1, "out = None")
    _write_back(w, insert, (uid, key, table, "fresh"), "full_at is None", inner + 1)
    # The first insert may have swept the second bucket away (it was full).
    missing2 = f"full_at2 is None or {key2} not in {table2}"
    _write_back(w, insert, (uid2, key2, table2, "fresh2"), missing2, inner + 1)
    _close(w, takes, depth)
    return w.const(takes.pair_refund(first, cost, second)), f"({key}, {key2}, {cost2})"


def pair_shortfall(ahead: float, first: BucketSpec, ahead2: float, second: BucketSpec) -> Shortfall:
    """The Shortfall `take` reports: the first bucket without room, the longest wait."""
    waits = [
        (index, wait - spec.capacity)
        for index, (wait, spec) in enumerate(((ahead, first), (ahead2, second)))
        if wait > spec._limit
    ]
    return Shortfall(waits[0][0], max(wait for _, wait in waits))
