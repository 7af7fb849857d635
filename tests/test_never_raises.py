"""decide(), explain() and visible_tools() never raise: every failure is a denial.

What a caller sends (names that claim a class they do not have), what the engine's own
parts raise (a BaseException from a compiled extension, a failing log handler), and what
an audited engine does with both: one decision, one event, under the policy that decided.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rpds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FakeClock, policy
from policylayer_core import Decision, Effect, PolicyEngine
from policylayer_core.audit import AUDIT_TEXT_LIMIT, AuditOptions, MemorySink

ALLOW, DENY = Effect.ALLOW, Effect.DENY


class Impostor:
    """Claims to be a `str` through a `__class__` property, equals everything, and has a
    string's hash: `isinstance(x, str)` believes it, `str.__str__(x)` raises."""

    __class__ = property(lambda self: str)  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("t")


class Panic(BaseException):
    """Stands for a compiled extension's panic (pyo3's PanicException derives from
    BaseException, not Exception)."""


class RaisingStore:
    """A rate-limit store with a bug: it raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def take(self, charges: Any) -> Any:
        raise self.error

    check = take
    refund = take


class _Key:
    """Two of these share a hash and cannot be compared: rpds panics (a real
    `pyo3_runtime.PanicException`) when it has to compare them."""

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise ValueError("cannot compare")


class RpdsStore:
    """A store that keeps its buckets in an rpds map, and meets rpds' panic on a key it
    cannot compare: the real BaseException a compiled extension raises."""

    def take(self, charges: Any) -> Any:
        return rpds.HashTrieMap({_Key(): 1}).get(_Key())

    check = take
    refund = take


LIMITED = policy({"t": {"limits": [{"window": "minute", "max": 5}]}, "open": {}})


def limited_engine(store: Any, **options: Any) -> PolicyEngine:
    return PolicyEngine(LIMITED, store=store, **options)


def denied_by_failure(d: Decision) -> bool:
    return (d.effect, d.rule, d.allowed) == (DENY, "", False) and "failed while deciding" in (
        d.reason
    )


# -- names that claim to be strings --------------------------------------------------------


def test_a_name_that_claims_to_be_a_str_is_denied_without_an_exception() -> None:
    # Before: _as_str believed isinstance, str.__str__ raised, and _failed, which reads the
    # tool name the same way, raised again out of decide().
    engine = PolicyEngine(policy({"t": {}}))
    for call in (
        {"identity": "i", "tool": Impostor()},
        {"identity": Impostor(), "tool": "t"},
        {"identity": "i", "tool": "t", "session": Impostor()},
    ):
        d = engine.decide(**call)
        assert (d.effect, d.rule, d.tool) == (DENY, "", "t" if type(call["tool"]) is str else "")
        assert "must be a string" in d.reason
        assert engine.explain(**call).decision == d
    assert engine.internal_failures == 0


def test_visible_tools_drops_names_that_claim_to_be_strings() -> None:
    # Before: the impostor was kept (isinstance) and looked up with its own __hash__ and
    # __eq__, which answered as the listed tool "t".
    engine = PolicyEngine(policy({"t": {}}))
    assert engine.visible_tools("i", [Impostor(), "t"]) == ["t"]
    assert engine.visible_tools(Impostor(), ["t"]) == []  # type: ignore[arg-type]

    class Name(str):
        pass

    named = Name("t")
    assert engine.visible_tools(Name("i"), [named])[0] is named  # kept as given


# -- failures inside the engine ------------------------------------------------------------


def test_a_base_exception_inside_a_program_denies_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemorySink()
    for engine in (
        limited_engine(RaisingStore(Panic("boom"))),
        limited_engine(RaisingStore(Panic("boom")), audit=sink),
    ):
        d = engine.decide("i", "t", {})
        assert denied_by_failure(d), d
        assert "(Panic)" in d.reason
        ex = engine.explain("i", "t", {})
        assert denied_by_failure(ex.decision) and ex.steps[-1].outcome == "engine failure: deny"
        assert engine.internal_failures == 2
        assert engine.decide("i", "open").effect is ALLOW  # the engine goes on
        engine.close()
    assert caplog.text.count("failed while deciding a call") == 2  # once per engine and type
    assert [e.effect for e in sink.events] == ["deny", "allow"]


def test_a_real_panic_from_a_compiled_extension_denies() -> None:
    engine = limited_engine(RpdsStore())
    d = engine.decide("i", "t", {})
    assert denied_by_failure(d), d
    assert "(PanicException)" in d.reason
    assert denied_by_failure(engine.explain("i", "t", {}).decision)


@pytest.mark.parametrize("error", [GeneratorExit(), MemoryError(), RecursionError()])
def test_every_other_failure_denies(error: BaseException) -> None:
    # A GeneratorExit cannot reach a plain function from a generator's close(): raised
    # here, it is a bug like any other.
    engine = limited_engine(RaisingStore(error))
    assert denied_by_failure(engine.decide("i", "t", {}))
    explained = engine.explain("i", "t", {}).decision
    # explain()'s general path takes any RecursionError for arguments too deep to walk.
    assert (explained.effect, explained.allowed) == (DENY, False)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_person_stopping_the_process_is_not_swallowed(stop: type[BaseException]) -> None:
    engine = limited_engine(RaisingStore(stop()))
    with pytest.raises(stop):
        engine.decide("i", "t", {})
    with pytest.raises(stop):
        engine.explain("i", "t", {})


def test_a_failure_while_reporting_a_failure_still_denies() -> None:
    """When even the denial cannot be made (here: the log handler raises a BaseException
    while the first failure is logged), decide() returns a denial made in advance."""

    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise Panic("the log is broken too")

    log = logging.getLogger("policylayer_core")
    handler = Exploding()
    log.addHandler(handler)
    try:
        for mode in (None, "shadow"):
            engine = limited_engine(RaisingStore(Panic("boom")), mode=mode)
            d = engine.decide("i", "t", {})
            assert (d.effect, d.rule, d.enforced) == (DENY, "", mode is None)
            assert "failed while deciding" in d.reason
            assert denied_by_failure(engine.explain("i", "t", {}).decision) is (mode is None)
    finally:
        log.removeHandler(handler)


def test_an_observed_decide_survives_its_clock_its_wall_clock_and_its_log_failing(
    tmp_path: Path,
) -> None:
    """Polling the file, recording the event and logging either failure all fail here,
    with BaseExceptions; the call is still decided, and nothing escapes."""

    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise Panic("the log is broken too")

    broken = False

    def clock() -> float:
        if broken:
            raise Panic("the clock broke")
        return 1000.0

    def wall_clock() -> float:
        raise Panic("the wall clock broke")

    file = tmp_path / "policy.json"
    file.write_text(json.dumps(LIMITED), "utf-8")
    engine = PolicyEngine.from_file(
        file,
        watch=True,
        watch_interval=0.0,
        clock=clock,
        audit=MemorySink(),
        wall_clock=wall_clock,
    )
    log = logging.getLogger("policylayer_core")
    handler = Exploding()
    log.addHandler(handler)
    try:
        broken = True
        assert engine.decide("i", "open").effect is ALLOW
        d = engine.decide("i", "t")  # its bucket reads the clock
        assert (d.effect, d.rule) == (DENY, "") and "failed while deciding" in d.reason
    finally:
        log.removeHandler(handler)
    assert engine.auditor is not None and engine.auditor.failures == 2


def test_visible_tools_shows_nothing_when_it_fails() -> None:
    def names() -> Iterator[str]:
        yield "open"
        raise Panic("the caller's list broke")

    engine = PolicyEngine(LIMITED)
    assert engine.visible_tools("i", names()) == []
    assert engine.internal_failures == 1


# -- an audited engine: one decision, one event, under the policy that decided ---------------


class Tool(enum.StrEnum):
    OPEN = "open"


def test_a_str_subclass_on_an_observed_engine_is_one_decision_and_one_event(
    tmp_path: Path,
) -> None:
    # Before: _odd_input called self.decide again, which on an audited or watched engine
    # is the observed decide: two events, two polls, for one call.
    file = tmp_path / "policy.json"
    file.write_text('{"version": "1", "default": "deny", "tools": {"open": {}}}', "utf-8")
    reads = 0
    clock = FakeClock()

    def counting() -> float:
        nonlocal reads
        reads += 1
        return clock()

    sink = MemorySink()
    engine = PolicyEngine.from_file(
        file, watch=True, watch_interval=5.0, clock=counting, audit=sink
    )
    before = reads
    d = engine.decide(Tool.OPEN, Tool.OPEN, session=Tool.OPEN)
    assert d.effect is ALLOW and type(d.tool) is str
    assert reads - before == 1  # the watch was asked once
    engine.close()
    events = [e for e in sink.events if e.kind == "decision"]
    assert len(events) == 1
    assert (events[0].identity, events[0].tool, events[0].session) == ("open", "open", "open")
    assert type(events[0].identity) is str


class ReloadedMidCall(PolicyEngine):
    """An engine on which a reload lands right after the first read of its state in a
    call: the moment a concurrent reload() could swap it."""

    armed: PolicyEngine | None = None

    @property  # type: ignore[override]
    def _state(self) -> Any:
        current = self.__dict__["_current"]
        if self.armed is not None:
            self.__dict__["_current"], self.armed = self.armed._state, None
        return current

    @_state.setter
    def _state(self, value: Any) -> None:
        self.__dict__["_current"] = value


def test_a_reload_during_an_observed_call_is_recorded_under_the_policy_that_decided() -> None:
    # Before: the observed decide read the state for the hash, then decide() read it
    # again, so the new policy's decision was recorded under the old policy's hash.
    allows, denies = policy({"t": {}}), policy({"u": {}})
    sink = MemorySink()
    engine = ReloadedMidCall(allows, audit=sink)
    old = engine.policy.digest
    engine.armed = PolicyEngine(denies)
    d = engine.decide("i", "t")
    assert engine.policy.digest != old  # the reload landed
    engine.close()
    (event,) = sink.events
    assert (event.effect, event.policy_hash) == (d.effect.value, old)
    assert d.effect is ALLOW  # decided by the policy it was recorded under


# -- any name, on every kind of engine -------------------------------------------------------


class Loud(str):
    """A real str subclass whose own methods all raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __getitem__(self, key: Any) -> Any:
        raise RuntimeError("no getitem")

    def lower(self) -> str:  # type: ignore[override]
        raise RuntimeError("no lower")


class SlyArgs(dict[str, Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")

    def keys(self) -> Any:
        raise RuntimeError("no keys")


def _names() -> st.SearchStrategy[Any]:
    plain = st.sampled_from(["open", "t", "u-1", "alice"]) | st.text(max_size=20)
    return (
        plain
        | plain.map(Loud)
        | st.just(Tool.OPEN)
        | st.builds(Impostor)
        | st.integers()
        | st.none()
        | st.sampled_from(["t" * 1025, "u-" + "x" * 5000, "\ud800"])
    )


BUNDLE = {
    "version": "1",
    "policies": {"p": LIMITED, "q": policy(default="allow")},
    "grants": {"alice": "p", "u-*": "q"},
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["plain", "audited", "bundle"]),
    identity=_names(),
    tool=_names(),
    session=st.none() | _names(),
    args=st.none() | st.just({"a": 1}) | st.builds(SlyArgs, st.just({"a": 1})),
)
def test_no_name_makes_anything_raise(
    kind: str, identity: Any, tool: Any, session: Any, args: Any
) -> None:
    sink = MemorySink()
    if kind == "plain":
        engine = PolicyEngine(LIMITED)
    elif kind == "audited":
        engine = PolicyEngine(LIMITED, audit=sink, audit_options=AuditOptions(record_args=True))
    else:
        engine = PolicyEngine(BUNDLE, audit=sink)
    d = engine.decide(identity, tool, args, session=session)
    assert isinstance(d, Decision) and len(d.reason) < 1000
    assert isinstance(engine.explain(identity, tool, args, session=session).decision, Decision)
    assert isinstance(engine.visible_tools(identity, [tool, "open"]), list)
    engine.close()
    assert engine.auditor is None or engine.auditor.failures == 0
    for event in sink.events:
        json.loads(event.to_json())
        for text in (event.identity, event.session, event.tool, event.reason):
            assert text is None or len(text) <= AUDIT_TEXT_LIMIT + 40
    if type(args) is not SlyArgs:  # a dict that hides its items is the argument checks'
        assert engine.internal_failures == 0


def test_a_reload_that_takes_effect_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """A refused reload is an ERROR line; one that took effect says so at INFO, with both
    digests, so the log shows which policy was in force from when."""
    engine = PolicyEngine.from_dict({"version": "1", "default": "deny"})
    old = engine.policy.digest
    with caplog.at_level(logging.INFO, logger="policylayer_core"):
        engine.reload({"version": "1", "default": "allow"})
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert infos[0].getMessage() == (
        f"policy reloaded from <dict>: {old} -> {engine.policy.digest}"
    )
