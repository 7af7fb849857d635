"""Audit events, shadow mode for the whole engine, and live reload of a watched file."""

from __future__ import annotations

import enum
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FakeClock, policy
from policylayer_core import Effect, PolicyEngine, PolicyError
from policylayer_core.audit import (
    AUDIT_TEXT_LIMIT,
    AuditEvent,
    AuditOptions,
    LoggingSink,
    MemorySink,
    MultiSink,
)

DOC = policy(
    {
        "open": {},
        "gated": {"action": "approve"},
        "limited": {"limits": [{"window": "hour", "max": 1}]},
        "login": {},
    },
    hide=["secret"],
)


def audited(sink: Any, **options: Any) -> PolicyEngine:
    return PolicyEngine(
        DOC, audit=sink, clock=FakeClock(), wall_clock=lambda: 1_700_000_000.123456, **options
    )


def decisions(sink: MemorySink) -> list[AuditEvent]:
    return [e for e in sink.events if e.kind == "decision"]


def test_an_event_for_every_effect() -> None:
    sink = MemorySink()
    engine = audited(sink)
    calls = [
        ("open", {"b": 1, "a": 2}),
        ("secret", {}),
        ("gated", None),
        ("limited", {}),
        ("limited", {}),
    ]
    results = [engine.decide("alice", tool, args, session="s1") for tool, args in calls]
    engine.auditor.flush()  # type: ignore[union-attr]
    events = decisions(sink)
    assert [e.effect for e in events] == [
        "allow",
        "deny",
        "approval_required",
        "allow",
        "rate_limited",
    ]
    first = events[0]
    assert first.time == "2023-11-14T22:13:20.123Z"
    assert (first.identity, first.session, first.tool) == ("alice", "s1", "open")
    assert first.arg_keys == ("a", "b") and first.args is None
    assert first.policy_hash == engine.policy.digest and len(first.event_id) == 32
    assert first.rule == "/tools/open" and first.allowed and first.enforced
    assert events[4].retry_after == results[4].retry_after and events[4].reason == results[4].reason
    assert len({e.event_id for e in events}) == 5


def test_a_flush_delivers_what_was_queued_when_it_began() -> None:
    # Decisions made while a flush runs (here by the sink itself, as a busy server's
    # other threads would) wait for the next flush: draining "while anything is
    # queued" would never end under a steady stream of calls, and deliver nothing.
    class Busy(MemorySink):
        def emit(self, event: AuditEvent) -> None:
            super().emit(event)
            if event.identity == "alice":
                engine.decide("bob", "open", {})

    sink = Busy()
    # 200 events: more than one chunk of 128, fewer than the 256 that wake the thread,
    # which sleeps for the hour: only the test flushes.
    engine = audited(sink, audit_options=AuditOptions(flush_interval=3600))
    for _ in range(200):
        engine.decide("alice", "open", {})
    auditor = engine.auditor
    assert auditor is not None
    auditor.flush()
    assert [e.identity for e in decisions(sink)] == ["alice"] * 200
    auditor.flush()
    assert [e.identity for e in decisions(sink)][200:] == ["bob"] * 200


def test_argument_values_are_recorded_only_when_opted_in_and_redacted() -> None:
    sink = MemorySink()
    options = AuditOptions(record_args_for=frozenset({"login"}))
    engine = audited(sink, audit_options=options)
    engine.decide("a", "login", {"user": "bob", "Password": "hunter2", "nested": [{"token": "t"}]})
    engine.decide("a", "open", {"secret": "s3"})
    engine.auditor.flush()  # type: ignore[union-attr]
    login, other = decisions(sink)
    assert login.args == {
        "user": "bob",
        "Password": "[REDACTED]",
        "nested": [{"token": "[REDACTED]"}],
    }
    assert other.args is None and other.arg_keys == ("secret",)
    assert "s3" not in other.to_json()


def test_a_failing_sink_never_changes_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def emit(self, event: AuditEvent) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            raise OSError("still full")

    engine = audited(Broken())
    plain = PolicyEngine(DOC, clock=FakeClock())
    for tool in ["open", "secret", "gated"]:
        assert engine.decide("a", tool) == plain.decide("a", tool)
    engine.close()
    assert engine.auditor is not None and engine.auditor.failures >= 3
    assert "disk full" in caplog.text


def test_a_slow_sink_does_not_delay_decisions_and_overflow_is_counted() -> None:
    release = threading.Event()

    class Slow(MemorySink):
        def emit(self, event: AuditEvent) -> None:
            release.wait(5)
            super().emit(event)

    sink = Slow()
    engine = audited(sink, audit_options=AuditOptions(queue_size=10, flush_interval=0.001))
    for _ in range(100):  # would take 500 s if decide() waited for the sink
        assert engine.decide("a", "open").effect is Effect.ALLOW
    assert engine.auditor is not None and engine.auditor.dropped >= 80
    release.set()
    engine.close()
    assert 1 <= len(sink.events) <= 20


def test_multi_and_logging_sinks(caplog: pytest.LogCaptureFixture) -> None:
    memory = MemorySink()
    caplog.set_level(logging.INFO, logger="policylayer_core.audit")
    engine = audited(MultiSink(memory, LoggingSink()))
    engine.decide("a", "open")
    engine.close()
    assert len(memory.events) == 1
    logged = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "policylayer_core.audit"
    ]
    assert logged[0]["tool"] == "open" and logged[0]["effect"] == "allow"


def test_bundle_events_name_the_policy() -> None:
    sub = {"version": "1", "default": "allow"}
    doc = {"version": "1", "policies": {"ops/prod": sub}, "grants": {"*": "ops/prod"}}
    sink = MemorySink()
    engine = PolicyEngine(doc, audit=sink)
    engine.decide("a", "t")
    engine.close()
    assert decisions(sink)[0].policy == "ops/prod"


def test_engine_wide_shadow_mode_lets_everything_through_and_records_it() -> None:
    sink = MemorySink()
    engine = audited(sink, mode="shadow")
    d = engine.decide("a", "secret")
    assert (d.effect, d.allowed, d.enforced) == (Effect.DENY, True, False)
    assert engine.decide("a", 5).allowed  # type: ignore[arg-type]
    engine.close()
    assert decisions(sink)[0].enforced is False and decisions(sink)[0].effect == "deny"
    with pytest.raises(ValueError, match="mode must be"):
        PolicyEngine(DOC, mode="loud")  # type: ignore[arg-type]


# -- reload events and the watched file ---------------------------------------------------


def test_reload_records_old_and_new_hashes_and_failures() -> None:
    sink = MemorySink()
    engine = audited(sink)
    old = engine.policy.digest
    engine.reload(policy({"x": {}}))
    with pytest.raises(PolicyError):
        engine.reload({"version": "1", "default": "sometimes"})
    engine.close()
    reload, failed = [e for e in sink.events if e.kind != "decision"]
    assert (reload.kind, reload.old_hash, reload.policy_hash) == (
        "reload",
        old,
        engine.policy.digest,
    )
    assert failed.kind == "reload_failed" and failed.policy_hash == engine.policy.digest
    assert any("/default" in issue for issue in failed.issues)


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc), "utf-8")


def test_a_watched_file_reloads_after_the_poll_interval(tmp_path: Path) -> None:
    file, clock, sink = tmp_path / "policy.json", FakeClock(), MemorySink()
    write(file, policy({"a": {}}))
    engine = PolicyEngine.from_file(file, watch=True, watch_interval=5.0, clock=clock, audit=sink)
    assert engine.decide("i", "b").effect is Effect.DENY
    write(file, policy({"b": {}}))
    clock.advance(4.9)
    assert engine.decide("i", "b").effect is Effect.DENY  # not polled yet
    clock.advance(0.2)
    assert engine.decide("i", "b").effect is Effect.ALLOW  # this call polled and reloaded
    engine.close()
    assert [e.kind for e in sink.events if e.kind != "decision"] == ["reload"]


def test_a_broken_edit_keeps_the_last_good_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file, clock, sink = tmp_path / "policy.json", FakeClock(), MemorySink()
    write(file, policy({"a": {}}))
    engine = PolicyEngine.from_file(file, watch=True, watch_interval=1.0, clock=clock, audit=sink)
    file.write_text('{"version": "1", "default": "deny", "tools": {"a": {"deny-if": []}}}', "utf-8")
    assert engine.poll() is False
    assert engine.decide("i", "a").effect is Effect.ALLOW
    assert "deny-if" in caplog.text and "policy.json:1:" in caplog.text
    assert engine.poll() is False  # the same broken content is reported once
    write(file, policy({"c": {}}))
    assert engine.poll() is True
    assert engine.decide("i", "c").effect is Effect.ALLOW
    engine.close()
    kinds = [e.kind for e in sink.events if e.kind != "decision"]
    assert kinds == ["reload_failed", "reload"]


def test_a_touch_without_change_does_not_reload(tmp_path: Path) -> None:
    file = tmp_path / "policy.json"
    write(file, policy({"a": {}}))
    engine = PolicyEngine.from_file(file, watch=True, watch_interval=0.0, clock=FakeClock())
    file.write_text(file.read_text("utf-8"), "utf-8")
    assert engine.poll() is False
    file.unlink()
    assert engine.poll() is False  # a missing file (mid-replace) is tried again later
    assert engine.decide("i", "a").effect is Effect.ALLOW


def test_reload_keeps_buckets_of_unchanged_counters_through_the_watch(tmp_path: Path) -> None:
    file, clock = tmp_path / "policy.json", FakeClock()
    limited = {"limits": [{"counter": "w", "window": "hour", "max": 1}]}
    write(file, policy({"a": limited}))
    engine = PolicyEngine.from_file(file, watch=True, watch_interval=1.0, clock=clock)
    assert engine.decide("i", "a").effect is Effect.ALLOW
    write(file, policy({"a": limited, "b": {}}))
    clock.advance(1.0)
    assert engine.decide("i", "b").effect is Effect.ALLOW  # reloaded
    assert engine.decide("i", "a").effect is Effect.RATE_LIMITED  # the bucket kept its state


@settings(max_examples=500, deadline=None)
@given(
    moment=st.one_of(
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
        st.integers(0, 4_000_000_000).flatmap(
            lambda s: st.sampled_from([0.0, 0.0005, 0.9995, 0.999999, 0.9999995]).map(
                lambda f: s + f
            )
        ),
    )
)
def test_event_times_are_what_datetime_writes(moment: float) -> None:
    """The audit thread caches the seconds part of its timestamps; the result must be
    exactly datetime's (microseconds rounded half to even, then cut to milliseconds)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from policylayer_core._audit_queue import _iso  # noqa: PLC0415

    stamp = datetime.fromtimestamp(moment, UTC)
    expected = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    assert _iso(moment) == expected
    assert _iso(moment) == expected  # from the cache too


# -- recording judges values by their data, and never raises into a decision ---------------


class Sly(dict[str, Any]):
    """A dict whose every way of reading raises: only its storage can be trusted."""

    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")

    def keys(self) -> Any:
        raise RuntimeError("no keys")

    def items(self) -> Any:
        raise RuntimeError("no items")

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no lookup")


class LoudKey(str):
    """A key whose string methods raise (its hash and equality are a str's)."""

    def lower(self) -> str:  # type: ignore[override]
        raise RuntimeError("no lower")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


@pytest.mark.parametrize("record_args", [False, True])
def test_recording_never_raises_into_the_decision_path(record_args: bool) -> None:
    # Before: tuple(args) ran the subclass's __iter__, and redact its .items() and the
    # key's .lower(), inside decide(); str() and repr() of keys and identities ran on
    # the audit thread, where an exception stopped delivery.
    sink = MemorySink()
    engine = audited(sink, audit_options=AuditOptions(record_args=record_args))
    plain = PolicyEngine(DOC, clock=FakeClock())
    calls: list[tuple[Any, Any]] = [
        ("open", Sly(b=1, a=2)),
        ("open", {LoudKey("Password"): "hunter2", LoudKey("x"): 1}),
        ("gated", Sly(a=1)),
    ]
    for tool, args in calls:
        assert engine.decide("alice", tool, args) == plain.decide("alice", tool, args)
    assert engine.decide(Unprintable(), "open").effect is Effect.DENY  # type: ignore[arg-type]
    engine.close()
    assert engine.auditor is not None and engine.auditor.failures == 0
    events = decisions(sink)
    assert [e.arg_keys for e in events] == [("a", "b"), ("Password", "x"), ("a",), ()]
    assert events[3].identity == "[not a string: Unprintable]"
    if record_args:
        assert events[0].args == {"b": 1, "a": 2}
        assert events[1].args == {"Password": "[REDACTED]", "x": 1}
    for event in events:
        json.loads(event.to_json())


def test_recorded_arguments_are_judged_by_their_data() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    class Items(tuple[Any, ...]):
        def __iter__(self) -> Any:
            raise RuntimeError("no iteration")

    class Lying(list[Any]):
        def __iter__(self) -> Any:
            return iter(["not", "what", "it", "holds"])

    looped: list[Any] = []
    looped.append(looped)
    sink = MemorySink()
    engine = audited(sink, audit_options=AuditOptions(record_args=True))
    args = {
        "level": Level.HIGH,
        "name": Name("bob"),
        "set": {1, 2},
        "object": Unprintable(),
        "items": Items((1, Name("x"))),
        "lying": Lying([1, 2]),
        "huge": 10**5000,
        "text": "t" * 10_000_000,
        "looped": looped,
        "nested": Sly(token="secret", ok=True),
        "keys": {1: "one", None: "none", (1, 2): "pair"},
    }
    engine.decide("alice", "open", args)
    engine.decide("alice", "open", {"wide": [0] * 20_000, "after": {"a": 1}})
    many = {f"k{i:07d}": i for i in range(200_000)}
    engine.decide("alice", "open", many)
    engine.close()
    event, wide, keys = decisions(sink)
    recorded = event.args
    assert recorded is not None
    assert type(recorded["level"]) is int and recorded["level"] == 3
    assert type(recorded["name"]) is str and recorded["name"] == "bob"
    assert recorded["set"] == "[not JSON: set]" and recorded["object"] == "[not JSON: Unprintable]"
    assert recorded["items"] == [1, "x"] and recorded["lying"] == [1, 2]
    assert recorded["huge"] == "[an integer of 16,610 bits]"
    assert recorded["text"] == "t" * AUDIT_TEXT_LIMIT + "… [9,995,904 more characters]"
    assert recorded["nested"] == {"token": "[REDACTED]", "ok": True}
    assert recorded["keys"] == {1: "one", None: "none", "[not JSON: tuple]": "pair"}
    inner = recorded["looped"]  # the arguments are level 0, this list level 1
    for _ in range(62):
        inner = inner[0]
    assert inner == ["[TOO DEEP]"]  # level 64
    line = event.to_json()
    assert len(line) < 3 * AUDIT_TEXT_LIMIT and json.loads(line)["args"]["level"] == 3
    # 10,000 values in all: the arguments, the list, 9,998 of its items; the rest counted.
    assert wide.args == {
        "wide": [0] * 9_998 + ["[TRUNCATED: 10,002 more items]"],
        "[TRUNCATED]": "1 more members",
    }
    assert keys.args is not None and len(keys.args) == 10_000
    assert keys.args["[TRUNCATED]"] == "190,001 more members"
    assert len(keys.arg_keys) == 1_001 and keys.arg_keys[:2] == ("k0000000", "k0000001")
    assert keys.arg_keys[-1] == "[TRUNCATED: 199,000 more keys]"
    assert len(keys.to_json()) < 400_000


def test_a_failure_while_recording_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Panic(BaseException):
        pass

    def broken_clock() -> float:
        raise Panic("the wall clock broke")

    sink = MemorySink()
    engine = PolicyEngine(DOC, audit=sink, clock=FakeClock(), wall_clock=broken_clock)
    plain = PolicyEngine(DOC, clock=FakeClock())
    for tool in ["open", "secret", "gated", "open"]:
        assert engine.decide("a", tool) == plain.decide("a", tool)
    engine.close()
    assert engine.auditor is not None and engine.auditor.failures == 4
    assert caplog.text.count("recording a decision for the audit log failed") == 1
    assert sink.events == []


def test_an_event_that_cannot_be_built_is_counted_and_the_rest_delivered() -> None:
    moments: list[Any] = ["not a time", 1_700_000_000.0]
    sink = MemorySink()
    engine = PolicyEngine(DOC, audit=sink, clock=FakeClock(), wall_clock=lambda: moments.pop(0))
    engine.decide("a", "open")
    engine.decide("b", "open")
    engine.close()
    assert engine.auditor is not None and engine.auditor.failures == 1
    assert [e.identity for e in decisions(sink)] == ["b"]
