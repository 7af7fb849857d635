"""The policies and inputs the benchmark decides, all derived from examples/qflow-policy.json.

Limits keep the example's counters, windows, `max` and cost paths, with `burst` raised to
`BENCH_BURST` so that no bucket runs dry during a run: every timed call is ALLOWED and
takes its tokens from a bucket that is already stored and partly drained (the steady
state of an active caller), and the real `time.monotonic` clock drives the store, as in
production. A run makes a few million calls at most; at the example's slowest rate
(30 a minute, cost 3) that is far below the 10^9-token burst.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = [
    "BATCH_ARGS",
    "BATCH_SCHEMA",
    "BENCH_BURST",
    "IDENTITY",
    "one_limit_policy",
    "qflow_example",
    "realistic_policy",
    "scale_policy",
    "static_policy",
]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "qflow-policy.json"

BENCH_BURST = 1_000_000_000
IDENTITY = "alice"

# A qflow_task_batch call that every rule lets through: the schema matches, `require`
# holds, `deny_if` (action rewrite) and `approve_if` (more than 20 tasks) do not, and the
# `writes` limit costs 3 tokens (the length of args.tasks).
BATCH_ARGS: dict[str, Any] = {
    "action": "create",
    "projectRoot": "/srv/projects/qflow",
    "tasks": [
        {"title": "Write the parser", "priority": 3},
        {"title": "Test the parser"},
        {"title": "Ship it", "priority": 7},
    ],
}


def qflow_example() -> dict[str, Any]:
    """The example policy, as shipped."""
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return doc


BATCH_SCHEMA: dict[str, Any] = qflow_example()["tools"]["qflow_task_batch"]["schema"]


def _raise_bursts(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for limit in doc.get("all_tools", {}).get("limits", []):
        limit["burst"] = BENCH_BURST
    for entry in doc.get("tools", {}).values():
        for limit in entry.get("limits", []):
            limit["burst"] = BENCH_BURST
    return doc


def static_policy() -> dict[str, Any]:
    """The example without `all_tools` (whose limit applies to every tool, so no tool would
    be static), plus one `action: deny` tool. Static allow: qflow_task_get; action deny:
    qflow_task_purge; hidden: qflow_task_delete; default deny: any unlisted name."""
    doc = qflow_example()
    del doc["all_tools"]
    doc["tools"]["qflow_task_purge"] = {"action": "deny"}
    return _raise_bursts(doc)


def realistic_policy() -> dict[str, Any]:
    """The example as shipped but for the bursts: qflow_task_batch has a schema, require,
    deny_if, approve_if, the all_tools `calls` limit and its own `writes` limit whose cost
    is len(args.tasks)."""
    return _raise_bursts(qflow_example())


def one_limit_policy() -> dict[str, Any]:
    """One tool with the example's `writes` limit (30 a minute, per identity), no all_tools."""
    limit = {"counter": "writes", "window": "minute", "max": 30, "scope": "grant"}
    doc = {
        "version": "1",
        "default": "deny",
        "tools": {"qflow_task_create": {"limits": [limit]}},
    }
    return _raise_bursts(doc)


def scale_policy(tools: list[str]) -> dict[str, Any]:
    """`tools` plain entries under the example's all_tools `calls` limit (120 a minute, per
    identity): every call looks its tool up and charges the caller's own bucket."""
    doc = {
        "version": "1",
        "default": "deny",
        "all_tools": copy.deepcopy(qflow_example()["all_tools"]),
        "tools": {name: {} for name in tools},
    }
    return _raise_bursts(doc)
