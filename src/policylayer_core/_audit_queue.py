"""Delivery of audit events off the decision path.

`record()` runs inside `decide()`: it appends one tuple of references to a deque (atomic
under the GIL) and returns. A daemon thread wakes every `flush_interval` seconds (or as
soon as a batch is waiting), builds the `AuditEvent`s, hands them to the sink and flushes
it. So a sink that is slow only lets the queue fill (past `queue_size`, new events are
dropped and counted: a decision never waits for the log), and a sink that raises is
counted and logged once per kind of error, never seen by the caller.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from policylayer_core.audit import AuditEvent, AuditOptions, AuditSink, _key, audit_text, redact
from policylayer_core.decision import Decision, logged_reason

__all__ = ["Auditor"]

_log = logging.getLogger("policylayer_core.audit")
_WAKE_AT = 256  # queued events that wake the thread before its interval is up
# Events built and emitted between two hand-overs of the GIL (about 1 ms of work).
_CHUNK = 128
MAX_ARG_KEYS = 1_000  # argument keys one event lists

Pending = tuple[float, Decision, Any, Any, tuple[Any, ...], Any, str]
# What recording lets through: a person stopping the process (see engine._STOP).
_STOP = (KeyboardInterrupt, SystemExit)


def _iso(moment: float, _last: list[Any] = [None, ""]) -> str:  # noqa: B006 - a one-entry cache
    """`2026-11-23T09:58:01.123Z` for a time.time() value.

    Events come many to a second, so the seconds part is cached (one entry; a race
    between threads can only cost a recomputation, never a wrong answer).
    """
    # As datetime.fromtimestamp does: microseconds rounded half to even, then carried.
    fraction, whole = math.modf(moment)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second = int(whole)
    millis = micros // 1000
    cached = _last
    if cached[0] != second:
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        cached[0], cached[1] = second, stamp
        return f"{stamp}{millis:03d}Z"
    return f"{cached[1]}{millis:03d}Z"


def _policy_name(rule: str) -> str | None:
    """The bundle policy named by a rule pointer (`/policies/NAME/...`), if any."""
    if not rule.startswith("/policies/"):
        return None
    token = rule[len("/policies/") :].split("/", 1)[0]
    return token.replace("~1", "/").replace("~0", "~")


def _arg_keys(keys: tuple[Any, ...]) -> tuple[str, ...]:
    """The sorted argument keys an event lists: each cut to AUDIT_TEXT_LIMIT characters,
    at most MAX_ARG_KEYS of them (the first in order, then how many more there were)."""
    names = [str(_key(key)) for key in keys]
    if len(names) <= MAX_ARG_KEYS:
        return tuple(sorted(names))
    kept = heapq.nsmallest(MAX_ARG_KEYS, names)
    return (*kept, f"[TRUNCATED: {len(names) - MAX_ARG_KEYS:,} more keys]")


class Auditor:
    """Queues what decide() saw and delivers it to a sink from one background thread."""

    def __init__(
        self,
        sink: AuditSink,
        options: AuditOptions | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.options = options or AuditOptions()
        self._wall = wall_clock
        self._queue: deque[Pending | AuditEvent] = deque()
        self._limit = self.options.queue_size
        self._opted_in = self.options.record_args or bool(self.options.record_args_for)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._logged: set[type[BaseException]] = set()
        # Event ids: a random prefix per auditor and a counter, unique like uuid4 but
        # without its cost on the audit thread for every event.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count()
        self.dropped = 0
        self.failures = 0
        self.delivered = 0

    # -- the decision path ------------------------------------------------------------

    def record(
        self, decision: Decision, identity: Any, session: Any, args: Any, digest: str
    ) -> None:
        """Queue one decision; O(1) (but for opted-in argument values), never blocks,
        never raises: a failure here is counted in `failures` and logged once per kind,
        and the decision it was recording stands."""
        try:
            queue = self._queue
            waiting = len(queue)
            if waiting >= self._limit:
                self.dropped += 1
                return
            values = None
            # The keys are copied now (the caller may change its dict after the call),
            # from the dict's storage: a subclass's own __iter__ or keys() may raise.
            is_object = True
            if type(args) is dict:
                keys: tuple[Any, ...] = tuple(args)
            elif issubclass(type(args), dict):
                keys = tuple(dict.keys(args))
            else:
                keys, is_object = (), False
            if is_object and self._opted_in and self.options.records_args(decision.tool):
                values = redact(args, self.options.redact)
            queue.append((self._wall(), decision, identity, session, keys, values, digest))
            if waiting >= _WAKE_AT:
                self._wake.set()
            elif self._thread is None:
                self._start()
        except _STOP:
            raise
        except BaseException as exc:
            self._failure(exc, "recording a decision for the audit log failed")

    def record_reload(self, *, old: str, new: str | None, issues: tuple[str, ...] = ()) -> None:
        """Queue a reload (new is the new digest) or a failed reload (new is None)."""
        kind = "reload" if new is not None else "reload_failed"
        event = AuditEvent(
            kind=kind,
            time=_iso(self._wall()),
            event_id=self._next_id(),
            policy_hash=new if new is not None else old,
            old_hash=old,
            issues=issues,
        )
        self._queue.append(event)  # rare, and worth keeping even when the queue is full
        if self._thread is None:
            self._start()

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"

    # -- the background thread ---------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="policylayer-audit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        interval = self.options.flush_interval
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Deliver the events queued when it is called, on the calling thread, and flush
        the sink (events queued meanwhile wait for the next flush)."""
        with self._drain_lock:
            queue = self._queue
            # A count taken first: draining "while queue" never ends while decisions
            # keep coming faster than events are built, and nothing would be delivered.
            left = len(queue)
            delivered = False
            while left > 0:
                if delivered:
                    # Hand the GIL to the decision path between chunks: a busy server
                    # then loses at most a chunk's worth of time per switch interval
                    # to its audit log, instead of half its CPU.
                    time.sleep(0)
                chunk = min(left, _CHUNK)
                left -= chunk
                events = []
                for _ in range(chunk):
                    item = queue.popleft()
                    if isinstance(item, AuditEvent):  # a reload, built already
                        events.append(item)
                        continue
                    try:
                        events.append(self._event(item))
                    except _STOP:
                        raise
                    except BaseException as exc:  # the thread must go on delivering
                        self._failure(exc, "building an audit event failed")
                self._emit(events)
                delivered = True
            if delivered:
                self._flush_sink()

    def close(self) -> None:
        """Stop the thread, deliver what is queued, close the sink."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.flush()
        self._guard(self.sink.close)

    def _event(self, pending: Pending) -> AuditEvent:
        moment, decision, identity, session, keys, values, digest = pending
        return AuditEvent(
            kind="decision",
            time=_iso(moment),
            event_id=self._next_id(),
            policy_hash=digest,
            # Caller text is cut to AUDIT_TEXT_LIMIT characters, and what is not a string
            # is named by its class: its own repr is never called.
            identity=audit_text(identity),
            session=None if session is None else audit_text(session),
            tool=audit_text(decision.tool),
            effect=decision.effect.value,
            allowed=decision.allowed,
            enforced=decision.enforced,
            rule=decision.rule,
            # Never an argument value: a schema denial's reason quotes the caller's value
            # for the caller, and the log gets it worded without (decision.logged_reason).
            reason=audit_text(logged_reason(decision)),
            retry_after=decision.retry_after,
            policy=_policy_name(decision.rule),
            arg_keys=_arg_keys(keys),
            args=values,
        )

    def _emit(self, events: list[AuditEvent]) -> None:
        emit = self.sink.emit
        for event in events:
            if self._guard(emit, event):
                self.delivered += 1

    def _flush_sink(self) -> None:
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            self._guard(flush)

    def _guard(self, call: Callable[..., Any], *args: Any) -> bool:
        try:
            call(*args)
        except _STOP:
            raise
        except BaseException as exc:  # a sink's failure is counted and logged, never raised
            self._failure(exc, "an audit sink failed; decisions go on")
            return False
        return True

    def _failure(self, exc: BaseException, what: str) -> None:
        """Count a failure and log it once per kind (with its traceback)."""
        self.failures += 1
        if type(exc) not in self._logged:
            self._logged.add(type(exc))
            try:
                _log.error(what, exc_info=exc)
            except _STOP:
                raise
            except BaseException:  # a log that fails too has nothing left to tell
                pass
