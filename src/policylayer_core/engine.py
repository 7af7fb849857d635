"""`PolicyEngine`: decide, explain, list visible tools, reload.

The engine holds one immutable `_State` (the compiled policies and grant tables) and
swaps it whole on reload, so a call sees either the old policy or the new one, never
a mix. The rate-limit store outlives reloads: buckets are keyed by their definition,
so the ones whose definition did not change keep their tokens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from policylayer_core._audit_queue import Auditor
from policylayer_core.audit import AuditOptions, AuditSink
from policylayer_core.compiler import CompiledPolicy
from policylayer_core.conditions import describe_type
from policylayer_core.decision import (
    Decision,
    Effect,
    cut_caller_text,
    quote_caller_text,
    type_name,
)
from policylayer_core.errors import PolicyError
from policylayer_core.globs import BoundedCache, GlobTable, is_glob
from policylayer_core.jsontext import pointer_join
from policylayer_core.loader import LoadedPolicy, load_policy, load_text
from policylayer_core.program import Step
from policylayer_core.ratelimit import MemoryStore, RateLimitStore
from policylayer_core.watch import FileWatch

__all__ = [
    "IDENTITY_CACHE_CHARS",
    "IDENTITY_CACHE_SIZE",
    "MAX_IDENTITY_LENGTH",
    "Explanation",
    "PolicyEngine",
]

# Identities resolved through grant globs, remembered per loaded bundle: at most this many,
# adding up to at most this many characters (64 an identity on average before the
# character budget binds first).
IDENTITY_CACHE_SIZE = 131_072
IDENTITY_CACHE_CHARS = 8_388_608
# The longest identity matched against grant globs. Exact grants match an identity of any
# length; a longer one that no exact grant names is denied at "" without looking at any
# glob, and never remembered. Generous: an email address has at most 254 characters, a
# SPIFFE ID at most 2,048 bytes.
MAX_IDENTITY_LENGTH = 4_096

_log = logging.getLogger("policylayer_core")

Source = str | PathLike[str] | Mapping[str, Any] | LoadedPolicy


@dataclass(frozen=True, slots=True)
class Explanation:
    """The result of `explain()`: the decision `decide()` would give, and every step taken."""

    decision: Decision
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        d = self.decision
        # The tool name is the caller's: a bounded prefix of it, like every reason.
        tool = repr(cut_caller_text(d.tool))
        lines = [f"{d.effect.value.upper()} {tool} at {d.rule or '(root)'}: {d.reason}"]
        if d.retry_after is not None:
            lines[0] += f" (retry after {d.retry_after:.3f} s)"
        if not d.enforced:
            lines.append("shadow mode: not enforced, the call goes through")
        lines += [f"  {i}. {step}" for i, step in enumerate(self.steps, 1)]
        return "\n".join(lines)


class _State:
    """One loaded policy, compiled. Never mutated after construction (but for its caches)."""

    def __init__(self, loaded: LoadedPolicy, store: RateLimitStore, *, shadow: bool) -> None:
        self.loaded = loaded
        self.digest = loaded.digest
        self.policies = {
            name: CompiledPolicy(
                policy,
                name=name,
                prefix=pointer_join("/policies", name) if loaded.is_bundle else "",
                store=store,
                enforced=not shadow,
            )
            for name, policy in loaded.policies.items()
        }
        self.single = None if loaded.is_bundle else self.policies[""]
        # The mode of denials made before a policy is chosen (see _check_input).
        self.enforced = self.single.enforced if self.single is not None else not shadow
        grants = loaded.grants
        self.grants_exact = {k: self.policies[v] for k, v in grants.items() if not is_glob(k)}
        self.grants_globs = GlobTable(
            (k, self.policies[v]) for k, v in grants.items() if is_glob(k)
        )
        self.grant_keys = dict(grants)
        self._cache: BoundedCache[CompiledPolicy | None] = BoundedCache(
            IDENTITY_CACHE_SIZE, IDENTITY_CACHE_CHARS
        )
        self._no_match = object()

    def policy_for(self, identity: str) -> CompiledPolicy | None:
        policy = self.grants_exact.get(identity)
        if policy is not None:
            return policy
        cached = self._cache.get(identity, self._no_match)
        if cached is not self._no_match:
            return cached  # type: ignore[return-value]
        if len(identity) > MAX_IDENTITY_LENGTH:
            return None  # no glob is examined and nothing is remembered (see no_grant)
        matched = self.grants_globs.match(identity)
        return self._cache.put(identity, matched[1] if matched is not None else None)

    def _too_long(self, identity: str) -> bool:
        """True when grant globs were skipped for this identity's length (with no glob,
        nothing was skipped: the identity simply has no grant)."""
        return len(identity) > MAX_IDENTITY_LENGTH and len(self.grants_globs) > 0

    def grant_steps(self, identity: str) -> list[Step]:
        if identity in self.grants_exact:
            return [
                Step(
                    pointer_join("/grants", identity),
                    "grant matched exactly",
                    self.grant_keys[identity],
                )
            ]
        if self._too_long(identity):
            return [Step("", "identity too long for grant globs", cut_caller_text(identity))]
        matched = self.grants_globs.match(identity)
        if matched is None:
            return [Step("/grants", "no grant matches", cut_caller_text(identity))]
        return [Step(pointer_join("/grants", matched[0]), "grant matched by glob", matched[1].name)]

    def no_grant(self, identity: str, tool: str) -> Decision:
        """The denial for an identity that no grant gives a policy."""
        shown = quote_caller_text(identity)
        if self._too_long(identity):
            reason = (
                f"The identity {shown} is {len(identity):,} characters long; grant globs are "
                f"matched only against identities of at most {MAX_IDENTITY_LENGTH:,} "
                "characters, and no exact grant names it, so every call is denied; use a "
                "shorter identity or ask an administrator for an exact grant."
            )
            return Decision(Effect.DENY, tool, "", reason)
        reason = (
            f"No policy applies to the identity {shown}: no grant in the bundle matches it, "
            "so every call is denied; ask an administrator for a grant."
        )
        return Decision(Effect.DENY, tool, "/grants", reason)


def _as_str(value: Any) -> str | None:
    """A plain `str` with the characters of `value`, or None when it is not a string.

    Judged with `type()`, never `isinstance` or `value.__class__`, which believe a
    `__class__` property; a real subclass is read through `str.__str__`, not its own
    methods."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return str.__str__(value)  # a str subclass: keep the characters, drop the class
    return None


# What the never-raises guard lets through: a person stopping the process. Everything
# else (MemoryError and RecursionError included, and BaseException subclasses such as a
# compiled extension's panic, or a stray GeneratorExit or CancelledError, which cannot
# reach a plain function legitimately) is a failure to decide, and so a denial.
_STOP = (KeyboardInterrupt, SystemExit)

# Denials for a failure so deep that even wording its reason failed (memory exhausted,
# the stack at its limit): made in advance, so returning one allocates nothing.
_FAILED_REASON = (
    "The policy engine failed while deciding this call, so the call is denied to stay "
    "safe; the server's log may have the details."
)
_FAILED = {
    True: Decision(Effect.DENY, "", "", _FAILED_REASON),
    False: Decision(Effect.DENY, "", "", _FAILED_REASON, enforced=False),
}


def _log_quietly(message: str, exc: BaseException) -> None:
    """Log a failure with its traceback; a log that fails too has nothing left to tell."""
    try:
        _log.error(message, exc_info=exc)
    except _STOP:
        raise
    except BaseException:  # nowhere left to report it
        pass


class PolicyEngine:
    """Decides MCP tool calls against a policy: allow, deny, rate limited or approval.

    Build one per policy source and share it: `decide()` is thread-safe and never raises
    for what a caller sends. Keyword options:

    - `clock`: a monotonic clock in seconds (rate limits, watch polling); default
      `time.monotonic`. Tests pass a fake one.
    - `audit`: an `AuditSink` (see `policylayer_core.audit`); every decision and reload
      becomes an event, delivered off the decision path. `audit_options` says what of
      the arguments is kept (by default only their keys).
    - `store`: where token buckets live; default a `MemoryStore` on `clock`.
    - `mode`: "shadow" runs every policy in shadow mode, whatever the documents say.
    """

    def __init__(
        self,
        policy: Source,
        *,
        clock: Callable[[], float] = time.monotonic,
        audit: AuditSink | None = None,
        store: RateLimitStore | None = None,
        mode: Literal["shadow"] | None = None,
        audit_options: AuditOptions | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in (None, "shadow"):
            raise ValueError(f"mode must be None or 'shadow', not {mode!r}")
        self.clock = clock
        self.store: RateLimitStore = store if store is not None else MemoryStore(clock=clock)
        self._shadow = mode == "shadow"
        self._reload_lock = threading.Lock()
        self._failures_logged: set[type[BaseException]] = set()
        self.internal_failures = 0
        self._state = _State(load_policy(policy), self.store, shadow=self._shadow)
        self._watch: FileWatch | None = None
        self.auditor = (
            Auditor(audit, audit_options, wall_clock=wall_clock) if audit is not None else None
        )
        if self.auditor is not None:
            # An instance attribute shadows the method: engines without an audit sink or
            # a watched file pay nothing for either on the decision path.
            self.decide = self._decide_and_observe  # type: ignore[method-assign]

    @classmethod
    def from_file(
        cls,
        path: str | PathLike[str],
        *,
        watch: bool = False,
        watch_interval: float = 2.0,
        **options: Any,
    ) -> PolicyEngine:
        """Load the policy at `path` (JSON) and build an engine for it.

        With `watch=True` the engine checks the file at most every `watch_interval`
        seconds (on its own clock, during decide(); no thread) and reloads it when its
        content changed. A broken edit keeps the last good policy in force, logs the
        problems and records a `reload_failed` audit event.
        """
        engine = cls(load_policy(Path(path)), **options)
        if watch:
            engine._watch = FileWatch(path, watch_interval, engine.clock())
            engine.decide = engine._decide_and_observe  # type: ignore[method-assign]
        return engine

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], **options: Any) -> PolicyEngine:
        """Build an engine from a policy document already parsed into a dict."""
        return cls(load_policy(document), **options)

    @property
    def policy(self) -> LoadedPolicy:
        """The policy in force."""
        return self._state.loaded

    def reload(self, source: Source) -> None:
        """Replace the policy atomically.

        On a bad document this raises `PolicyError` and the old policy stays in force.
        Both outcomes are audit events (with the old and new digests).
        """
        try:
            loaded = load_policy(source)
        except PolicyError as error:
            self._reload_failed(error)
            raise
        self._swap(loaded)

    def _swap(self, loaded: LoadedPolicy) -> None:
        state = _State(loaded, self.store, shadow=self._shadow)
        with self._reload_lock:
            old, self._state = self._state, state
        # A refused reload is logged at ERROR; one that took effect is worth a line too, so
        # that an operator reading the log knows which policy is in force from when.
        _log.info("policy reloaded from %s: %s -> %s", loaded.source, old.digest, state.digest)
        if self.auditor is not None:
            self.auditor.record_reload(old=old.digest, new=state.digest)

    def _reload_failed(self, error: PolicyError) -> None:
        _log.error("policy reload refused; the policy in force stays: %s", error)
        if self.auditor is not None:
            issues = tuple(issue.format(error.source) for issue in error.issues)
            self.auditor.record_reload(old=self._state.digest, new=None, issues=issues)

    def poll(self) -> bool:
        """Check the watched file now (from_file(..., watch=True)); True if it reloaded."""
        watch = self._watch
        if watch is None:
            return False
        text = watch.poll(self.clock())
        if text is None:
            return False
        try:
            loaded = load_text(text, str(watch.path))
        except PolicyError as error:
            watch.rejected(text)
            self._reload_failed(error)
            return False
        watch.accepted(text)
        self._swap(loaded)
        return True

    def close(self) -> None:
        """Deliver the audit events still queued and close the audit sink."""
        if self.auditor is not None:
            self.auditor.close()

    def _decide_and_observe(
        self,
        identity: str,
        tool: str,
        args: Any = None,
        *,
        session: str | None = None,
        approved: bool = False,
    ) -> Decision:
        """decide() for an engine that audits or watches its file."""
        watch = self._watch
        if watch is not None:
            try:
                if watch.due(self.clock()):
                    self.poll()
            except _STOP:
                raise
            except BaseException as exc:  # a failed poll must not fail the call
                _log_quietly("polling the policy file failed", exc)
        # One read of the state: the policy that decides is the one whose hash the audit
        # event names, even when a reload lands in the middle of the call.
        state = self._state
        try:
            decision = self._decide_in(
                state, identity, tool, args, session=session, approved=approved
            )
        except _STOP:
            raise
        except BaseException as exc:
            decision = self._failed(exc, tool, state)
        auditor = self.auditor
        if auditor is not None:
            auditor.record(decision, identity, session, args, state.digest)  # never raises
        return decision

    def decide(
        self,
        identity: str,
        tool: str,
        args: Any = None,
        *,
        session: str | None = None,
        approved: bool = False,
    ) -> Decision:
        """Decide one call. Never raises: whatever arrives, a Decision comes back."""
        # The body of `_decide_in`, written out again: a call to it would cost a quarter
        # of a static decision. Change the two together.
        state = self._state
        try:
            if (
                type(identity) is not str
                or type(tool) is not str
                or (session is not None and type(session) is not str)
            ):
                return self._odd_input(
                    state, identity, tool, args, session=session, approved=approved
                )
            policy = state.single
            if policy is None:
                policy = state.policy_for(identity)
                if policy is None:
                    return state.no_grant(identity, tool)
            route = (
                policy.routes.get(tool) or policy.cached(tool) or policy.resolve_and_remember(tool)
            )
            decision = route.constant
            if decision is not None:
                return decision
            decision = route.static
            if decision is not None and (args is None or type(args) is dict):
                return decision
            return route.run(route, identity, tool, args, session, approved)
        # A try costs nothing until something is raised (CPython 3.11). BaseException,
        # not Exception: a compiled extension's panic (pyo3's PanicException) derives
        # from it, and must deny like any other failure.
        except _STOP:
            raise
        except BaseException as exc:
            return self._failed(exc, tool, state)

    def _decide_in(
        self,
        state: _State,
        identity: Any,
        tool: Any,
        args: Any,
        *,
        session: Any,
        approved: bool,
    ) -> Decision:
        """decide()'s body on a given state, without the guard (its callers have one)."""
        if (
            type(identity) is not str
            or type(tool) is not str
            or (session is not None and type(session) is not str)
        ):
            return self._odd_input(state, identity, tool, args, session=session, approved=approved)
        policy = state.single
        if policy is None:
            policy = state.policy_for(identity)
            if policy is None:
                return state.no_grant(identity, tool)
        route = policy.routes.get(tool) or policy.cached(tool) or policy.resolve_and_remember(tool)
        decision = route.constant
        if decision is not None:
            return decision
        decision = route.static
        if decision is not None and (args is None or type(args) is dict):
            return decision
        return route.run(route, identity, tool, args, session, approved)

    def _odd_input(
        self, state: _State, identity: Any, tool: Any, args: Any, *, session: Any, approved: bool
    ) -> Decision:
        # Decided here, on the caller's state, and not through self.decide: on an audited
        # engine that is the observed decide, which would record (and poll) a second time.
        checked = self._check_input(state, identity, tool, session)
        if type(checked) is Decision:
            return checked
        who, name, sess = checked  # type: ignore[misc]
        return self._decide_in(state, who, name, args, session=sess, approved=approved)

    def _check_input(
        self, state: _State, identity: Any, tool: Any, session: Any
    ) -> tuple[str, str, str | None] | Decision:
        """Plain strings for the call's names, or the denial that says which is wrong."""
        name, who, sess = _as_str(tool), _as_str(identity), _as_str(session)
        if name is None:
            problem = f"The tool name must be a string, but it is {describe_type(tool)}."
        elif who is None:
            problem = f"The identity must be a string, but it is {describe_type(identity)}."
        elif sess is None and session is not None:
            problem = f"The session must be a string or None, but it is {describe_type(session)}."
        else:
            return who, name, sess
        # Denials made before a policy is chosen follow a plain policy's mode, so shadow
        # mode still lets every call through; in a bundle they are enforced.
        return Decision(Effect.DENY, name or "", "", problem, enforced=state.enforced)

    def _failed(self, exc: BaseException, tool: Any, state: _State) -> Decision:
        try:
            self.internal_failures += 1
            kind = type(exc)
            if kind not in self._failures_logged:
                self._failures_logged.add(kind)
                _log.error(
                    "policylayer_core failed while deciding a call; it was denied", exc_info=exc
                )
            reason = (
                f"The policy engine failed while deciding this call ({type_name(exc)}), so "
                "the call is denied to stay safe; the server's log has the details."
            )
            return Decision(Effect.DENY, _as_str(tool) or "", "", reason, enforced=state.enforced)
        except _STOP:
            raise
        except BaseException:
            # Even the denial could not be made (no memory left, the stack at its limit,
            # a handler of the log failing): the one made in advance allocates nothing.
            return _FAILED[state.enforced]

    def explain(
        self,
        identity: str,
        tool: str,
        args: Any = None,
        *,
        session: str | None = None,
        approved: bool = False,
    ) -> Explanation:
        """A dry run: the decision `decide()` would give, with every step; takes no tokens.

        Never raises, like `decide()`: a failure inside the engine is a denial (with a
        step that says so), logged and counted."""
        state = self._state
        steps: list[Step] = []
        try:
            checked = self._check_input(state, identity, tool, session)
            if type(checked) is Decision:
                return Explanation(checked, (Step("", "input rejected", checked.reason),))
            who, name, sess = checked  # type: ignore[misc]
            decision = self._explain(
                state, who, name, args, session=sess, approved=approved, steps=steps
            )
        except _STOP:
            raise
        except BaseException as exc:  # explain fails closed, like decide
            decision = self._failed(exc, tool, state)
            steps.append(Step("", "engine failure: deny", decision.reason))
        return Explanation(decision, tuple(steps))

    def _explain(
        self,
        state: _State,
        identity: str,
        tool: str,
        args: Any,
        *,
        session: str | None,
        approved: bool,
        steps: list[Step],
    ) -> Decision:
        policy = state.single
        if policy is None:
            steps += state.grant_steps(identity)
            policy = state.policy_for(identity)
            if policy is None:
                return state.no_grant(identity, tool)
        route = policy.route(tool)  # the route decide() takes, over-long names included
        steps += route.steps
        if route.constant is not None:
            return route.constant
        assert route.program is not None
        return route.program.run(identity, args, session, approved, steps, dry=True)

    def visible_tools(self, identity: str, names: Iterable[str]) -> list[str]:
        """The names this identity may see in tools/list, in the order given.

        Drops the tools this identity cannot see: hidden ones, those that fall to
        `default: deny`, and every tool when no grant matches the identity. A tool with
        `action: deny` stays: the format calls it "visible but always denied". In shadow
        mode nothing is dropped. Names that are not strings are dropped. Never raises:
        a failure inside the engine shows nothing (and is logged and counted).
        """
        state = self._state
        try:
            who = _as_str(identity)
            if who is None:
                return []
            policy = state.single if state.single is not None else state.policy_for(who)
            if policy is None:
                return []
            enforced, route = policy.enforced, policy.route
            visible = []
            for name in names:
                # Strings judged with type(): an object that claims to be one (a __class__
                # property) must not be looked up, where its own __hash__ and __eq__ run.
                plain = name if type(name) is str else _as_str(name)
                if plain is not None and (not enforced or route(plain).listed):
                    visible.append(name)
            return visible
        except _STOP:
            raise
        except BaseException as exc:
            self._failed(exc, "", state)
            return []
