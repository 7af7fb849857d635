"""decide() with a JSONL audit sink on, next to the same calls without audit.

The engine queues each decision and a background thread writes the file, so these rows
include what the audit thread takes from the same core (the GIL): the real cost of
auditing every call. Under a benchmark's millions of calls a second the queue fills and
records are dropped (counted, never waited for); a server making thousands of calls a
second writes them all. The audit thread hands the GIL back to the decision path after
every chunk of events it builds, so a saturated decision path keeps most of the CPU.
After each slice the row's queued events are delivered (untimed), so the audit thread
is idle while the other rows are timed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import policies
from benchmarks.cases_engine import expect
from benchmarks.harness import Case, Feed, Shape
from benchmarks.suite import Row, Sizes
from policylayer_core import Effect, PolicyEngine
from policylayer_core.audit_jsonl import JsonlSink

__all__ = ["AUDIT_REALISTIC", "AUDIT_STATIC", "audit_rows"]

AUDIT_STATIC = "ours.audit_static"
AUDIT_REALISTIC = "ours.audit_realistic"


def audit_rows(sizes: Sizes) -> list[Row]:
    folder = Path(tempfile.mkdtemp(prefix="policylayer-bench-audit-"))
    static = PolicyEngine.from_dict(
        policies.static_policy(), audit=JsonlSink(folder / "static.jsonl")
    )
    realistic = PolicyEngine.from_dict(
        policies.realistic_policy(), audit=JsonlSink(folder / "realistic.jsonl")
    )
    who, args = policies.IDENTITY, dict[str, Any]()
    return [
        Case(AUDIT_STATIC, "decide: static allow, JSONL audit sink", static.decide,
             Shape.CALL3, Feed.const(who), ("qflow_task_get", args),
             expect(Effect.ALLOW, "/tools/qflow_task_get"), settle=_flush(static)),
        Case(AUDIT_REALISTIC, "decide: realistic qflow_task_batch, JSONL audit sink",
             realistic.decide, Shape.CALL3, Feed.const(who),
             ("qflow_task_batch", policies.BATCH_ARGS),
             expect(Effect.ALLOW, "/tools/qflow_task_batch"), settle=_flush(realistic)),
    ]  # fmt: skip


def _flush(engine: PolicyEngine) -> Callable[[], None]:
    auditor = engine.auditor
    assert auditor is not None
    return auditor.flush
