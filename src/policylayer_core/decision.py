"""The answer to one call: `Effect` and `Decision`.

Decisions that need no state (hidden, denied, default, most allows) are built once
when a policy is compiled and returned as they are, so they must be immutable: the
public fields are read-only properties over private slots. A decision that took
tokens also carries its receipt, so `refund()` can give exactly those back.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policylayer_core.ratelimit import RateLimitStore, Receipt

__all__ = ["Decision", "Effect"]


class Effect(enum.StrEnum):
    """What the engine decided; the string values are those of the audit log and the CLI."""

    ALLOW = "allow"
    DENY = "deny"
    RATE_LIMITED = "rate_limited"
    APPROVAL_REQUIRED = "approval_required"


_new = object.__new__


class Decision:
    """The engine's answer: the effect, the rule that decided (a JSON pointer) and why.

    `allowed` is what an integration acts on: true when the effect is ALLOW, or when
    the policy runs in shadow mode (`enforced` is then false and every call goes
    through while the would-be effect is still reported).
    """

    __slots__ = (
        "_allowed",
        "_effect",
        "_enforced",
        "_reason",
        "_receipt",
        "_retry_after",
        "_rule",
        "_store",
        "_tool",
    )

    _effect: Effect
    _allowed: bool
    _enforced: bool
    _tool: str
    _rule: str
    _reason: str
    _retry_after: float | None
    _receipt: Receipt | None
    _store: RateLimitStore | None

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
        self._effect = effect if effect.__class__ is Effect else Effect(effect)
        self._enforced = enforced
        self._allowed = self._effect is Effect.ALLOW or not enforced
        self._tool = tool
        self._rule = rule
        self._reason = reason
        self._retry_after = retry_after
        self._receipt = None
        self._store = None

    @property
    def effect(self) -> Effect:
        """ALLOW, DENY, RATE_LIMITED or APPROVAL_REQUIRED."""
        return self._effect

    @property
    def allowed(self) -> bool:
        """True when the call may go ahead (ALLOW, or any effect in shadow mode)."""
        return self._allowed

    @property
    def enforced(self) -> bool:
        """False when the policy runs in shadow mode."""
        return self._enforced

    @property
    def tool(self) -> str:
        """The tool name that was asked for."""
        return self._tool

    @property
    def rule(self) -> str:
        """An RFC 6901 pointer into the loaded document at what decided."""
        return self._rule

    @property
    def reason(self) -> str:
        """One sentence a person or an agent can act on."""
        return self._reason

    @property
    def retry_after(self) -> float | None:
        """Seconds until the call could pass, for RATE_LIMITED; otherwise None."""
        return self._retry_after

    def refund(self) -> None:
        """Give back the tokens this decision took (when the tool itself failed).

        Calling it again, or on a decision that took nothing, does nothing.
        """
        store = self._store
        if store is not None and self._receipt is not None:
            store.refund(self._receipt)

    def with_receipt(self, store: RateLimitStore, receipt: Receipt) -> Decision:
        """A copy of this (constant) decision that can refund what `receipt` took."""
        twin: Decision = _new(Decision)
        twin._effect = self._effect
        twin._allowed = self._allowed
        twin._enforced = self._enforced
        twin._tool = self._tool
        twin._rule = self._rule
        twin._reason = self._reason
        twin._retry_after = None
        twin._receipt = receipt
        twin._store = store
        return twin

    def _fields(self) -> tuple[Any, ...]:
        return (
            self._effect,
            self._allowed,
            self._enforced,
            self._tool,
            self._rule,
            self._reason,
            self._retry_after,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        extra = "" if self._enforced else ", enforced=False"
        retry = "" if self._retry_after is None else f", retry_after={self._retry_after:.3f}"
        return (
            f"Decision({self._effect.name}, tool={self._tool!r}, rule={self._rule!r}, "
            f"reason={self._reason!r}{retry}{extra})"
        )
