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
from itertools import islice
from typing import Any, Protocol, runtime_checkable

from policylayer_core.decision import cut_caller_text, type_name

__all__ = [
    "AUDIT_TEXT_LIMIT",
    "DEFAULT_REDACT",
    "AuditEvent",
    "AuditOptions",
    "AuditSink",
    "LoggingSink",
    "MemorySink",
    "MultiSink",
    "audit_text",
    "redact",
]

DEFAULT_REDACT = frozenset(
    {"password", "passwd", "secret", "token", "api_key", "apikey", "authorization"}
)
REDACTED = "[REDACTED]"
TOO_DEEP = "[TOO DEEP]"
TRUNCATED = "[TRUNCATED]"
# The most characters of any text a caller sent that one field of an event keeps: the
# identity, session, tool and reason, argument keys, recorded argument strings. A 10 MB
# tool name must not become a 10 MB audit line.
AUDIT_TEXT_LIMIT = 4_096
_MAX_DEPTH = 64  # levels of recorded arguments
_MAX_VALUES = 10_000  # values of recorded arguments, one call
_MAX_INT_BITS = 14_000  # about 4,200 digits: json cannot write more than 4,300


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
        """One line of JSON (a value that is not JSON is written "[not JSON: TYPE]").

        Non-ASCII characters are written as they are, unless the line holds one that
        UTF-8 cannot carry (a lone surrogate, which a caller can put in any name): then
        the whole line is ASCII with `\\u` escapes, so the event can still be written.
        """
        data = self.to_dict()
        text = _ENCODER.encode(data)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return _ASCII_ENCODER.encode(data)
        return text


_FIELDS = tuple(f.name for f in fields(AuditEvent))
# One encoder for every event: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    # Events the engine builds hold JSON only (see `redact`); one built by hand may not,
    # and its values' own methods (repr) are not called either.
    default=lambda value: f"[not JSON: {type_name(value)}]",
)
_ASCII_ENCODER = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), default=_ENCODER.default
)


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


def redact(value: Any, keys: frozenset[str]) -> Any:
    """A JSON-ready copy of `value` with the values of `keys` (any depth, any case)
    replaced by "[REDACTED]".

    The copy is made from the value's data, never through its methods: dicts are read
    with `dict.items`, lists with `list.copy` and tuples with `tuple.__iter__` (so a
    subclass that redefines its iteration cannot raise or answer differently), and
    subclasses of `str`, `int` and `float` become the plain value they hold. Anything
    that is not JSON is written as "[not JSON: TYPE]", by its class's name. Strings and
    keys longer than `AUDIT_TEXT_LIMIT` characters are cut (see `cut_caller_text`);
    nesting past 64 levels is written "[TOO DEEP]", and once 10,000 values are copied
    the rest are counted, not read ("[TRUNCATED: 5 more items]" ending an array, a
    "[TRUNCATED]" member counting an object's), so the work is bounded even for a
    value that contains itself.
    """
    lowered = frozenset(key.lower() for key in keys)
    return _copy(value, lowered, 0, [_MAX_VALUES])


def audit_text(value: Any) -> str:
    """Text a caller sent (an identity, a session, a tool name) as an event records it:
    a string cut to `AUDIT_TEXT_LIMIT` characters, anything else "[not JSON: TYPE]" (or
    "[not a string: TYPE]")."""
    kind = type(value)
    if kind is str or issubclass(kind, str):
        return cut_caller_text(value, AUDIT_TEXT_LIMIT)
    return f"[not a string: {type_name(value)}]"


def _copy(value: Any, lowered: frozenset[str], depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        return TRUNCATED
    kind = type(value)
    if kind is str:
        return value if len(value) <= AUDIT_TEXT_LIMIT else cut_caller_text(value, AUDIT_TEXT_LIMIT)
    if value is None or kind is bool or kind is float:
        return value
    if kind is int:
        return _whole(value)
    if issubclass(kind, dict | list | tuple):
        if depth >= _MAX_DEPTH:
            return TOO_DEEP
        # Members are read only while the budget lasts (at most what it had left when
        # this container was reached), and the rest are counted, not read.
        room = max(budget[0], 0)
        if issubclass(kind, dict):
            size = dict.__len__(value)
            copied: dict[Any, Any] = {}
            read = 0
            for key, item in list(islice(dict.items(value), room)):
                if budget[0] <= 0:
                    break
                read += 1
                name = _key(key)
                if type(name) is str and name.lower() in lowered:
                    copied[name] = REDACTED
                else:
                    copied[name] = _copy(item, lowered, depth + 1, budget)
            if read < size:
                copied[TRUNCATED] = f"{size - read:,} more members"
            return copied
        head: list[Any] | tuple[Any, ...]
        if issubclass(kind, list):
            size, head = list.__len__(value), list.__getitem__(value, slice(0, room))
        else:
            size, head = tuple.__len__(value), tuple.__getitem__(value, slice(0, room))
        items = []
        for item in head:
            if budget[0] <= 0:
                break
            items.append(_copy(item, lowered, depth + 1, budget))
        if len(items) < size:
            items.append(f"{TRUNCATED[:-1]}: {size - len(items):,} more items]")
        return items
    if issubclass(kind, str):
        return cut_caller_text(value, AUDIT_TEXT_LIMIT)
    if issubclass(kind, int):  # not bool, which cannot be subclassed
        return _whole(int.__int__(value))
    if issubclass(kind, float):
        return float.__float__(value)
    return f"[not JSON: {type_name(value)}]"


def _whole(value: int) -> Any:
    # json writes an int through str(), which refuses more than 4,300 digits.
    bits = int.bit_length(value)
    return value if bits <= _MAX_INT_BITS else f"[an integer of {bits:,} bits]"


def _key(key: Any) -> Any:
    """A dict key as the event writes it: a plain, cut string, or a value json turns
    into one (a number, a boolean, null); anything else by its class's name."""
    kind = type(key)
    if kind is str or issubclass(kind, str):
        return cut_caller_text(key, AUDIT_TEXT_LIMIT)
    if key is None or kind is bool or kind is float:
        return key
    if kind is int:
        return _whole(key)
    return f"[not JSON: {type_name(key)}]"


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
