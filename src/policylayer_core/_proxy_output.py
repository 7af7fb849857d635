"""What `policylayer proxy` writes on stderr: one line per event, each with its prefix.

A refusal, an approval needed, a reload (good or refused) come from the engine's audit
events (`Reporter`, inside `ProxySink` with the `--audit` file); the libraries' warnings
come through `logging`, one line each with any exception summed up (`quiet_libraries`).
No line ever spans two: what a caller sent is written with its control characters escaped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import TextIO

from policylayer_core.audit import AuditEvent
from policylayer_core.audit_jsonl import JsonlSink

__all__ = ["PREFIX", "ProxySink", "Reporter", "describe", "quiet_libraries", "say"]

PREFIX = "policylayer proxy: "


class Reporter:
    """One line on stderr for each refusal, call that needs approval, and reload (never
    for an allowed call)."""

    def __init__(self, err: TextIO, *, approvals: bool) -> None:
        self._err = err
        self._approvals = approvals
        self._lock = threading.Lock()

    def line(self, event: AuditEvent) -> str | None:
        if event.kind == "reload":
            return f"the policy file changed and was reloaded (policy {event.policy_hash})."
        if event.kind == "reload_failed":
            head = "the policy file changed but cannot be used; the last good policy stays in force"
            if len(event.issues) == 1:
                return f"{head}: {event.issues[0]}"
            return f"{head}:\n" + "\n".join("  " + issue for issue in event.issues)
        if event.kind != "decision" or event.effect == "allow":
            return None
        who, tool = printable(event.identity or ""), printable(event.tool or "")
        what = {
            "deny": "denied",
            "rate_limited": "rate limited",
            "approval_required": "approval needed for" if self._approvals else "denied",
        }.get(event.effect or "", event.effect or "")
        shadow = "" if event.enforced else "shadow mode, not enforced: "
        reason = printable(event.reason or "")
        return f"{shadow}{what} '{tool}' for '{who}' ({event.rule or '/'}): {reason}"

    def emit(self, event: AuditEvent) -> None:
        text = self.line(event)
        if text is not None:
            with self._lock:
                say(self._err, text)


class ProxySink:
    """The engine's audit sink: the JSONL file (if any) and the stderr reporter."""

    def __init__(self, jsonl: JsonlSink | None, reporter: Reporter) -> None:
        self._jsonl = jsonl
        self._reporter = reporter

    def emit(self, event: AuditEvent) -> None:
        self._reporter.emit(event)
        if self._jsonl is not None:
            self._jsonl.emit(event)

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()


def printable(text: str) -> str:
    """`text` on one line: a caller's tool name must not start a new line of the log."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def describe(exc: BaseException) -> str:
    """The innermost message of a (possibly chained or grouped) exception, one line."""
    while True:
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        elif exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    text = str(exc).strip().splitlines()
    return printable(text[0] if text else type(exc).__name__)


def say(err: TextIO, text: str) -> None:
    with contextlib.suppress(Exception):
        err.write(PREFIX + text + "\n")
        err.flush()


class _LineFormatter(logging.Formatter):
    """`policylayer proxy: message (Error: reason)`: an exception is summed up on the same
    line, since a traceback is for the libraries' authors, not for the proxy's user."""

    def format(self, record: logging.LogRecord) -> str:
        text = PREFIX + record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f" ({type(error).__name__}: {describe(error)})"
        return text


def _not_reported_otherwise(record: logging.LogRecord) -> bool:
    """Leave out the engine's own record of a refused reload: the reporter says it, on
    one line per problem, from the audit event."""
    return not (
        record.name == "policylayer_core.engine"
        and str(record.msg).startswith("policy reload refused")
    )


def quiet_libraries(err: TextIO) -> None:
    """Warnings and errors of the libraries, as plain lines on stderr; no banners, no
    progress chatter, no deprecation notices a user of the command cannot act on."""
    handler = logging.StreamHandler(err)
    handler.setFormatter(_LineFormatter())
    handler.addFilter(_not_reported_otherwise)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for name in ("fastmcp", "mcp", "uvicorn", "uvicorn.error", "docket"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
