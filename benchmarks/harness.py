"""Timing machinery: cases, timed loops, autorange, rounds, medians and p99.

Every case is timed the same way, so rows can be compared:

* a *batch* is one tight loop of `n` calls under `perf_counter_ns`, with the garbage
  collector disabled; `n` is sized once per case like `timeit`'s autorange (the
  smallest of 1, 2, 5, 10, 20, 50, ... that takes `target_batch_s`, capped at
  `max_calls`);
* the whole suite runs in *rounds*; in each round the cases run in a new shuffled
  order, each for a slice of `slice_s` seconds (as many batches as fit, at least
  one), so a burst of load on the machine hits a few batches of many rows rather than
  every batch of one row;
* the reported median is the median per-call time over all batches of all rounds;
* the p99 comes from calls timed one by one (`perf_counter_ns` before and after
  each), minus the median of the same measurement around an empty call of the same
  shape, clamped at 0.

A case's loop shape (`Shape`) fixes how its function is called: with no argument,
with 1, 2 or 3 positional arguments of which the first comes from a feed (a list
built before the timer starts) and the rest are fixed, with a feed of
(first, second) pairs and a fixed third argument, or awaited inside a coroutine.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import itertools
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns
from typing import Any

__all__ = [
    "Case",
    "Feed",
    "Measurement",
    "Settings",
    "Shape",
    "one_line",
    "percentile",
    "run_suite",
]


class Shape(enum.Enum):
    """How the timed loop calls the case's function."""

    CALL0 = "fn()"
    CALL1 = "fn(x)"
    CALL2 = "fn(x, b)"
    CALL3 = "fn(x, b, c)"
    PAIRS3 = "fn(x, y, c)"
    AWAIT3 = "await fn(x, b, c)"


class Feed:
    """The first argument(s) of a case's calls: one constant, or a sequence walked in order.

    A sequence feed hands out successive slices and wraps around, so a run touches every
    element (every identity of a 100,000-identity case), not the same first few.
    """

    __slots__ = ("_constant", "_lists", "_offset", "_sequence")

    def __init__(self, constant: Any = None, sequence: Sequence[Any] | None = None) -> None:
        self._constant = constant
        self._sequence = sequence
        self._offset = 0
        self._lists: dict[int, list[Any]] = {}

    @classmethod
    def const(cls, value: Any) -> Feed:
        return cls(constant=value)

    @classmethod
    def walk(cls, sequence: Sequence[Any]) -> Feed:
        if not sequence:
            raise ValueError("a walked feed needs at least one element")
        return cls(sequence=sequence)

    def take(self, n: int) -> list[Any]:
        """A list of `n` first arguments (built outside any timer)."""
        seq = self._sequence
        if seq is None:
            cached = self._lists.get(n)
            if cached is None:
                cached = self._lists[n] = [self._constant] * n
            return cached
        out: list[Any] = []
        while len(out) < n:
            start = self._offset
            stop = min(len(seq), start + n - len(out))
            out.extend(seq[start:stop])
            self._offset = stop % len(seq)
        return out


@dataclass
class Case:
    """One row of the table: a function, how to call it, and what a correct call returns.

    `key` names the row for budgets and comparisons; `name` is what the table shows.
    `check` is called on one result before timing and again after the last round; it
    returns an error message, or None when the result is what the row claims to
    measure (e.g. an ALLOW decision for an "allowed" row). `settle`, when given, runs
    untimed after each of the row's slices, so work the row leaves behind (an audit
    thread's backlog) is done before another row is timed.
    """

    key: str
    name: str
    fn: Callable[..., Any]
    shape: Shape
    feed: Feed
    rest: tuple[Any, ...] = ()
    check: Callable[[Any], str | None] | None = None
    group: str = "ours"
    settle: Callable[[], None] | None = None


@dataclass
class Settings:
    """How long and how hard to measure."""

    rounds: int
    slice_s: float
    target_batch_s: float
    max_calls: int
    samples_per_round: int
    seed: int = 20240601


@dataclass
class Measurement:
    """Everything measured for one case."""

    case: Case
    calls_per_batch: int = 0
    batch_ns: list[float] = field(default_factory=list)
    samples_ns: list[int] = field(default_factory=list)
    overhead_ns: float = 0.0
    error: str | None = None

    @property
    def median_ns(self) -> float:
        return percentile(self.batch_ns, 50.0)

    @property
    def p99_ns(self) -> float:
        if not self.samples_ns:
            return float("nan")
        return max(0.0, percentile(self.samples_ns, 99.0) - self.overhead_ns)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- timed loops: one per shape, plain module functions so nothing else runs in them --------


def _loop0(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> None:
    for _ in xs:
        fn()


def _loop1(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> None:
    for x in xs:
        fn(x)


def _loop2(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> None:
    (b,) = rest
    for x in xs:
        fn(x, b)


def _loop3(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> None:
    b, c = rest
    for x in xs:
        fn(x, b, c)


def _loop_pairs(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> None:
    (c,) = rest
    for x, y in xs:
        fn(x, y, c)


def _each0(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]) -> None:
    clock = perf_counter_ns
    append = out.append
    for _ in xs:
        t0 = clock()
        fn()
        append(clock() - t0)


def _each1(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]) -> None:
    clock = perf_counter_ns
    append = out.append
    for x in xs:
        t0 = clock()
        fn(x)
        append(clock() - t0)


def _each2(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]) -> None:
    clock = perf_counter_ns
    append = out.append
    (b,) = rest
    for x in xs:
        t0 = clock()
        fn(x, b)
        append(clock() - t0)


def _each3(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]) -> None:
    clock = perf_counter_ns
    append = out.append
    b, c = rest
    for x in xs:
        t0 = clock()
        fn(x, b, c)
        append(clock() - t0)


def _each_pairs(
    fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]
) -> None:
    clock = perf_counter_ns
    append = out.append
    (c,) = rest
    for x, y in xs:
        t0 = clock()
        fn(x, y, c)
        append(clock() - t0)


async def _aloop3(fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]) -> int:
    b, c = rest
    t0 = perf_counter_ns()
    for x in xs:
        await fn(x, b, c)
    return perf_counter_ns() - t0


async def _aeach3(
    fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...], out: list[int]
) -> None:
    clock = perf_counter_ns
    append = out.append
    b, c = rest
    for x in xs:
        t0 = clock()
        await fn(x, b, c)
        append(clock() - t0)


_Loop = Callable[[Callable[..., Any], list[Any], tuple[Any, ...]], None]
_Each = Callable[[Callable[..., Any], list[Any], tuple[Any, ...], list[int]], None]

_LOOPS: dict[Shape, _Loop] = {
    Shape.CALL0: _loop0,
    Shape.CALL1: _loop1,
    Shape.CALL2: _loop2,
    Shape.CALL3: _loop3,
    Shape.PAIRS3: _loop_pairs,
}
_EACH: dict[Shape, _Each] = {
    Shape.CALL0: _each0,
    Shape.CALL1: _each1,
    Shape.CALL2: _each2,
    Shape.CALL3: _each3,
    Shape.PAIRS3: _each_pairs,
}


def _empty0() -> None:
    pass


def _empty1(a: object) -> None:
    pass


def _empty2(a: object, b: object) -> None:
    pass


def _empty3(a: object, b: object, c: object) -> None:
    pass


async def _aempty3(a: object, b: object, c: object) -> None:
    pass


# The empty call of each shape, timed one by one, gives the overhead to subtract from p99s.
_EMPTY: dict[Shape, tuple[Callable[..., Any], Feed, tuple[Any, ...]]] = {
    Shape.CALL0: (_empty0, Feed.const(None), ()),
    Shape.CALL1: (_empty1, Feed.const(None), ()),
    Shape.CALL2: (_empty2, Feed.const(None), (None,)),
    Shape.CALL3: (_empty3, Feed.const(None), (None, None)),
    Shape.PAIRS3: (_empty3, Feed.const((None, None)), (None,)),
    Shape.AWAIT3: (_aempty3, Feed.const(None), (None, None)),
}


class _Timer:
    """Runs batches and one-by-one samples of any shape (one event loop for AWAIT3)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def batch(
        self, shape: Shape, fn: Callable[..., Any], xs: list[Any], rest: tuple[Any, ...]
    ) -> float:
        """Nanoseconds per call over one batch, GC disabled."""
        gc.disable()
        try:
            if shape is Shape.AWAIT3:
                elapsed: int = self._run(_aloop3(fn, xs, rest))
            else:
                loop = _LOOPS[shape]
                t0 = perf_counter_ns()
                loop(fn, xs, rest)
                elapsed = perf_counter_ns() - t0
        finally:
            gc.enable()
        return elapsed / len(xs)

    def each(
        self,
        shape: Shape,
        fn: Callable[..., Any],
        xs: list[Any],
        rest: tuple[Any, ...],
        out: list[int],
    ) -> None:
        """Time each call on its own (raw, overhead included), GC disabled."""
        gc.disable()
        try:
            if shape is Shape.AWAIT3:
                self._run(_aeach3(fn, xs, rest, out))
            else:
                _EACH[shape](fn, xs, rest, out)
        finally:
            gc.enable()

    def one(self, case: Case) -> Any:
        """One call, untimed, for the sanity check."""
        (x,) = case.feed.take(1)
        rest = case.rest
        if case.shape is Shape.AWAIT3:
            return self._run(case.fn(x, *rest))
        if case.shape is Shape.CALL0:
            return case.fn()
        if case.shape is Shape.PAIRS3:
            return case.fn(x[0], x[1], *rest)
        return case.fn(x, *rest)


def _autorange(timer: _Timer, case: Case, settings: Settings) -> int:
    """The smallest n in 1, 2, 5, 10, 20, 50, ... whose batch takes target_batch_s."""
    for exponent in itertools.count():
        for mantissa in (1, 2, 5):
            n: int = min(mantissa * 10**exponent, settings.max_calls)
            per_call = timer.batch(case.shape, case.fn, case.feed.take(n), case.rest)
            if per_call * n >= settings.target_batch_s * 1e9 or n >= settings.max_calls:
                return n
    raise AssertionError("unreachable")


def run_suite(
    cases: Sequence[Case],
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> list[Measurement]:
    """Measure every case in interleaved rounds; return one Measurement per case, in order."""
    timer = _Timer()
    rng = random.Random(settings.seed)
    results = [Measurement(case) for case in cases]
    overhead_samples: dict[Shape, list[int]] = {shape: [] for shape in _EMPTY}
    shapes = {case.shape for case in cases}
    try:
        for m in results:
            try:
                _sanity(timer, m.case)
                m.calls_per_batch = _autorange(timer, m.case, settings)
            except Exception as exc:  # a row that cannot run is reported, not fatal
                m.error = one_line(exc)
        live = [m for m in results if m.error is None]
        for r in range(settings.rounds):
            if progress is not None:
                progress(f"round {r + 1}/{settings.rounds}")
            for shape in shapes:
                fn, feed, rest = _EMPTY[shape]
                timer.each(shape, fn, feed.take(2000), rest, overhead_samples[shape])
            order = list(live)
            rng.shuffle(order)
            for m in order:
                _measure_slice(timer, m, settings)
        for m in live:
            m.overhead_ns = percentile(overhead_samples[m.case.shape], 50.0)
            try:
                _sanity(timer, m.case)
            except Exception as exc:
                m.error = f"after the run: {one_line(exc)}"
    finally:
        timer.close()
    return results


def one_line(exc: BaseException, limit: int = 100) -> str:
    """`Type: message`, first line only, cut to `limit` characters (for a table cell)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sanity(timer: _Timer, case: Case) -> None:
    result = timer.one(case)
    if case.check is not None:
        problem = case.check(result)
        if problem is not None:
            raise AssertionError(problem)


def _measure_slice(timer: _Timer, m: Measurement, settings: Settings) -> None:
    case = m.case
    n = m.calls_per_batch
    deadline = perf_counter() + settings.slice_s
    while True:
        xs = case.feed.take(n)
        m.batch_ns.append(timer.batch(case.shape, case.fn, xs, case.rest))
        if perf_counter() >= deadline:
            break
    # One-by-one samples for the p99: as many as fit in a fifth of a slice, within bounds.
    per_call_s = max(m.batch_ns[-1], 1.0) * 1e-9
    k = int(min(settings.samples_per_round, max(20, settings.slice_s * 0.2 / per_call_s)))
    timer.each(case.shape, case.fn, case.feed.take(k), case.rest, m.samples_ns)
    if case.settle is not None:
        case.settle()
