"""`python -m benchmarks [--quick] [--write-docs]`: measure, print the table, judge budgets."""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import budgets, report
from benchmarks.cases_audit import audit_rows
from benchmarks.cases_engine import engine_rows, scale_rows
from benchmarks.cases_floors import EMPTY_CALL, floor_rows
from benchmarks.cases_middleware import middleware_rows
from benchmarks.cases_peers import peer_rows
from benchmarks.cases_redis import redis_rows
from benchmarks.cases_validation import validation_rows
from benchmarks.harness import Case, Measurement, Settings, one_line, run_suite
from benchmarks.memory import MemoryResult, measure_buckets
from benchmarks.suite import Missing, Row, Sizes

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"

# Builders of the rows, in table order; each takes the mode's Sizes.
ROW_BUILDERS: tuple[Callable[[Sizes], list[Row]], ...] = (
    floor_rows,
    engine_rows,
    audit_rows,
    scale_rows,
    validation_rows,
    middleware_rows,
    peer_rows,
    redis_rows,
)


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: Sizes
    settings: Settings
    judged: bool


FULL = Mode(
    "full",
    Sizes(tools=10_000, identities=100_000, memory_identities=100_000, walk=100_000),
    Settings(
        rounds=10,
        slice_s=0.25,
        target_batch_s=0.005,
        max_calls=10_000,
        samples_per_round=2_000,
    ),
    judged=True,
)
QUICK = Mode(
    "quick",
    Sizes(tools=100, identities=1_000, memory_identities=1_000, walk=10_000),
    Settings(
        rounds=2,
        slice_s=0.02,
        target_batch_s=0.0005,
        max_calls=1_000,
        samples_per_round=100,
    ),
    judged=False,
)


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def _build(mode: Mode) -> list[Row]:
    rows: list[Row] = []
    for build in ROW_BUILDERS:
        started = time.perf_counter()
        rows += build(mode.sizes)
        _progress(f"built {build.__name__} in {time.perf_counter() - started:.1f} s")
    return rows


def _header(env: report.Environment, mode: Mode) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    s = mode.settings
    return "\n".join(
        [
            f"policylayer_core benchmark ({mode.name} mode), {env.date}",
            f"Python: {env.python}",
            f"CPU: {env.cpu} ({env.cores} cores)",
            f"load average at start: {report.load_text(env.load)}",
            f"packages: {versions}",
            f"method: {s.rounds} rounds, {s.slice_s:g} s per case per round, batches of up to "
            f"{s.max_calls:,} calls sized to {s.target_batch_s * 1e3:g} ms; median over "
            "batches, p99 over calls timed one by one; GC off while timing",
        ]
    )


def _table(
    rows: Sequence[Row],
    results: Sequence[Measurement],
    memory: MemoryResult | None,
    facts: budgets.Facts,
    judged: bool,
) -> list[report.TableRow]:
    by_key = {m.case.key: m for m in results}
    floor = facts.median.get(EMPTY_CALL, math.nan)
    out: list[report.TableRow] = []
    memory_done = False
    for row in rows:
        if row.group == "peer" and not memory_done:
            out += _memory_rows(memory, facts, judged)
            memory_done = True
        if isinstance(row, Missing):
            out.append(report.plain_row(row.name, row.reason, row.group))
            continue
        m = by_key[row.key]
        if m.error is not None:
            out.append(report.plain_row(row.name, f"FAILED: {m.error}", row.group))
            continue
        verdicts = budgets.judge(row.key, facts)
        out.append(
            report.measured_row(
                m,
                floor_ns=floor,
                medians=facts.median,
                judgements=verdicts,
                judged=judged,
            )
        )
    if not memory_done:
        out += _memory_rows(memory, facts, judged)
    return out


def _memory_rows(
    memory: MemoryResult | None, facts: budgets.Facts, judged: bool
) -> list[report.TableRow]:
    if memory is None:
        return [report.plain_row("memory per active bucket", "FAILED", "memory")]
    n = memory.buckets_after_fill - memory.buckets_before
    per_bucket = report.plain_row(
        f"memory per active bucket ({n:,} identities, one limit)",
        f"{memory.bytes_per_bucket:.0f} B/bucket",
        "memory",
        judgements=budgets.judge(budgets.MEMORY_KEY, facts),
        judged=judged,
    )
    reclaimed = report.plain_row(
        f"idle buckets reclaimed: {memory.buckets_after_fill:,} → "
        f"{memory.buckets_after_idle:,} buckets, {memory.traced_after_fill / 1e6:.1f} MB → "
        f"{memory.traced_after_idle / 1e3:.1f} kB (clock +{memory.idle_seconds:g} s)",
        f"{memory.buckets_after_idle:,} left",
        "memory",
        judgements=budgets.judge(budgets.RECLAIM_KEY, facts),
        judged=judged,
    )
    return [per_bucket, reclaimed]


def _summary(rows: Sequence[Row], facts: budgets.Facts) -> list[str]:
    names = {row.key: row.name for row in rows}
    names[budgets.MEMORY_KEY] = "memory per active bucket"
    names[budgets.RECLAIM_KEY] = "idle buckets reclaimed"
    lines = []
    for key in budgets.BUDGETS:
        for j in budgets.judge(key, facts):
            state = {True: "met", False: "MISSED", None: "can't tell"}[j.met]
            figure = "" if j.rescaled.startswith("(") else f"; at this floor {j.rescaled}"
            measured = j.measured or j.note
            lines.append(
                f"  {state:<10} {names.get(key, key)}: {measured} (budget {j.budget}{figure})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, a few seconds, no budget judgement (CI: proves the benchmark runs)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"rewrite the results section of {DOCS.relative_to(DOCS.parent.parent)}",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    started = time.perf_counter()

    env = report.environment()
    print(_header(env, mode), flush=True)
    if not mode.judged:
        print("quick mode: budgets not judged", flush=True)

    # Memory first: once peers have run, their background threads (limits' expiry timer,
    # pyrate-limiter's leaker) allocate now and then, and tracemalloc would count that.
    _progress("measuring memory per bucket")
    try:
        memory: MemoryResult | None = measure_buckets(mode.sizes.memory_identities)
    except Exception as exc:
        print(f"memory measurement failed: {one_line(exc)}", file=sys.stderr)
        memory = None
    gc.collect()
    rows = _build(mode)
    cases = [row for row in rows if isinstance(row, Case)]
    gc.collect()
    results = run_suite(cases, mode.settings, _progress)

    medians = {m.case.key: m.median_ns for m in results if m.error is None}
    p99s = {m.case.key: m.p99_ns for m in results if m.error is None}
    floor = medians.get(EMPTY_CALL, math.nan)
    scale = floor / budgets.QUIET_FLOOR_NS
    facts = budgets.Facts(
        median=medians,
        p99=p99s,
        scale=scale,
        bytes_per_bucket=memory.bytes_per_bucket if memory else None,
        buckets_after_idle=memory.buckets_after_idle if memory else None,
    )
    table = _table(rows, results, memory, facts, mode.judged)
    end_load = report.load_text(report.environment().load)
    scale_line = (
        f"floor: empty 3-argument call {report.fmt_ns(floor)} in this run vs "
        f"{budgets.QUIET_FLOOR_NS:g} ns on a quiet machine: absolute budgets are rescaled by "
        f"×{scale:.2f} and judged at that figure (column 'budget at this floor')"
    )
    print()
    print(report.render_text(table))
    print()
    print(scale_line)
    print(f"load average at end: {end_load}; run took {time.perf_counter() - started:.0f} s")
    if mode.judged:
        print("budgets:")
        print("\n".join(_summary(rows, facts)))
    else:
        print("quick mode: budgets not judged")

    crashed = [m.case.name for m in results if m.error is not None]
    crashed += [row.name for row in rows if isinstance(row, Missing) and row.failed]
    if memory is None:
        crashed.append("memory per active bucket")
    if crashed:
        print("FAILED rows: " + "; ".join(crashed), file=sys.stderr)

    if args.write_docs:
        section = "\n".join(
            [
                f"Run of {env.date} ({mode.name} mode): {env.python} on {env.cpu} "
                f"({env.cores} cores); load average {report.load_text(env.load)} at start, "
                f"{end_load} at end.",
                "",
                scale_line + ".",
                "",
                report.render_markdown(table),
                "",
                *(
                    ["Budgets:", "", *[f"- {line.strip()}" for line in _summary(rows, facts)]]
                    if mode.judged
                    else ["Quick mode: budgets not judged."]
                ),
            ]
        )
        report.write_docs(DOCS, section)
        print(f"wrote the results section of {DOCS}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
