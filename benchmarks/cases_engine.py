"""Our `engine.decide()`, one row per path of the budget table, and the scaling rows."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from benchmarks import policies
from benchmarks.harness import Case, Feed, Shape
from benchmarks.suite import Row, Sizes
from policylayer_core import Decision, Effect, PolicyEngine

__all__ = [
    "DEFAULT_DENY",
    "HIDDEN",
    "ONE_LIMIT",
    "REALISTIC",
    "SCALE_BASE",
    "SCALE_BOTH",
    "SCALE_BOTH_WARM",
    "SCALE_FLOOR_BASE",
    "SCALE_FLOOR_BOTH",
    "SCALE_FLOOR_IDENTITIES",
    "SCALE_FLOOR_TOOLS",
    "SCALE_IDENTITIES",
    "SCALE_TOOLS",
    "STATIC_ALLOW",
    "STATIC_DENY",
    "engine_rows",
    "scale_rows",
]

STATIC_ALLOW = "ours.static_allow"
STATIC_DENY = "ours.static_deny"
HIDDEN = "ours.hidden"
DEFAULT_DENY = "ours.default_deny"
ONE_LIMIT = "ours.one_limit"
REALISTIC = "ours.realistic"
SCALE_BASE = "ours.scale_base"
SCALE_TOOLS = "ours.scale_tools"
SCALE_IDENTITIES = "ours.scale_identities"
SCALE_BOTH = "ours.scale_both"
SCALE_BOTH_WARM = "ours.scale_both_warm"
# The same walks through two bare dicts of the same sizes: what memory costs any design.
SCALE_FLOOR_BASE = "floor.scale_base"
SCALE_FLOOR_TOOLS = "floor.scale_tools"
SCALE_FLOOR_IDENTITIES = "floor.scale_identities"
SCALE_FLOOR_BOTH = "floor.scale_both"


def expect(effect: Effect, rule: str | None = None) -> Callable[[Any], str | None]:
    """A check that the call decided `effect` (at `rule`, when given)."""

    def check(decision: Any) -> str | None:
        if not isinstance(decision, Decision):
            return f"expected a Decision, got {decision!r}"
        if decision.effect is not effect or (rule is not None and decision.rule != rule):
            return f"expected {effect.value} at {rule or 'any rule'}, got {decision!r}"
        return None

    return check


def engine_rows(sizes: Sizes) -> list[Row]:
    static = PolicyEngine.from_dict(policies.static_policy())
    limited = PolicyEngine.from_dict(policies.one_limit_policy())
    realistic = PolicyEngine.from_dict(policies.realistic_policy())
    who, args = policies.IDENTITY, dict[str, Any]()
    return [
        Case(STATIC_ALLOW, "decide: static allow", static.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_get", args),
             expect(Effect.ALLOW, "/tools/qflow_task_get")),
        Case(STATIC_DENY, "decide: static deny (action: deny)", static.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_purge", args),
             expect(Effect.DENY, "/tools/qflow_task_purge/action")),
        Case(HIDDEN, "decide: hidden", static.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_delete", args), expect(Effect.DENY, "/hide/0")),
        Case(DEFAULT_DENY, "decide: default deny", static.decide, Shape.CALL3,
             Feed.const(who), ("qflow_unknown_tool", args), expect(Effect.DENY, "/default")),
        Case(ONE_LIMIT, "decide: one token-bucket limit, allowed", limited.decide,
             Shape.CALL3, Feed.const(who), ("qflow_task_create", args),
             expect(Effect.ALLOW, "/tools/qflow_task_create")),
        Case(REALISTIC, "decide: realistic qflow_task_batch (allowed)", realistic.decide,
             Shape.CALL3, Feed.const(who), ("qflow_task_batch", policies.BATCH_ARGS),
             expect(Effect.ALLOW, "/tools/qflow_task_batch")),
    ]  # fmt: skip


def _walk(
    tools: int, identities: int, length: int, seed: int, warm: int = 0
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Tool names, identities (shuffled) and the (identity, tool) pairs a row walks."""
    rng = random.Random(seed)
    names = [f"qflow_tool_{i:05d}" for i in range(tools)]
    who = [policies.IDENTITY] if identities == 1 else [f"user-{i:06d}" for i in range(identities)]
    rng.shuffle(who)
    called, chosen = (who[:warm], names[:warm]) if warm else (who, names)
    pairs = [(called[i % len(called)], chosen[rng.randrange(len(chosen))]) for i in range(length)]
    return names, who, pairs


def _scale_case(
    key: str, name: str, *, tools: int, identities: int, length: int, seed: int, warm: int = 0
) -> Case:
    """decide() over `tools` plain tools under one per-identity limit, called by `identities`
    callers in a shuffled order; the tool of each call is drawn at random.

    Every row walks a sequence of the same length, so the loops are identical and only
    the table sizes differ. Each identity is called once before timing, so its bucket
    exists and the timed calls see the store at its full size. With `warm`, the calls
    go to only `warm` of the tools and `warm` of the identities: tables at full size,
    but a working set that stays in the CPU's caches.
    """
    names, who, pairs = _walk(tools, identities, length, seed, warm)
    engine = PolicyEngine.from_dict(policies.scale_policy(names))
    for identity in who:
        engine.decide(identity, names[0], {})
    return Case(key, name, engine.decide, Shape.PAIRS3, Feed.walk(pairs), ({},),
                expect(Effect.ALLOW), group="scale")  # fmt: skip


def _scale_floor(
    key: str, name: str, *, tools: int, identities: int, length: int, seed: int
) -> Case:
    """The walk of the scale row with the same seed, through two plain dicts of the same
    sizes (a value per tool, a float per identity, as buckets are): the least any
    design pays for finding a tool and a caller's state when the tables outgrow the
    CPU's caches. The scale budgets' verdicts say how much of decide()'s excess over
    the base this walk pays too."""
    names, who, pairs = _walk(tools, identities, length, seed)
    tool_get = {tool: object() for tool in names}.get
    state_get = {identity: float(i) for i, identity in enumerate(who)}.get

    def lookups(identity: str, tool: str, args: object) -> tuple[object, object]:
        return tool_get(tool), state_get(identity)

    return Case(key, name, lookups, Shape.PAIRS3, Feed.walk(pairs), ({},),
                _found, group="scale")  # fmt: skip


def _found(result: Any) -> str | None:
    return None if None not in result else f"a lookup missed: {result!r}"


def scale_rows(sizes: Sizes) -> list[Row]:
    t, n = sizes.tools, sizes.identities
    length = max(n, sizes.walk)
    shapes = [
        (SCALE_BASE, SCALE_FLOOR_BASE, "10 tools × 1 identity", 10, 1, 1),
        (SCALE_TOOLS, SCALE_FLOOR_TOOLS, f"{t:,} tools × 1 identity", t, 1, 2),
        (SCALE_IDENTITIES, SCALE_FLOOR_IDENTITIES, f"10 tools × {n:,} identities", 10, n, 3),
        (SCALE_BOTH, SCALE_FLOOR_BOTH, f"{t:,} tools × {n:,} identities", t, n, 4),
    ]
    rows: list[Row] = []
    for key, floor_key, what, tools, identities, seed in shapes:
        base = " (scale base)" if key == SCALE_BASE else ""
        rows.append(_scale_case(key, f"decide: {what}{base}", tools=tools,
                                identities=identities, length=length, seed=seed))  # fmt: skip
        rows.append(_scale_floor(floor_key, f"floor: two dict.get on the walk of {what}",
                                 tools=tools, identities=identities, length=length,
                                 seed=seed))  # fmt: skip
    rows.append(_scale_case(SCALE_BOTH_WARM,
                            f"decide: {t:,} tools × {n:,} identities, 100 of each called",
                            tools=t, identities=n, length=length, seed=5, warm=100))  # fmt: skip
    return rows
