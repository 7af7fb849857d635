"""The pytest plugin: `*.policytest.json` files become tests (see docs/testing.md).

Installed through the `pytest11` entry point under the name `policylayer`, so it is loaded in
every pytest run of an environment that has policylayer_core; `-p no:policylayer` turns it
off. It does nothing until a project opts in by naming a file `*.policytest.json` where pytest
collects (its `testpaths`, or a path given on the command line): each case of such a file
becomes an item with the id `path/to/file.policytest.json::case name`, and a failure shows
the expected and actual decisions and the explain trace, as `policylayer test` prints them.

For hand-written tests it offers the fixtures `policy_clock` (a `VirtualClock`) and
`policy_engine_factory` (builds engines on that clock), and `assert_decision`.

Only pytest and the standard library are imported when pytest loads the plugin; the engine is
imported when a case file is collected or a fixture is used, so other projects' test runs do
not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from policylayer_core.decision import Decision, Effect
    from policylayer_core.engine import PolicyEngine
    from policylayer_core.policytest import Case, Failure, VirtualClock

__all__ = [
    "PolicyCaseError",
    "PolicyCaseItem",
    "PolicyTestFile",
    "assert_decision",
    "policy_clock",
    "policy_engine_factory",
]

SUFFIX = ".policytest.json"  # policytest.SUFFIX, repeated so that loading stays cheap

EngineFactory = Callable[..., "PolicyEngine"]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> PolicyTestFile | None:
    """Collect `*.policytest.json` files, and nothing else."""
    if file_path.name.endswith(SUFFIX):
        file: PolicyTestFile = PolicyTestFile.from_parent(parent, path=file_path)
        return file
    return None


class PolicyCaseError(AssertionError):
    """A case's decision was not the expected one; `failure` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.summary())
        self.failure = failure


class PolicyTestFile(pytest.File):
    """A case file: one item per case. A malformed file is a collection error."""

    def collect(self) -> Iterator[PolicyCaseItem]:
        from policylayer_core.errors import PolicyError  # noqa: PLC0415 - see the docstring
        from policylayer_core.loader import load_policy  # noqa: PLC0415
        from policylayer_core.policytest import CaseFileError, load_case_file  # noqa: PLC0415

        try:
            case_file = load_case_file(self.path)
            policy = load_policy(case_file.policy_path)
        except (CaseFileError, PolicyError) as error:
            raise self.CollectError(str(error)) from None
        for case in case_file.cases:
            yield PolicyCaseItem.from_parent(self, name=case.name, case=case, policy=policy)


class PolicyCaseItem(pytest.Item):
    """One case of a case file, run on a fresh engine with a virtual clock."""

    def __init__(self, *, case: Case, policy: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.policy = policy

    def runtest(self) -> None:
        from policylayer_core.policytest import run_case  # noqa: PLC0415

        result = run_case(self.case, self.policy)
        if result.failure is not None:
            raise PolicyCaseError(result.failure)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> Any:
        if isinstance(excinfo.value, PolicyCaseError):
            failure = excinfo.value.failure
            return f"{failure.summary()}\n{failure.format()}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.case.line - 1 if self.case.line is not None else None
        # Not the node id's own tail: pytest would rewrite the dots of a tail as "::".
        return self.path, line, f"{self.name} ({self.path.name})"


@pytest.fixture
def policy_clock() -> VirtualClock:
    """A clock for engines in tests: it starts at 0 and moves only by `advance(seconds)`."""
    from policylayer_core.policytest import VirtualClock  # noqa: PLC0415

    return VirtualClock()


@pytest.fixture
def policy_engine_factory(policy_clock: VirtualClock) -> EngineFactory:
    """`build(policy, **options)`: a `PolicyEngine` on `policy_clock` (unless `clock=` is given).

    `policy` is whatever `PolicyEngine` takes: a path, JSON text, a dict or a LoadedPolicy.
    """
    from policylayer_core.engine import PolicyEngine  # noqa: PLC0415

    def build(policy: Any, **options: Any) -> PolicyEngine:
        options.setdefault("clock", policy_clock)
        return PolicyEngine(policy, **options)

    return build


def assert_decision(
    engine: PolicyEngine,
    identity: str,
    tool: str,
    args: Any = None,
    *,
    effect: Effect | str,
    rule: str | None = None,
    reason_contains: str | None = None,
    retry_after: float | None = None,
    session: str | None = None,
    approved: bool = False,
) -> Decision:
    """Decide a call on `engine` and check it; AssertionError (with the explain trace) if not.

    See `policylayer_core.policytest.assert_decision`; returns the decision.
    """
    __tracebackhide__ = True
    from policylayer_core import policytest  # noqa: PLC0415

    return policytest.assert_decision(
        engine,
        identity,
        tool,
        args,
        effect=effect,
        rule=rule,
        reason_contains=reason_contains,
        retry_after=retry_after,
        session=session,
        approved=approved,
    )
