"""The public surface is a contract: these names, exactly, and nothing private leaks."""

from __future__ import annotations

import inspect
from pathlib import Path

import policylayer_core
from policylayer_core import Decision, Effect, PolicyEngine, PolicyError, load_policy


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    exported = policylayer_core.__all__
    assert exported == sorted(exported)
    public = {
        name
        for name, value in vars(policylayer_core).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(exported) == public


def test_contract_names_from_the_architecture() -> None:
    for name in ("PolicyEngine", "Decision", "Effect", "PolicyError", "load_policy"):
        assert name in policylayer_core.__all__
    assert issubclass(PolicyError, ValueError)
    assert {e.value for e in Effect} == {"allow", "deny", "rate_limited", "approval_required"}
    for method in ("decide", "reload", "visible_tools", "explain", "from_file", "from_dict"):
        assert callable(getattr(PolicyEngine, method))
    params = inspect.signature(PolicyEngine.__init__).parameters
    assert params["clock"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["audit"].default is None
    decide = inspect.signature(PolicyEngine.decide).parameters
    assert list(decide)[:4] == ["self", "identity", "tool", "args"]
    assert decide["session"].kind is inspect.Parameter.KEYWORD_ONLY
    assert decide["approved"].default is False
    assert callable(load_policy)


def test_decision_fields_are_read_only() -> None:
    d = Decision(Effect.DENY, "t", "/default", "no")
    for field in ("effect", "allowed", "enforced", "tool", "rule", "reason", "retry_after"):
        getattr(d, field)
        try:
            setattr(d, field, None)
        except AttributeError:
            continue
        raise AssertionError(f"Decision.{field} could be assigned")
    assert not d.allowed and d.enforced and d.retry_after is None
    d.refund()  # a decision that took nothing refunds nothing, and does not fail


def test_package_is_typed() -> None:
    assert (inspect.getfile(policylayer_core)).endswith("__init__.py")
    assert (Path(policylayer_core.__file__).parent / "py.typed").exists()
