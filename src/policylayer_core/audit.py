"""Audit events and the sinks that receive them.

Every decision (and every reload) becomes an `AuditEvent`: who asked, for which tool,
what was decided, by which rule, under which version of the policy. Argument *values*
are never recorded unless the operator opts in (`AuditOptions`), and then with the
configured keys redacted; by default only the sorted top-level argument keys are.

Sinks implement `AuditSink` (`emit`, `close`). The engine never calls a sink on the
decision path: it queues a few references and a background thread builds the events and
hands them to the sink (see `_audit_queue.py`), so a slow or failing sink can neither
delay nor change a decision. Shipped sinks: `JsonlSink` (append-only file with batching
and rotation, in `audit_jsonl.py`), `LoggingSink`, `MemorySink` (for tests) and
`MultiSink`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_REDACT",
    "AuditEvent",
    "AuditOptions",
    "AuditSink",
    "LoggingSink",
    "MemorySink",
    "MultiSink",
    "redact",
]

DEFAULT_REDACT = frozenset(
    {"password", "passwd", "secret", "token", "api_key", "apikey", "authorization"}
)
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record.

    `kind` is "decision", "reload" or "reload_failed". For decisions every field but
    `old_hash`/`issues` is set; `args` is None unless argument values were opted in.
    `time` is UTC, ISO 8601 with milliseconds (`2026-11-23T09:58:01.123Z`).
    """

    kind: str
    time: str
    event_id: str
    policy_hash: str
    identity: str | None = None
    session: str | None = None
    tool: str | None = None
    effect: str | None = None
    allowed: bool | None = None
    enforced: bool | None = None
    rule: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    policy: str | None = None
    arg_keys: tuple[str, ...] = ()
    args: Mapping[str, Any] | None = None
    old_hash: str | None = None
    issues: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, leaving out fields that do not apply."""
        # Field by field rather than dataclasses.asdict, which deep-copies the arguments:
        # this runs once per decision on the audit thread.
        data: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if type(value) is tuple:  # arg_keys, issues: left out when empty
                if not value:
                    continue
                value = list(value)
            data[name] = value
        return data

    def to_json(self) -> str:
        """One line of JSON (non-JSON argument values are written with `repr`)."""
        return _ENCODER.encode(self.to_dict())


_FIELDS = tuple(f.name for f in fields(AuditEvent))
# One encoder for every event: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What of a call's arguments the audit log may keep.

    By default only the sorted top-level keys. `record_args=True` records argument
    values for every tool; `record_args_for` for the named tools only. Keys named in
    `redact` (compared case-insensitively, at any depth) are replaced by "[REDACTED]".
    `queue_size` bounds the events waiting for the sink; past it new events are dropped
    and counted, never waited for. `flush_interval` is how often (seconds) the
    background thread hands queued events to the sink at the latest.
    """

    record_args: bool = False
    record_args_for: frozenset[str] = frozenset()
    redact: frozenset[str] = DEFAULT_REDACT
    queue_size: int = 65_536
    flush_interval: float = 0.25

    def records_args(self, tool: str) -> bool:
        """True when argument values of calls to `tool` are kept."""
        return self.record_args or tool in self.record_args_for


def redact(value: Any, keys: frozenset[str], *, _depth: int = 0) -> Any:
    """A copy of `value` with the values of `keys` (any depth, any case) replaced."""
    if _depth > 64:
        return "[TOO DEEP]"
    lowered = {k.lower() for k in keys}
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and k.lower() in lowered
            else redact(v, keys, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, keys, _depth=_depth + 1) for v in value]
    return value


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go. Called from one background thread, never from decide()."""

    def emit(self, event: AuditEvent) -> None:
        """Record one event (may buffer)."""
        ...

    def close(self) -> None:
        """Write out anything buffered and release resources."""
        ...


class MemorySink:
    """The last `maxlen` events in memory, for tests and debugging."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: deque[AuditEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        with self._lock:
            self._events.append(event)

    def close(self) -> None:
        """Nothing to release."""

    @property
    def events(self) -> list[AuditEvent]:
        """The events held, oldest first."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget every event held."""
        with self._lock:
            self._events.clear()


class LoggingSink:
    """Each event as one JSON line through the standard `logging` module."""

    def __init__(
        self, logger: logging.Logger | str = "policylayer_core.audit", level: int = logging.INFO
    ) -> None:
        self._logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._level = level

    def emit(self, event: AuditEvent) -> None:
        self._logger.log(self._level, event.to_json())

    def close(self) -> None:
        """Nothing to release: handlers belong to the logging configuration."""


class MultiSink:
    """Several sinks at once; one that fails does not stop the others.

    The first error is raised after every sink had its turn, so it is still counted.
    """

    def __init__(self, *sinks: AuditSink | Iterable[AuditSink]) -> None:
        flat: list[AuditSink] = []
        for sink in sinks:
            flat.extend([sink] if isinstance(sink, AuditSink) else sink)
        self.sinks = flat

    def emit(self, event: AuditEvent) -> None:
        self._each("emit", event)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: Any) -> None:
        failure: BaseException | None = None
        for sink in self.sinks:
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # the others still get the event
                failure = failure or exc
        if failure is not None:
            raise failure
