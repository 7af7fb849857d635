"""policylayer_core: an embeddable policy engine for MCP tool calls.

    from policylayer_core import PolicyEngine

    engine = PolicyEngine.from_file("policy.json")
    decision = engine.decide("alice", "qflow_task_batch", {"action": "create"})
    if not decision.allowed:
        raise PermissionError(decision.reason)

See docs/ for the policy format and the API.
"""

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
