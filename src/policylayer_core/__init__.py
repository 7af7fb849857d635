"""policylayer_core: an embeddable policy engine for MCP tool calls.

    from policylayer_core import PolicyEngine

    engine = PolicyEngine.from_file("policy.json")
    decision = engine.decide("alice", "qflow_task_batch", {"action": "create"})
    if not decision.allowed:
        raise PermissionError(decision.reason)

See docs/ for the policy format and the API.

The public names are imported on first use (PEP 562): the pytest plugin, which pytest loads
through an entry point in every run of an environment that has this package, imports this
package first, and must not pay for the engine (pydantic, jsonschema) where no case file or
fixture is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policylayer_core.decision import Decision, Effect
    from policylayer_core.engine import Explanation, PolicyEngine
    from policylayer_core.errors import PolicyError, PolicyIssue
    from policylayer_core.loader import LoadedPolicy, load_policy
    from policylayer_core.program import Step
    from policylayer_core.ratelimit import MemoryStore, RateLimitStore

__all__ = [
    "Decision",
    "Effect",
    "Explanation",
    "LoadedPolicy",
    "MemoryStore",
    "PolicyEngine",
    "PolicyError",
    "PolicyIssue",
    "RateLimitStore",
    "Step",
    "load_policy",
]

__version__ = "0.1.0"

# Where each public name lives; held to __all__ by tests/test_public_api.py.
_HOMES = {
    "Decision": "decision",
    "Effect": "decision",
    "Explanation": "engine",
    "LoadedPolicy": "loader",
    "MemoryStore": "ratelimit",
    "PolicyEngine": "engine",
    "PolicyError": "errors",
    "PolicyIssue": "errors",
    "RateLimitStore": "ratelimit",
    "Step": "program",
    "load_policy": "loader",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'policylayer_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"policylayer_core.{home}"), name)
    globals()[name] = value  # later reads are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
