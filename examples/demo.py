"""A short tour of policylayer_core: load the qflow policy and decide a handful of calls.

Run it with `python examples/demo.py` (after `pip install -e .`).
"""

from __future__ import annotations

from pathlib import Path

from policylayer_core import PolicyEngine

HERE = Path(__file__).parent
ROOT = {"projectRoot": "/srv/projects/demo"}

CALLS = [
    ("alice", "qflow_task_next", {}),
    ("alice", "qflow_task_delete", {"taskId": "T-1"}),
    ("alice", "qflow_memory", {"action": "flush"}),
    ("alice", "qflow_task_batch", {**ROOT, "action": "create", "tasks": [{"title": "Write docs"}]}),
    ("alice", "qflow_task_batch", {**ROOT, "action": "rewrite"}),
    (
        "alice",
        "qflow_task_batch",
        {**ROOT, "action": "create", "tasks": [{"title": "x", "priority": 99}]},
    ),
    ("alice", "qflow_task_batch", {"projectRoot": "/etc", "action": "create"}),
    (
        "alice",
        "qflow_task_batch",
        {**ROOT, "action": "create", "tasks": [{"title": f"t{i}"} for i in range(25)]},
    ),
    ("alice", "qflow_spec_apply", {"changeId": "C-7"}),
    ("alice", "qflow_workspace", {"action": "merge", "source": "a", "target": "b"}),
]


def show(identity: str, tool: str, args: dict[str, object], engine: PolicyEngine) -> None:
    d = engine.decide(identity, tool, args)
    print(f"{d.effect.value:<18} {tool:<20} {d.rule or '(root)':<38} {d.reason}")


def main() -> None:
    engine = PolicyEngine.from_file(HERE / "qflow-policy.json")
    print(f"policy {engine.policy.source} (digest {engine.policy.digest})\n")
    print(f"{'effect':<18} {'tool':<20} {'rule':<38} reason")
    for identity, tool, args in CALLS:
        show(identity, tool, args, engine)

    print("\nqflow_task_create is limited to 30 calls a minute per identity:")
    for _ in range(30):
        engine.decide("bob", "qflow_task_create", {"title": "t"})
    show("bob", "qflow_task_create", {"title": "one too many"}, engine)

    print("\nWhy was the large batch sent for approval? engine.explain() shows every step:")
    _, tool, args = CALLS[7]
    print(engine.explain("alice", tool, args))


if __name__ == "__main__":
    main()
