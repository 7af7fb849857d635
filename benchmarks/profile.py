"""`python -m benchmarks.profile [KEY ...]`: where one row's time goes, by cProfile.

Builds the rows exactly as the benchmark does (quick sizes), runs each named row's call
many times under cProfile and prints the functions with the most time of their own.
Without a key it lists the keys. cProfile slows every Python call several times over, so
read the shares, not the absolute figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from collections.abc import Sequence

from benchmarks.cases_engine import engine_rows, scale_rows
from benchmarks.cases_validation import validation_rows
from benchmarks.harness import Case, Shape
from benchmarks.suite import Sizes

_SIZES = Sizes(tools=100, identities=1_000, memory_identities=1_000, walk=10_000)


def _cases() -> dict[str, Case]:
    rows = engine_rows(_SIZES) + scale_rows(_SIZES) + validation_rows(_SIZES)
    return {row.key: row for row in rows if isinstance(row, Case)}


def profile(case: Case, calls: int, top: int) -> str:
    xs = case.feed.take(calls)
    fn, rest = case.fn, case.rest
    profiler = cProfile.Profile()
    if case.shape is Shape.PAIRS3:
        profiler.enable()
        for x, y in xs:
            fn(x, y, *rest)
        profiler.disable()
    elif case.shape in (Shape.CALL1, Shape.CALL2, Shape.CALL3):
        profiler.enable()
        for x in xs:
            fn(x, *rest)
        profiler.disable()
    else:
        raise SystemExit(f"{case.key}: shape {case.shape.value} is not profiled here")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("keys", nargs="*", help="row keys, e.g. ours.realistic")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    cases = _cases()
    if not args.keys:
        print("\n".join(f"{key:28} {case.name}" for key, case in cases.items()))
        return 0
    for key in args.keys:
        case = cases.get(key)
        if case is None:
            print(f"unknown key {key!r}; run without arguments for the list", file=sys.stderr)
            return 2
        print(f"== {case.name} ({args.calls:,} calls)")
        print(profile(case, args.calls, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
