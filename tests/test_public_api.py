"""The public surface is a contract: these names, exactly, and nothing private leaks."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import policylayer_core
from policylayer_core import Decision, Effect, PolicyEngine, PolicyError, load_policy


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    exported = policylayer_core.__all__
    assert exported == sorted(exported)
    # The names are imported on first use: dir() lists them, getattr() loads them.
    public = {
        name
        for name in dir(policylayer_core)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(policylayer_core, name))
        and name not in {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    }
    assert set(exported) == public
    for name in exported:
        assert getattr(policylayer_core, name).__module__.startswith("policylayer_core.")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'decide'"):
        policylayer_core.decide  # noqa: B018 - the attribute read is the test


def test_loading_the_pytest_plugin_imports_nothing_of_the_engine() -> None:
    """The plugin is loaded in every pytest run of an environment that has the package."""
    code = (
        "import sys\n"
        "import policylayer_core.pytest_plugin\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'jsonschema', 'regex', 'cachetools'} or m in "
        "{'policylayer_core.engine', 'policylayer_core.loader', 'policylayer_core.decision'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


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
