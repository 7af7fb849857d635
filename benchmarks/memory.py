"""Memory per active bucket, and whether idle buckets are given back.

An engine with one per-identity limit (the example's all_tools `calls`, 120 a minute)
and a fake clock decides one call for each of N identities while tracemalloc traces
allocations; bytes per bucket = traced growth / buckets added. The identity strings are
made before tracing starts (they belong to the caller). Then the fake clock moves past
the refill time of every bucket and one more call (a new identity) lets the store run
its sweep: the bucket count and the traced memory should fall back.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import dataclass
from typing import Any

from benchmarks import policies
from policylayer_core import Effect, PolicyEngine

__all__ = ["FakeClock", "MemoryResult", "measure_buckets"]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class MemoryResult:
    identities: int
    buckets_before: int
    buckets_after_fill: int
    bytes_per_bucket: float
    traced_after_fill: int
    buckets_after_idle: int
    traced_after_idle: int
    idle_seconds: float


def measure_buckets(identities: int) -> MemoryResult:
    clock = FakeClock()
    engine = PolicyEngine.from_dict(policies.scale_policy(["qflow_task_get"]), clock=clock)
    tool, args = "qflow_task_get", dict[str, Any]()
    who = [f"user-{i:06d}" for i in range(identities)]
    decide = engine.decide
    first = decide("warm-up", tool, args)  # routes, compiled tables, the store's first table
    if first.effect is not Effect.ALLOW:
        raise AssertionError(f"memory case: expected ALLOW, got {first!r}")
    store = engine.store
    gc.collect()
    before_buckets = len(store)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for identity in who:
            decide(identity, tool, args)
        gc.collect()
        filled = tracemalloc.get_traced_memory()[0] - base
        after_fill = len(store)  # type: ignore[arg-type]
        # 120 a minute: one call leaves a bucket 0.5 s from full. Two minutes later every
        # bucket is full, and the next call's take sweeps the full ones away.
        idle = 120.0
        clock.now += idle
        decide("late-caller", tool, args)
        gc.collect()
        after_idle_bytes = tracemalloc.get_traced_memory()[0] - base
        after_idle = len(store)  # type: ignore[arg-type]
    finally:
        tracemalloc.stop()
    added = after_fill - before_buckets
    return MemoryResult(
        identities=identities,
        buckets_before=before_buckets,
        buckets_after_fill=after_fill,
        bytes_per_bucket=filled / added if added else float("nan"),
        traced_after_fill=filled,
        buckets_after_idle=after_idle,
        traced_after_idle=after_idle_bytes,
        idle_seconds=idle,
    )
