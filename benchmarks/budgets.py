"""The budgets of the architecture ("Performance budgets"), and how each is judged.

Absolute budgets were set on a quiet machine whose empty 3-argument call took
`QUIET_FLOOR_NS`. Absolute figures move 2-5x with the load on a shared machine, so
each absolute budget is also rescaled by (this run's empty-call floor / QUIET_FLOOR_NS)
and judged against the rescaled figure; ratio budgets (to a peer or to the scale base,
measured in the same run) need no rescaling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks import cases_audit as aud
from benchmarks import cases_engine as eng
from benchmarks import cases_middleware as mw
from benchmarks import cases_peers as peers
from benchmarks import cases_redis as rds
from benchmarks import cases_validation as val

__all__ = [
    "BUDGETS",
    "COMPARED_WITH",
    "MEMORY_KEY",
    "QUIET_FLOOR_NS",
    "RECLAIM_KEY",
    "Budget",
    "Facts",
    "Judgement",
    "MaxBytes",
    "MaxMedian",
    "MaxP99",
    "Ratio",
    "Reclaimed",
    "ScaleRatio",
    "judge",
]

QUIET_FLOOR_NS = 26.0  # architecture.md: an empty 3-argument call on a quiet machine

MEMORY_KEY = "memory.bytes_per_bucket"
RECLAIM_KEY = "memory.reclaimed"


@dataclass(frozen=True)
class Facts:
    """What budgets read: medians and p99s by key (ns), the floor scale, memory figures."""

    median: Mapping[str, float]
    p99: Mapping[str, float]
    scale: float
    bytes_per_bucket: float | None = None
    buckets_after_idle: int | None = None


@dataclass(frozen=True)
class Judgement:
    """One budget's verdict: the budget as written, as rescaled, and met (None: can't tell)."""

    budget: str
    rescaled: str
    met: bool | None
    note: str = ""
    measured: str = ""


def _ns(value: float) -> str:
    if value < 1_000:
        return f"{value:.0f} ns"
    if value < 1_000_000:
        return f"{value / 1_000:.2f} µs"
    return f"{value / 1_000_000:.2f} ms"


class Budget:
    """One rule; `judge` reads the facts of this run."""

    def judge(self, key: str, facts: Facts) -> Judgement:
        raise NotImplementedError


@dataclass(frozen=True)
class MaxMedian(Budget):
    """Median per call at most `limit_ns` (rescaled); with `above`, the median minus the
    median of the row `above` (e.g. a middleware above a bare call_next)."""

    limit_ns: float
    above: str | None = None

    def judge(self, key: str, facts: Facts) -> Judgement:
        what = "" if self.above is None else " above its base"
        budget = f"≤ {_ns(self.limit_ns)}{what}"
        scaled = self.limit_ns * facts.scale
        rescaled = f"≤ {_ns(scaled)}{what}"
        value = facts.median.get(key, math.nan)
        if self.above is not None:
            value -= facts.median.get(self.above, math.nan)
        if math.isnan(value):
            return Judgement(budget, rescaled, None, "not measured")
        return Judgement(budget, rescaled, value <= scaled, measured=_ns(value))


@dataclass(frozen=True)
class MaxP99(Budget):
    """p99 per call at most `limit_ns` (rescaled)."""

    limit_ns: float

    def judge(self, key: str, facts: Facts) -> Judgement:
        scaled = self.limit_ns * facts.scale
        budget, rescaled = f"p99 ≤ {_ns(self.limit_ns)}", f"p99 ≤ {_ns(scaled)}"
        value = facts.p99.get(key, math.nan)
        if math.isnan(value):
            return Judgement(budget, rescaled, None, "not measured")
        return Judgement(budget, rescaled, value <= scaled, measured=f"p99 {_ns(value)}")


@dataclass(frozen=True)
class Ratio(Budget):
    """Against another row of the same run: `median <= other / faster_by` (faster_by >= 1:
    at least that many times faster) or `median <= other * within` (a scale budget)."""

    other: str
    label: str
    faster_by: float = 1.0
    within: float = 1.0

    def judge(self, key: str, facts: Facts) -> Judgement:
        if self.within != 1.0:
            budget = f"≤ {self.within:g}× {self.label}"
        elif self.faster_by == 1.0:
            budget = f"no slower than {self.label}"
        else:
            budget = f"≥ {self.faster_by:g}× faster than {self.label}"
        ours = facts.median.get(key, math.nan)
        other = facts.median.get(self.other, math.nan)
        if math.isnan(ours) or math.isnan(other):
            return Judgement(budget, "(a ratio)", None, f"{self.label} not measured")
        met = ours <= other * self.within / self.faster_by
        if self.within != 1.0:
            measured = f"{ours / other:.2f}× the base"
        elif ours <= other:
            measured = f"{other / ours:.1f}× faster"
        else:
            measured = f"{ours / other:.1f}× slower"
        return Judgement(budget, "(a ratio)", met, measured=measured)


@dataclass(frozen=True)
class MaxBytes(Budget):
    limit: float

    def judge(self, key: str, facts: Facts) -> Judgement:
        budget = f"≤ {self.limit:g} B/bucket"
        value = facts.bytes_per_bucket
        if value is None or math.isnan(value):
            return Judgement(budget, "(not load-dependent)", None, "not measured")
        return Judgement(
            budget, "(not load-dependent)", value <= self.limit, measured=f"{value:.0f} B/bucket"
        )


@dataclass(frozen=True)
class Reclaimed(Budget):
    """After every bucket has refilled, at most `left` buckets remain (the new caller's)."""

    left: int = 1

    def judge(self, key: str, facts: Facts) -> Judgement:
        budget = "idle buckets reclaimed"
        if facts.buckets_after_idle is None:
            return Judgement(budget, "(not load-dependent)", None, "not measured")
        left = facts.buckets_after_idle
        return Judgement(
            budget, "(not load-dependent)", left <= self.left, measured=f"{left:,} left"
        )


@dataclass(frozen=True)
class ScaleRatio(Ratio):
    """A scale budget, judged as written (`median <= base * within`), whose verdict also
    says how much of the excess the same walk through two bare dicts (`floor`, against
    `floor_base`) pays too: the part no design keyed by tool and caller can avoid."""

    floor: str = ""
    floor_base: str = ""

    def judge(self, key: str, facts: Facts) -> Judgement:
        verdict = super().judge(key, facts)
        ours, base = facts.median.get(key, math.nan), facts.median.get(self.other, math.nan)
        floor = facts.median.get(self.floor, math.nan)
        floor_base = facts.median.get(self.floor_base, math.nan)
        if verdict.met is None or math.isnan(floor) or math.isnan(floor_base):
            return verdict
        memory = floor - floor_base
        measured = (
            f"{verdict.measured}; the bare-dict walk pays +{memory:.0f} ns of the "
            f"+{ours - base:.0f} ns ({(ours - memory) / base:.2f}× without it)"
        )
        return Judgement(verdict.budget, verdict.rescaled, verdict.met, measured=measured)


def _scale(floor: str) -> list[Budget]:
    return [
        ScaleRatio(
            eng.SCALE_BASE,
            "the scale base",
            within=1.2,
            floor=floor,
            floor_base=eng.SCALE_FLOOR_BASE,
        )
    ]


_STATIC = [MaxMedian(200)]

BUDGETS: dict[str, Sequence[Budget]] = {
    eng.STATIC_ALLOW: _STATIC,
    eng.STATIC_DENY: _STATIC,
    eng.HIDDEN: _STATIC,
    eng.DEFAULT_DENY: _STATIC,
    eng.ONE_LIMIT: [MaxMedian(500), Ratio(peers.LIMITS_FIXED, "limits FixedWindow", 5.0)],
    eng.REALISTIC: [MaxMedian(2_000), MaxP99(5_000)],
    eng.SCALE_TOOLS: _scale(eng.SCALE_FLOOR_TOOLS),
    eng.SCALE_IDENTITIES: _scale(eng.SCALE_FLOOR_IDENTITIES),
    eng.SCALE_BOTH: _scale(eng.SCALE_FLOOR_BOTH),
    val.OURS: [Ratio(val.FASTJSONSCHEMA, "fastjsonschema")],
    mw.POLICY: [MaxMedian(3_000, above=mw.BARE)],
    mw.POLICY_STATIC: [MaxMedian(3_000, above=mw.BARE)],
    mw.SDK_POLICY: [MaxMedian(3_000, above=mw.BARE)],
    mw.SDK_POLICY_STATIC: [MaxMedian(3_000, above=mw.BARE)],
    aud.AUDIT_STATIC: [Ratio(eng.STATIC_ALLOW, "decide() without audit", within=3.0)],
    aud.AUDIT_REALISTIC: [Ratio(eng.REALISTIC, "decide() without audit", within=3.0)],
    MEMORY_KEY: [MaxBytes(150)],
    RECLAIM_KEY: [Reclaimed()],
}

# The row each of ours is compared with in the table (the nearest peer, or the scale base),
# and the short label the table shows for it.
COMPARED_WITH: dict[str, tuple[str, str]] = {
    eng.STATIC_ALLOW: (peers.CEDAR_ALLOW, "cedarpy (permit)"),
    eng.STATIC_DENY: (peers.CEDAR_FORBID, "cedarpy (forbid)"),
    eng.HIDDEN: (peers.CEDAR_FORBID, "cedarpy (forbid)"),
    eng.DEFAULT_DENY: (peers.CEDAR_NO_MATCH, "cedarpy (no permit)"),
    eng.ONE_LIMIT: (peers.LIMITS_FIXED, "limits FixedWindow"),
    eng.REALISTIC: (peers.PEER_STACK, "peer stack"),
    eng.SCALE_TOOLS: (eng.SCALE_BASE, "scale base"),
    eng.SCALE_IDENTITIES: (eng.SCALE_BASE, "scale base"),
    eng.SCALE_BOTH: (eng.SCALE_BASE, "scale base"),
    eng.SCALE_BOTH_WARM: (eng.SCALE_BASE, "scale base"),
    eng.SCALE_FLOOR_TOOLS: (eng.SCALE_FLOOR_BASE, "its 10 × 1 walk"),
    eng.SCALE_FLOOR_IDENTITIES: (eng.SCALE_FLOOR_BASE, "its 10 × 1 walk"),
    eng.SCALE_FLOOR_BOTH: (eng.SCALE_FLOOR_BASE, "its 10 × 1 walk"),
    val.OURS: (val.FASTJSONSCHEMA, "fastjsonschema"),
    aud.AUDIT_STATIC: (eng.STATIC_ALLOW, "decide() without audit"),
    aud.AUDIT_REALISTIC: (eng.REALISTIC, "decide() without audit"),
    rds.ONE_LIMIT_REDIS: (rds.LIMITS_FIXED_REDIS, "limits FixedWindow (Redis)"),
    rds.REALISTIC_REDIS: (rds.PING, "Redis PING"),
    rds.CLUSTER_ONE_LIMIT: (rds.ONE_LIMIT_REDIS, "RedisStore, one node"),
    rds.CLUSTER_REALISTIC: (rds.REALISTIC_REDIS, "RedisStore, one node"),
    mw.POLICY: (mw.RATE_LIMITING, "FastMCP RateLimitingMiddleware"),
    mw.POLICY_STATIC: (mw.RATE_LIMITING, "FastMCP RateLimitingMiddleware"),
    mw.SDK_POLICY: (mw.RATE_LIMITING, "FastMCP RateLimitingMiddleware"),
    mw.SDK_POLICY_STATIC: (mw.RATE_LIMITING, "FastMCP RateLimitingMiddleware"),
}


def judge(key: str, facts: Facts) -> list[Judgement]:
    """Every budget of the row `key` (none for rows without one)."""
    return [budget.judge(key, facts) for budget in BUDGETS.get(key, ())]
