"""Deciding one tool call for the MCP integrations: refusals, approvals, tickets.

`Gate` runs a call through the engine for every integration (`policylayer_core.fastmcp`
and `policylayer_core.mcp`, each with a middleware and a decorator); they differ in what
"run the tool" means and in the shape of its result and of a refusal (`Results`), and in
how the client is reached for a question (`Peer`). This module imports neither FastMCP
nor the MCP SDK's server, only the protocol's types. Approvals travel two ways, by
protocol era:

* **2025-11-25 and older**: the server sends `elicitation/create` over the session's
  back-channel while the call waits, and goes on with the answer.
* **2026-07-28**: the round ends with an `input_required` result carrying the question;
  the client asks its user and sends the call again with the answer. The question is
  bound to a one-time ticket in a bounded TTL cache (identity, tool, digest of the exact
  arguments) that travels in `request_state` (sealed, bound and expired by the SDK). A
  missing, expired, replayed or foreign ticket, or no answer, is asked again; the round
  that only asks takes no tokens and records no audit event.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import inspect
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeAlias, TypeVar, overload

import mcp_types
from cachetools import TTLCache
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from policylayer_core.decision import Decision, Effect, quote_caller_text
from policylayer_core.engine import PolicyEngine

DENIED = "[POLICY DENIED] "
APPROVAL_KEY = "policylayer/approval"  # the key of our question in `input_requests`
_STATE_PREFIX = "policylayer.approval.v1:"
_ARGS_SHOWN = 2_000  # characters of the arguments shown to the person asked
_NO_FIELDS: dict[str, Any] = {"type": "object", "properties": {}}

# Why there was no approval: appended to the rule's reason after "[POLICY DENIED] ".
REFUSED = "The approver refused this call."
DECLINED = "The person asked declined this call."
CANCELLED = "The person asked dismissed the question without approving this call."
NO_ELICITATION = (
    "This client cannot ask a person for approval (it declared no form elicitation support)."
)


async def decide_off_loop(
    engine: PolicyEngine,
    identity: str,
    tool: str,
    args: Any,
    *,
    session: str | None,
    approved: bool = False,
) -> Decision:
    """engine.decide(), moved to a worker thread when the store does network I/O.

    decide() is pure CPU with the memory store and is called directly; a store that
    declares `blocking = True` (RedisStore: one round trip per call, up to its timeout
    when Redis is slow) would otherwise stall the event loop for every other request.
    """
    if getattr(engine.store, "blocking", False):
        return await asyncio.to_thread(
            engine.decide, identity, tool, args, session=session, approved=approved
        )
    return engine.decide(identity, tool, args, session=session, approved=approved)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What an approver callback is asked to approve: one call, exactly as it was made.

    `args` is a copy of the call's arguments (changing it changes nothing), `decision`
    the `APPROVAL_REQUIRED` decision whose `reason` says why a person must agree, and
    `session` the transport session, when there is one.
    """

    identity: str
    tool: str
    args: dict[str, Any]
    decision: Decision
    session: str | None = None


ApproverCallback: TypeAlias = Callable[[ApprovalRequest], bool | Awaitable[bool]]
Approver: TypeAlias = ApproverCallback | Literal["elicit"] | None

R = TypeVar("R")
P = ParamSpec("P")
T = TypeVar("T")


class Guard(Protocol):
    """What either integration's `policy_guard(...)` returns: a decorator that keeps the
    signature and makes the function a coroutine function."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]: ...


class _Versioned(Protocol):
    @property
    def protocol_version(self) -> str | None: ...


def is_modern(rc: _Versioned | None) -> bool:
    """True on a 2026-07-28 connection: no session, no server-initiated requests."""
    return rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS


def can_elicit_form(capabilities: mcp_types.ClientCapabilities | None) -> bool:
    """Whether these client capabilities declare form elicitation."""
    elicitation = capabilities.elicitation if capabilities is not None else None
    # `elicitation: {}` predates the form/url split and means form.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def refusal_text(decision: Decision, why: str = "") -> str:
    """What a client reads: `[POLICY DENIED] `, the reason, and why there was no approval."""
    return DENIED + (f"{decision.reason} {why}" if why else decision.reason)


class Peer(Protocol):
    """How an integration reaches the client of a call, given the call's `Call.ctx`."""

    log: logging.Logger  # where a failed question or a failing approver is logged

    def modern(self, ctx: Any) -> bool:
        """True when the call came over 2026-07-28 (questions end the round)."""
        ...

    def can_elicit(self, ctx: Any) -> bool:
        """Whether the client declared form elicitation (for this request, on 2026-07-28)."""
        ...

    async def elicit(
        self, ctx: Any, message: str, schema: dict[str, Any]
    ) -> mcp_types.ElicitResult:
        """Ask over the session's back-channel (2025-11-25 and older); raises on failure."""
        ...


def _approval_message(tool: str, args: Any, reason: str) -> str:
    try:
        shown = json.dumps(args, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        shown = repr(args)
    if len(shown) > _ARGS_SHOWN:
        shown = shown[:_ARGS_SHOWN] + "…"
    return (
        f"Approve this tool call? The agent wants to call {quote_caller_text(tool)} with the "
        "arguments "
        f"{shown}. The policy asks a person first: {reason} "
        "Accept to run this one call; decline to refuse it."
    )


# -- tickets: the 2026-07-28 questions waiting for an answer ---------------------------------


def _digest(args: Any) -> str:
    try:
        text = json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        text = repr(args)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Ticket:
    identity: str
    tool: str
    digest: str
    approved: bool  # False: waiting for the person's answer; True: approved, the tool asks


class PendingApprovals:
    """One-time tickets in a bounded TTL cache on an injected clock: past `maxsize` the
    oldest go (their calls are asked again), and a ticket is good for one round within
    `ttl` seconds."""

    def __init__(self, *, ttl: float, maxsize: int, clock: Callable[[], float]) -> None:
        if not ttl > 0:
            raise ValueError(f"approval_ttl must be positive, not {ttl!r}")
        if maxsize < 1:
            raise ValueError(f"max_pending must be at least 1, not {maxsize!r}")
        self._tickets: TTLCache[str, _Ticket] = TTLCache(maxsize=maxsize, ttl=ttl, timer=clock)
        self._lock = threading.Lock()

    def issue(self, identity: str, tool: str, args: Any, *, approved: bool) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._tickets[token] = _Ticket(identity, tool, _digest(args), approved)
        return token

    def redeem(self, token: str, identity: str, tool: str, args: Any) -> _Ticket | None:
        """The ticket, once, if it exists, has not expired and names exactly this call."""
        with self._lock:
            ticket = self._tickets.pop(token, None)
        if ticket is None:
            return None
        if ticket.identity != identity or ticket.tool != tool or ticket.digest != _digest(args):
            return None
        return ticket


@dataclass(frozen=True, slots=True)
class View:
    """What the tool below sees of a round's `request_state` and `input_responses`."""

    request_state: str | None
    input_responses: dict[str, mcp_types.InputResponse] | None


@dataclass(frozen=True, slots=True)
class _Continuation:
    token: str
    inner: View  # the round as the tool sees it: its own state and answers
    answer: mcp_types.ElicitResult | None  # the person's answer to our question
    responses: dict[str, mcp_types.InputResponse] | None  # every answer, ours included


def _encode_state(token: str, inner: str | None) -> str:
    return _STATE_PREFIX + json.dumps({"t": token, "s": inner}, separators=(",", ":"))


def _read_continuation(
    state: str | None, responses: Mapping[str, mcp_types.InputResponse] | None
) -> _Continuation | None:
    """Our ticket and the answers of a round, or None when `state` is not ours."""
    if state is None or not state.startswith(_STATE_PREFIX):
        return None
    token, inner_state = "", None  # a malformed state names no ticket: asked again
    try:
        doc = json.loads(state[len(_STATE_PREFIX) :])
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("t"), str):
        token = doc["t"]
        inner_state = doc["s"] if isinstance(doc.get("s"), str) else None
    everything = dict(responses) if responses else None
    answer = everything.pop(APPROVAL_KEY, None) if everything else None
    return _Continuation(
        token=token,
        inner=View(inner_state, everything or None),
        answer=answer if isinstance(answer, mcp_types.ElicitResult) else None,
        responses=dict(responses) if responses else None,
    )


# -- one call through the policy ---------------------------------------------------------------


class Results(Protocol[R]):
    """How an integration's tool results, and its refusals, look."""

    def refused(self, decision: Decision, why: str) -> R:
        """The refusal of a call (`refusal_text`): a result, or an exception raised."""
        ...

    def asking(self, question: mcp_types.InputRequiredResult) -> R:
        """The result that ends this round with our question (2026-07-28)."""
        ...

    def input_required(self, result: R) -> mcp_types.InputRequiredResult | None:
        """The tool's own question, when its result is one."""
        ...

    def rewrap(self, result: R, question: mcp_types.InputRequiredResult) -> R:
        """`result` (the tool's question) with `question` in its place."""
        ...

    def failed(self, result: R) -> bool:
        """True when the result reports a failed tool (its tokens are given back)."""
        ...


# Runs the tool, showing it `View` (when not None) as the round's state and answers.
Run: TypeAlias = Callable[[View | None], Awaitable[R]]


@dataclass(frozen=True, slots=True)
class Call:
    """One tools/call as the policy sees it; `ctx` is what the integration's `Peer` reads."""

    ctx: Any
    identity: str
    session: str | None
    tool: str
    args: Any


class Gate:
    """Decides calls, asks for approval where the policy says so, runs or refuses them."""

    def __init__(
        self,
        engine: PolicyEngine,
        approver: Approver,
        *,
        peer: Peer,
        approval_ttl: float,
        max_pending: int,
        clock: Callable[[], float] | None,
    ) -> None:
        if not (approver is None or approver == "elicit" or callable(approver)):
            raise ValueError(f"approver must be None, 'elicit' or a callable, not {approver!r}")
        self.engine = engine
        self.peer = peer
        self.approver = approver
        self.elicit = approver == "elicit"
        self.pending = PendingApprovals(
            ttl=approval_ttl, maxsize=max_pending, clock=clock or engine.clock
        )

    async def call(
        self,
        call: Call,
        run: Run[R],
        results: Results[R],
        *,
        state: str | None = None,
        responses: Mapping[str, mcp_types.InputResponse] | None = None,
    ) -> R:
        """Run the call, refuse it (`results.refused`), or ask the client (a result).

        `state` and `responses` are the round's `request_state` and `input_responses`.
        """
        round_ = _Round(self, call, run, results)
        if self.peer.modern(call.ctx):
            cont = _read_continuation(state, responses)
            if cont is not None:
                return await round_.resume(cont)
            if self.elicit:
                return await round_.first_round(None)
        return await round_.decide(None)

    async def settle(self, d: Decision, call: Call, run: Run[R], results: Results[R]) -> R:
        """`d`, decided by the caller, needs approval: get it and run the call, or refuse."""
        return await _Round(self, call, run, results).approve(d, None)


class _Round(Generic[R]):
    """One tools/call round: the steps of deciding, asking and running it."""

    __slots__ = ("call", "gate", "results", "run")

    def __init__(self, gate: Gate, call: Call, run: Run[R], results: Results[R]) -> None:
        self.gate, self.call, self.run, self.results = gate, call, run, results

    async def _decide(self, *, approved: bool = False) -> Decision:
        c = self.call
        return await decide_off_loop(
            self.gate.engine, c.identity, c.tool, c.args, session=c.session, approved=approved
        )

    async def decide(self, view: View | None) -> R:
        """A round that decides for real: run the call, or ask, or refuse it."""
        d = await self._decide()
        if d.allowed:
            return await self.execute(d, view, approved=False)
        if d.effect is not Effect.APPROVAL_REQUIRED:
            return self.results.refused(d, "")
        return await self.approve(d, view)

    async def approve(self, d: Decision, view: View | None) -> R:
        """`d` needs approval: get it from the approver and run the call, or refuse it."""
        approver = self.gate.approver
        if approver is None:
            return self.results.refused(d, "")
        if approver == "elicit":
            if self.gate.peer.modern(self.call.ctx):
                if not self.gate.peer.can_elicit(self.call.ctx):
                    return self.results.refused(d, NO_ELICITATION)
                return self.results.asking(self.question(d))
            approved, why = await self._elicit(d)
        else:
            approved, why = await self._callback(approver, d)
        if not approved:
            return self.results.refused(d, why)
        return await self.approved(view)

    async def approved(self, view: View | None) -> R:
        d = await self._decide(approved=True)  # every other rule and every limit still applies
        if not d.allowed:
            return self.results.refused(d, "")
        return await self.execute(d, view, approved=True)

    async def first_round(self, view: View | None) -> R:
        """2026-07-28, `approver="elicit"`, no answer of ours: ask, or decide.

        Asking takes no tokens; an engine that audits is first probed with `explain()` (a
        dry run), so that a round that only asks records no event either.
        """
        c, engine = self.call, self.gate.engine
        if getattr(engine, "auditor", None) is not None:
            probe = engine.explain(c.identity, c.tool, c.args, session=c.session).decision
            needs = probe.effect is Effect.APPROVAL_REQUIRED and not probe.allowed
            if needs and self.gate.peer.can_elicit(c.ctx):
                return self.results.asking(self.question(probe))
        return await self.decide(view)

    async def resume(self, cont: _Continuation) -> R:
        """A 2026-07-28 round carrying our ticket back."""
        c = self.call
        ticket = self.gate.pending.redeem(cont.token, c.identity, c.tool, c.args)
        if ticket is None:
            # Forged, replayed, expired or issued for another call: never an approval.
            # The call starts over (and is asked again where it needs approval).
            if self.gate.elicit:
                return await self.first_round(cont.inner)
            return await self.decide(cont.inner)
        if ticket.approved:
            # Approved on an earlier round; the tool is asking its own questions, and
            # every answer is the tool's (a guard below may use our key too).
            return await self.approved(View(cont.inner.request_state, cont.responses))
        answer = cont.answer
        if answer is None:
            return await self.first_round(None)  # the question went unanswered: ask again
        d = await self._decide()
        if d.allowed:  # the policy changed between the rounds: no approval needed now
            return await self.execute(d, cont.inner, approved=False)
        if d.effect is not Effect.APPROVAL_REQUIRED:
            return self.results.refused(d, "")
        if answer.action == "accept":
            return await self.approved(cont.inner)
        return self.results.refused(d, DECLINED if answer.action == "decline" else CANCELLED)

    def question(self, d: Decision) -> mcp_types.InputRequiredResult:
        """Our question for a 2026-07-28 client, with a fresh one-time ticket."""
        c = self.call
        token = self.gate.pending.issue(c.identity, c.tool, c.args, approved=False)
        message = _approval_message(c.tool, c.args, d.reason)
        request = mcp_types.ElicitRequest(
            params=mcp_types.ElicitRequestFormParams(
                message=message, requested_schema=dict(_NO_FIELDS)
            )
        )
        return mcp_types.InputRequiredResult(
            input_requests={APPROVAL_KEY: request}, request_state=_encode_state(token, None)
        )

    async def execute(self, d: Decision, view: View | None, *, approved: bool) -> R:
        """Run the tool; give the tokens back when it fails or only asks a question."""
        try:
            result = await self.run(view)
        except BaseException:
            d.refund()
            raise
        asked = self.results.input_required(result)
        if asked is not None:
            # This round did not take the call to its end: it costs nothing. An approved
            # call keeps its approval for the tool's next round, under a new ticket.
            d.refund()
            c = self.call
            if approved and self.gate.peer.modern(c.ctx):
                token = self.gate.pending.issue(c.identity, c.tool, c.args, approved=True)
                state = _encode_state(token, asked.request_state)
                result = self.results.rewrap(
                    result, asked.model_copy(update={"request_state": state})
                )
            return result
        if self.results.failed(result):
            d.refund()
        return result

    async def _elicit(self, d: Decision) -> tuple[bool, str]:
        """Ask the person over the session's back-channel (2025-11-25 and older)."""
        c, peer = self.call, self.gate.peer
        if not peer.can_elicit(c.ctx):
            return False, NO_ELICITATION
        try:
            answer = await peer.elicit(
                c.ctx, _approval_message(c.tool, c.args, d.reason), dict(_NO_FIELDS)
            )
        except Exception as exc:
            peer.log.warning("asking for approval of %r failed", c.tool, exc_info=exc)
            return False, f"Asking a person for approval failed ({type(exc).__name__})."
        if answer.action == "accept":
            return True, ""
        return False, DECLINED if answer.action == "decline" else CANCELLED

    async def _callback(self, approver: ApproverCallback, d: Decision) -> tuple[bool, str]:
        c = self.call
        args = copy.deepcopy(c.args) if isinstance(c.args, dict) else {}
        try:
            verdict = approver(ApprovalRequest(c.identity, c.tool, args, d, c.session))
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:
            self.gate.peer.log.error(
                "the approver failed on %r; the call is denied", c.tool, exc_info=exc
            )
            return False, f"The approver failed ({type(exc).__name__}), so the call is denied."
        return verdict is True, REFUSED
