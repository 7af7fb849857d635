"""The answer to one call: `Effect` and `Decision`.

Decisions that need no state (hidden, denied, default, most allows) are built once
when a policy is compiled and returned as they are, so they must be immutable: the
public fields are read-only properties over private slots. A decision that took
tokens also carries what it took (a store's receipt, or the keys of the buckets a
generated take charged), so `refund()` can give exactly those back, once.
"""

from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from policylayer_core.ratelimit import RateLimitStore, Receipt

__all__ = [
    "CALLER_TEXT_LIMIT",
    "Decision",
    "Effect",
    "cut_caller_text",
    "quote_caller_text",
    "type_name",
]

# How many characters of a caller's text (a tool name, an identity, a session) a reason
# shows. MCP tool names are 1-128 characters, so every name the spec allows is shown
# whole; a longer one is cut, so a 10 MB name never becomes a 10 MB reason.
CALLER_TEXT_LIMIT = 128


def cut_caller_text(text: str, limit: int = CALLER_TEXT_LIMIT) -> str:
    """`text` itself when it has at most `limit` characters; else its first `limit`
    characters, an ellipsis and how many characters were cut:
    `abc… [9,999,997 more characters]`.

    For text a caller sent that a reason, an explanation or an audit event embeds:
    whatever arrives, what is kept is at most `limit` characters and a short marker.
    A `str` subclass is read as its plain characters (through `str.__str__`), so its
    own methods are never called.
    """
    if type(text) is not str:
        text = str.__str__(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters]"


def quote_caller_text(text: str, limit: int = CALLER_TEXT_LIMIT) -> str:
    """`text` in single quotes, as reasons name a tool or an identity: `'search'`.

    Longer than `limit` characters, the quotes hold the first `limit` characters and an
    ellipsis, followed by how many were cut: `'abc…' (9,999,997 more characters)`.
    """
    if type(text) is not str:
        text = str.__str__(text)
    if len(text) <= limit:
        return f"'{text}'"
    return f"'{text[:limit]}…' ({len(text) - limit:,} more characters)"


_TYPE_NAME = type.__dict__["__name__"].__get__


def type_name(value: Any) -> str:
    """The name of `value`'s real class, read without calling anything of the value or
    its metaclass (`type(value).__name__` goes through a metaclass's `__name__`)."""
    name = _TYPE_NAME(type(value))
    return name if type(name) is str else str.__str__(name)


class Effect(enum.StrEnum):
    """What the engine decided; the string values are those of the audit log and the CLI."""

    ALLOW = "allow"
    DENY = "deny"
    RATE_LIMITED = "rate_limited"
    APPROVAL_REQUIRED = "approval_required"


_new = object.__new__

# Taken around the read-and-clear of a decision's refund handle, so a decision refunds at
# most once even when two threads call refund() together. Refunds are rare (a tool
# failed) and the lock is held for two slot operations.
_REFUND_ONCE = threading.Lock()


class Refunder(Protocol):
    """What gives tokens back: a store (`refund(receipt)`), or a refunder generated
    code made for its buckets (`refund(payload)`, see `_memory_take`)."""

    def refund(self, payload: Any, /) -> None: ...


class Decision:
    """The engine's answer: the effect, the rule that decided (a JSON pointer) and why.

    `allowed` is what an integration acts on: true when the effect is ALLOW, or when
    the policy runs in shadow mode (`enforced` is then false and every call goes
    through while the would-be effect is still reported).
    """

    # `_fields` holds the public values in one tuple, so the copy that carries a call's
    # receipt (`with_receipt`, on the hot path of every limited call) is two slot writes.
    __slots__ = ("_fields", "_refund")

    _fields: tuple[Effect, bool, bool, str, str, str, float | None]
    # (store, receipt), or None; a _Taken made by generated code holds its payload here.
    _refund: Any

    def __init__(
        self,
        effect: Effect,
        tool: str,
        rule: str,
        reason: str,
        *,
        enforced: bool = True,
        retry_after: float | None = None,
    ) -> None:
        effect = effect if effect.__class__ is Effect else Effect(effect)
        allowed = effect is Effect.ALLOW or not enforced
        self._fields = (effect, allowed, enforced, tool, rule, reason, retry_after)
        self._refund = None

    @property
    def effect(self) -> Effect:
        """ALLOW, DENY, RATE_LIMITED or APPROVAL_REQUIRED."""
        return self._fields[0]

    @property
    def allowed(self) -> bool:
        """True when the call may go ahead (ALLOW, or any effect in shadow mode)."""
        return self._fields[1]

    @property
    def enforced(self) -> bool:
        """False when the policy runs in shadow mode."""
        return self._fields[2]

    @property
    def tool(self) -> str:
        """The tool name that was asked for."""
        return self._fields[3]

    @property
    def rule(self) -> str:
        """An RFC 6901 pointer into the loaded document at what decided."""
        return self._fields[4]

    @property
    def reason(self) -> str:
        """One sentence a person or an agent can act on."""
        return self._fields[5]

    @property
    def retry_after(self) -> float | None:
        """Seconds until the call could pass, for RATE_LIMITED; otherwise None."""
        return self._fields[6]

    def refund(self) -> None:
        """Give back the tokens this decision took (when the tool itself failed).

        Calling it again (from any thread), or on a decision that took nothing, does
        nothing.
        """
        with _REFUND_ONCE:
            handle = self._refund
            self._refund = None
        if handle is not None:
            refunder: Refunder = handle[0]
            refunder.refund(handle[1])

    def with_receipt(self, store: RateLimitStore, receipt: Receipt) -> Decision:
        """A copy of this (constant) decision that can refund what `receipt` took."""
        twin: Decision = _new(Decision)
        twin._fields = self._fields
        twin._refund = (store, receipt)
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        effect, _, enforced, tool, rule, reason, retry_after = self._fields
        if type(tool) is str:
            tool = cut_caller_text(tool)  # the caller's name: a bounded prefix of it
        extra = "" if enforced else ", enforced=False"
        retry = "" if retry_after is None else f", retry_after={retry_after:.3f}"
        return (
            f"Decision({effect.name}, tool={tool!r}, rule={rule!r}, "
            f"reason={reason!r}{retry}{extra})"
        )


_SPENT: Any = object()  # a refunded _Taken's payload (None is a payload: a global key)


class _Taken(Decision):
    """An allow that took tokens, as generated programs make it: a `Decision` to every
    reader (isinstance, ==, hash, repr, refund) except for its exact class.

    Calling it runs `object.__init__` (in C), not `Decision.__init__`, so it is made by
    the fast path of a type call; `object.__new__(Decision)` goes through a generic
    wrapper that builds an argument tuple. That is 15 ns of a 400 ns limited decision.

    A generated MemoryStore take sets `_refunder` and puts only its payload in
    `_refund` (the bucket's scope key, or a pair take's keys and second cost): two slot
    writes instead of a tuple per call. Without a refunder, `_refund` is a `Decision`'s
    (store, receipt) handle.
    """

    __slots__ = ("_refunder",)
    __init__ = object.__init__

    _refunder: Refunder | None

    def refund(self) -> None:
        refunder = getattr(self, "_refunder", None)
        if refunder is None:
            super().refund()
            return
        with _REFUND_ONCE:
            payload = self._refund
            self._refund = _SPENT
        if payload is not _SPENT:
            refunder.refund(payload)


class _Quoting(Decision):
    """A decision whose reason quotes the caller's argument values (a schema violation's
    message: `'sk-live-…' does not match '^pk-'`), with the same reason worded without
    them for the audit log. A `Decision` to every reader but the audit log."""

    __slots__ = ("logged_reason",)

    logged_reason: str


def quoting_values(decision: Decision, logged_reason: str) -> Decision:
    """`decision`, carrying `logged_reason`: what the audit log records as its reason.

    The caller may read its own values back in the reason it gets; the log must not hold
    them (they may be secrets the audit options redact, or data the operator never opted
    in to keep), so the audit event takes `logged_reason` instead.
    """
    copy = _new(_Quoting)
    copy._fields = decision._fields
    copy._refund = None
    copy.logged_reason = logged_reason
    return copy


def logged_reason(decision: Decision) -> str:
    """The reason the audit log records for `decision`: never an argument value."""
    if type(decision) is _Quoting:
        return decision.logged_reason
    return decision.reason
