"""JsonlSink: round trip, batching, append on reopen, rotation, durability under failures."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeClock, policy
from policylayer_core import PolicyEngine
from policylayer_core.audit import AuditEvent, AuditSink
from policylayer_core.audit_jsonl import JsonlSink


def event(n: int, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "kind": "decision",
        "time": "2026-11-23T09:58:01.123Z",
        "event_id": f"{n:032d}",
        "policy_hash": "sha256:abc",
        "identity": "alice",
        "tool": "open",
        "effect": "allow",
        "allowed": True,
        "enforced": True,
        "rule": "/tools/open",
        "reason": "allowed by /tools/open",
        "arg_keys": ("a", "b"),
    }
    values.update(fields)
    return AuditEvent(**values)


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def ids(path: Path) -> list[int]:
    return [int(record["event_id"]) for record in lines(path)]


def all_ids(path: Path, backups: int) -> list[int]:
    """Event numbers across the rotated files and the current one, oldest first."""
    found: list[int] = []
    for n in range(backups, 0, -1):
        found += ids(path.with_name(f"{path.name}.{n}"))
    return found + ids(path)


def test_events_round_trip_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    events = [
        event(1),
        event(2, args={"query": "北京 weather", "nested": [1, {"x": None}]}, session="s1"),
        event(3, effect="rate_limited", allowed=False, retry_after=1.5),
        AuditEvent(kind="reload", time="2026-11-23T09:58:02.000Z", event_id="r" * 32,
                   policy_hash="new", old_hash="old"),
        AuditEvent(kind="reload_failed", time="2026-11-23T09:58:03.000Z", event_id="f" * 32,
                   policy_hash="old", old_hash="old", issues=("line 1: bad", "line 2: worse")),
    ]  # fmt: skip
    sink = JsonlSink(path)
    assert isinstance(sink, AuditSink)
    assert sink.path == path
    for e in events:
        sink.emit(e)
    sink.close()
    raw = path.read_bytes()
    assert raw.count(b"\n") == len(events) and b"\r" not in raw
    assert "北京".encode() in raw  # UTF-8 as is, not \u escapes
    assert lines(path) == [e.to_dict() for e in events]


def test_nothing_is_written_before_a_full_batch_or_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, batch_size=4)
    for n in range(3):
        sink.emit(event(n))
    assert not path.exists()  # the file is opened on the first write
    sink.emit(event(3))
    assert ids(path) == [0, 1, 2, 3]
    sink.emit(event(4))
    assert ids(path) == [0, 1, 2, 3]
    sink.flush()
    assert ids(path) == [0, 1, 2, 3, 4]
    sink.flush()  # nothing buffered: nothing written twice
    assert ids(path) == [0, 1, 2, 3, 4]
    sink.close()


def test_close_then_reopen_appends_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = JsonlSink(path, batch_size=100)
    for n in range(5):
        first.emit(event(n))
    first.close()
    first.close()  # idempotent
    with JsonlSink(path, batch_size=3) as second:
        for n in range(5, 12):
            second.emit(event(n))
    assert ids(path) == list(range(12))
    assert len(path.read_text("utf-8").splitlines()) == 12


def test_emit_after_close_raises(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl")
    sink.emit(event(0))
    sink.close()
    with pytest.raises(ValueError, match="is closed"):
        sink.emit(event(1))
    sink.flush()  # harmless after close
    sink.close()
    assert ids(sink.path) == [0]


@pytest.mark.parametrize("options", [{"batch_size": 0}, {"max_bytes": 0}, {"backups": -1}])
def test_options_are_checked(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JsonlSink(tmp_path / "audit.jsonl", **options)


def line_size() -> int:
    return len(event(0).to_json().encode()) + 1


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_rotation_keeps_order_and_size_and_loses_nothing(tmp_path: Path, batch_size: int) -> None:
    path = tmp_path / "audit.jsonl"
    max_bytes = 10 * line_size()
    # Enough backups that none is discarded: every event must be found exactly once.
    with JsonlSink(path, batch_size=batch_size, max_bytes=max_bytes, backups=100) as sink:
        for n in range(300):
            sink.emit(event(n))
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 300 // 10
    assert all(f.stat().st_size <= max_bytes for f in files)
    assert all_ids(path, 100) == list(range(300))


def test_rotation_discards_only_beyond_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    max_bytes = 10 * line_size()
    with JsonlSink(path, batch_size=1, max_bytes=max_bytes, backups=3) as sink:
        for n in range(95):
            sink.emit(event(n))
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    # 10 events fill a file: 90 rotated away in 9 files, 3 of them kept, 5 in the current one.
    assert all_ids(path, 3) == list(range(60, 95))
    assert [len(ids(path.with_name(f"audit.jsonl.{n}"))) for n in (1, 2, 3)] == [10, 10, 10]


def test_an_oversized_batch_is_written_whole_to_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    max_bytes = 2 * line_size()
    with JsonlSink(path, batch_size=5, max_bytes=max_bytes, backups=5) as sink:
        sink.emit(event(0))
        sink.flush()
        for n in range(1, 6):
            sink.emit(event(n))  # the fifth writes 5 lines, more than max_bytes
        sink.emit(event(6))
    assert ids(path.with_name("audit.jsonl.2")) == [0]
    assert ids(path.with_name("audit.jsonl.1")) == [1, 2, 3, 4, 5]
    assert path.with_name("audit.jsonl.1").stat().st_size == 5 * line_size() > max_bytes
    assert ids(path) == [6]


def test_reopening_a_full_file_rotates_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path, batch_size=1, max_bytes=3 * line_size()) as sink:
        for n in range(3):
            sink.emit(event(n))
    with JsonlSink(path, batch_size=1, max_bytes=3 * line_size()) as sink:
        sink.emit(event(3))
    assert ids(path.with_name("audit.jsonl.1")) == [0, 1, 2]
    assert ids(path) == [3]


def test_backups_zero_deletes_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path, batch_size=1, max_bytes=4 * line_size(), backups=0) as sink:
        for n in range(10):
            sink.emit(event(n))
    assert [f.name for f in tmp_path.iterdir()] == ["audit.jsonl"]
    assert ids(path) == [8, 9]


def test_a_failed_write_keeps_the_events_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "audit.jsonl"
    sink = JsonlSink(path, batch_size=2)
    sink.emit(event(0))
    with pytest.raises(FileNotFoundError):
        sink.emit(event(1))  # a full batch: the write is tried and fails
    with pytest.raises(FileNotFoundError):
        sink.flush()
    sink.emit(event(2))  # one since the last attempt: buffered only
    path.parent.mkdir()
    sink.flush()
    assert ids(path) == [0, 1, 2]
    sink.close()
    assert ids(path) == [0, 1, 2] and sink.dropped == 0


def test_a_failed_close_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "audit.jsonl"
    sink = JsonlSink(path)
    sink.emit(event(0))
    with pytest.raises(FileNotFoundError):
        sink.close()
    with pytest.raises(ValueError):
        sink.emit(event(1))
    path.parent.mkdir()
    sink.close()
    assert ids(path) == [0]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="needs POSIX permissions that bind (root writes into read-only directories)",
)
def test_a_read_only_directory_fails_and_recovers(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        sink = JsonlSink(directory / "audit.jsonl", batch_size=1)
        with pytest.raises(PermissionError):
            sink.emit(event(0))
    finally:
        directory.chmod(0o700)
    sink.emit(event(1))
    sink.close()
    assert ids(sink.path) == [0, 1]


def test_a_partial_write_is_taken_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, batch_size=3)
    for n in range(3):
        sink.emit(event(n))
    before = path.read_bytes()
    real_write = os.write

    def disk_fills_up(fd: int, data: Any) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data)[: len(data) // 2 + 5])  # cuts a line short
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills_up)
    for n in range(3, 5):
        sink.emit(event(n))
    with pytest.raises(OSError, match="No space"):
        sink.emit(event(5))
    assert path.read_bytes() == before  # no half line, nothing to duplicate on the retry
    monkeypatch.undo()
    sink.close()
    assert ids(path) == list(range(6))


@pytest.mark.parametrize("failing", ["audit.jsonl", "audit.jsonl.1"])
def test_a_failed_rotation_is_repeated_without_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, batch_size=1, max_bytes=2 * line_size(), backups=3)
    for n in range(6):
        sink.emit(event(n))  # .2 = [0, 1], .1 = [2, 3], current = [4, 5]
    real_replace = os.replace

    def fail_on(src: Any, dst: Any) -> None:
        if Path(src).name == failing:  # the files before it in the chain did move
            raise OSError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on)
    with pytest.raises(OSError, match="Permission denied"):
        sink.emit(event(6))
    monkeypatch.undo()
    sink.emit(event(7))
    sink.close()
    assert all_ids(path, 3) == list(range(8))


def test_a_torn_last_line_does_not_swallow_the_next(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(event(0).to_json().encode() + b"\n" + b'{"kind":"deci')  # a crash mid-line
    with JsonlSink(path) as sink:
        sink.emit(event(1))
    good = path.read_text("utf-8").splitlines()
    assert good[1] == '{"kind":"deci'
    assert [int(json.loads(good[n])["event_id"]) for n in (0, 2)] == [0, 1]


def test_the_buffer_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "audit.jsonl"
    sink = JsonlSink(path, batch_size=2)
    failures = 0
    for n in range(25):
        try:
            sink.emit(event(n))
        except FileNotFoundError:
            failures += 1
    assert failures == 12  # retried once per batch, not once per event
    assert sink.dropped == 5  # 10 batches of 2 kept
    path.parent.mkdir()
    sink.close()
    assert ids(path) == list(range(5, 25))


def test_threads_emit_and_another_closes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, batch_size=7, max_bytes=50 * line_size(), backups=1000)

    def produce(base: int) -> None:
        for n in range(base, base + 500):
            sink.emit(event(n))

    workers = [threading.Thread(target=produce, args=(k * 500,)) for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    closer = threading.Thread(target=sink.close)
    closer.start()
    closer.join()
    found = all_ids(path, 1000)
    assert sorted(found) == list(range(2000))
    for k in range(4):  # each thread's events in the order it emitted them
        mine = [n for n in found if k * 500 <= n < (k + 1) * 500]
        assert mine == sorted(mine)


def test_the_engine_writes_decisions_through_the_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    engine = PolicyEngine(
        policy({"open": {}}),
        audit=JsonlSink(path),
        clock=FakeClock(),
        wall_clock=lambda: 1_700_000_000.0,
    )
    engine.decide("alice", "open", {"b": 1})
    engine.decide("alice", "closed", {})
    engine.close()
    records = lines(path)
    assert [(r["tool"], r["effect"]) for r in records] == [("open", "allow"), ("closed", "deny")]
    assert records[0]["arg_keys"] == ["b"] and records[0]["time"] == "2023-11-14T22:13:20.000Z"


def test_names_utf8_cannot_carry_are_still_written(tmp_path: Path) -> None:
    # Before: a lone surrogate in a tool name (or an identity, a session, an argument)
    # failed the UTF-8 encoding, so a caller could keep its calls out of the log.
    path = tmp_path / "audit.jsonl"
    engine = PolicyEngine(
        policy({"open": {}}, default="allow"),
        audit=JsonlSink(path),
        clock=FakeClock(),
    )
    engine.decide("m\ud800llory", "write\udfff", {"k\ud801": 1}, session="s\udc00")
    engine.decide("bøb", "open")
    engine.close()
    assert engine.auditor is not None and engine.auditor.failures == 0
    raw = path.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    first, second = (json.loads(line) for line in raw.splitlines())
    assert (first["identity"], first["tool"], first["session"]) == (
        "m\ud800llory",
        "write\udfff",
        "s\udc00",
    )
    assert first["arg_keys"] == ["k\ud801"] and second["tool"] == "open"
    assert '"identity":"bøb"' in raw  # only the line that needs it is escaped
