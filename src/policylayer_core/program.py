"""A tool's compiled rules: steps 5 to 11 of the evaluation order, as one function.

The compiler (`compiler.py`) builds one `ToolProgram` per tool entry (and one for
tools that fall to `default: allow`), with every decision that needs no state made
in advance. `run` walks only the steps the policy actually uses, in the order of
the format: arguments (and their limits), schema, require, deny_if, approval, limits, allow. With a
`trace` list it also records each step, which is how `explain()` shows its work
through the very code that decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from policylayer_core.conditions import Check, Indeterminate, describe_type
from policylayer_core.decision import Decision, Effect, quote_caller_text, quoting_values
from policylayer_core.paths import MISSING, NotJSON, ShapeMismatch, resolve
from policylayer_core.ratelimit import BucketSpec, RateLimitStore, Shortfall, StoreUnavailable
from policylayer_core.safe_regex import CallBudget, budget_open
from policylayer_core.schemas import describe_violation_for_log
from policylayer_core.validators import ArgumentValidator

__all__ = ["CostSource", "LimitPlan", "RuleCheck", "Step", "ToolProgram", "read_cost"]

_EMPTY: dict[str, Any] = {}

# The policy's argument limits: (pointer of the broken limit, reason), or None.
ArgumentCheck = Callable[[Any], "tuple[str, str] | None"]

# Builds a decision in the policy's mode: (effect, rule pointer, reason, retry_after).
DecisionMaker = Callable[[Effect, str, str, "float | None"], Decision]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of an explanation: where in the policy, what happened, and a detail."""

    pointer: str
    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.pointer or '(root)'}: {self.outcome}{detail}"


Trace = list[Step] | None


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """A compiled rule: its pointer, its conditions as one check, and its verdict.

    `holds` is None for a rule with no conditions, which always holds. `simple` is
    `(key, op, value)` when the rule is one condition on `args.KEY`, the shape the
    program generator (`_program_codegen.py`) writes inline.
    """

    pointer: str
    holds: Check | None
    decision: Decision
    summary: str
    simple: tuple[str, str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CostSource:
    """Where one limit of the call gets its cost: a literal, or an `args.` path."""

    pointer: str
    literal: int
    path: tuple[str, ...] | None
    path_text: str


GRANT, SESSION, GLOBAL = 0, 1, 2  # LimitPlan.scope: how the bucket key is made


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """One bucket a call charges; `sources` has two entries when all_tools and the tool share it.

    `fixed_cost` is the cost when every source is a literal (None when one reads the
    arguments), and `scope` is GRANT, SESSION or GLOBAL: both settled at compile time
    so a call does not work them out again.
    """

    spec: BucketSpec
    pointer: str
    sources: tuple[CostSource, ...]
    label: str
    fixed_cost: int | None
    scope: int

    def cost(self, args: dict[str, Any], tool: str) -> int:
        """The tokens this call takes from the bucket (the larger, when two sources share it)."""
        if self.fixed_cost is not None:
            return self.fixed_cost
        sources = self.sources
        if len(sources) == 1:
            return read_cost(sources[0], args, tool)
        return max(read_cost(source, args, tool) for source in sources)

    def key(self, identity: str, session: str | None) -> Hashable:
        """The bucket's scope key: the identity, the identity and session, or None."""
        scope = self.scope
        if scope == GRANT:
            return identity
        return (identity, session) if scope == SESSION else None


def read_cost(source: CostSource, args: dict[str, Any], tool: str) -> int:
    """The tokens one cost source asks for; raise Indeterminate for an unusable value."""
    path = source.path
    if path is None:
        return source.literal
    if len(path) == 1:  # `args.tasks`, the common shape: one key, nothing to walk
        value = args.get(path[0], MISSING)
        if type(value) is list or type(value) is str:
            return len(value)
        found = [] if value is MISSING else [value]
    else:
        found = []
        try:
            resolve(args, path, 0, source.path_text, found)
        except ShapeMismatch as mismatch:
            needs = "" if type(mismatch) is NotJSON else f" where it needs {mismatch.needed}"
            raise Indeterminate(
                source.pointer,
                f"The cost of calling {quote_caller_text(tool)} is read from {source.path_text}, "
                "but that path "
                f"meets {describe_type(mismatch.found)}{needs}, so the call is denied to stay "
                "safe.",
            ) from None
    if not found:
        return 1  # a cost path that does not resolve costs 1
    value = found[0]
    # Exact types, read with type(): a subclass may redefine len() or int(), and an object
    # may claim any class through a `__class__` property, which isinstance believes.
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return len(value)
    if kind is int and value >= 0:
        return int(value)
    if kind is float and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    raise Indeterminate(
        source.pointer,
        f"The cost of calling {quote_caller_text(tool)} is read from {source.path_text}, which is "
        f"{describe_type(value)}; it must be a non-negative whole number or a string, array or "
        "object, so the call is denied to stay safe.",
    )


class ToolProgram:
    """Everything the policy says about one tool, compiled; `run` decides a call."""

    __slots__ = (
        "allow",
        "approval",
        "approve_ifs",
        "check_arguments",
        "deny_ifs",
        "entry_pointer",
        "limits",
        "make",
        "not_object",
        "regex_budget",
        "requires",
        "schema_pointer",
        "store",
        "take_one",
        "tool",
        "validator",
        "violation_reason",
    )

    def __init__(
        self,
        *,
        tool: str,
        entry_pointer: str,
        make: DecisionMaker,
        not_object: Callable[[Any], Decision],
        check_arguments: ArgumentCheck | None = None,
        validator: ArgumentValidator | None,
        schema_pointer: str,
        violation_reason: Callable[[Any], str],
        requires: tuple[RuleCheck, ...],
        deny_ifs: tuple[RuleCheck, ...],
        approval: Decision | None,
        approve_ifs: tuple[RuleCheck, ...],
        limits: tuple[LimitPlan, ...],
        store: RateLimitStore,
        allow: Decision,
        regex_budget: CallBudget | None = None,
    ) -> None:
        self.tool = tool
        self.entry_pointer = entry_pointer
        self.make = make
        self.not_object = not_object
        self.check_arguments = check_arguments
        self.validator = validator
        self.schema_pointer = schema_pointer
        self.violation_reason = violation_reason
        self.requires = requires
        self.deny_ifs = deny_ifs
        self.approval = approval
        self.approve_ifs = approve_ifs
        self.limits = limits
        self.store = store
        self.allow = allow
        # Set when a pattern of this tool may run on the time-bounded regex engine: each
        # call then runs within one budget of regex time (`safe_regex.CallBudget`).
        self.regex_budget = regex_budget
        # A store may offer a cheaper path for the common single-bucket call; with a
        # literal cost that fits the bucket, nothing about the charge depends on the call
        # but its key.
        take_one = getattr(store, "take_one", None)
        single = limits[0] if len(limits) == 1 else None
        self.take_one = (
            take_one
            if single is not None
            and single.fixed_cost is not None
            and 0 < single.fixed_cost <= single.spec.burst
            else None
        )

    @property
    def is_static(self) -> bool:
        """True when nothing but the arguments' type decides (a plain allow)."""
        return not (
            self.check_arguments
            or self.validator
            or self.requires
            or self.deny_ifs
            or self.approval
            or self.approve_ifs
            or self.limits
        )

    def run(  # noqa: PLR0917 - the hot path: one function, positional arguments
        self,
        identity: str,
        args: Any,
        session: str | None,
        approved: bool,
        trace: Trace = None,
        dry: bool = False,
    ) -> Decision:
        """Decide one call to this tool (steps 5-11); never raises for caller input."""
        if self.regex_budget is not None and not budget_open():
            return self.regex_budget.run(self.run, identity, args, session, approved, trace, dry)
        tool = self.tool
        if args is None:
            args = _EMPTY
        elif type(args) is not dict:
            args = self._as_object(args, trace)
            if type(args) is Decision:
                return args
        try:
            if self.check_arguments is not None:
                denied = self._break_limits(args, trace)
                if denied is not None:
                    return denied
            if self.validator is not None:
                violation = self.validator(args)
                if violation is not None:
                    if trace is not None:
                        trace.append(
                            Step(self.schema_pointer, "failed", "the arguments do not match")
                        )
                    denial = self.make(
                        Effect.DENY, self.schema_pointer, self.violation_reason(violation), None
                    )
                    # The reason quotes the caller's value; the audit log gets it without.
                    return quoting_values(denial, describe_violation_for_log(tool, violation))
                if trace is not None:
                    trace.append(
                        Step(self.schema_pointer, "passed", "the arguments match the schema")
                    )
            for rule in self.requires:
                if rule.holds is not None and not rule.holds(identity, tool, args, session):
                    if trace is not None:
                        trace.append(Step(rule.pointer, "did not hold", rule.summary))
                    return rule.decision
                if trace is not None:
                    trace.append(Step(rule.pointer, "held", rule.summary))
            for rule in self.deny_ifs:
                if rule.holds is None or rule.holds(identity, tool, args, session):
                    if trace is not None:
                        trace.append(Step(rule.pointer, "held: deny", rule.summary))
                    return rule.decision
                if trace is not None:
                    trace.append(Step(rule.pointer, "did not hold", rule.summary))
            if self.approval is not None or self.approve_ifs:
                needed = self._approval_step(identity, args, session, approved, trace)
                if needed is not None:
                    return needed
            if self.limits:
                return self._charge(identity, args, session, trace, dry)
        except Indeterminate as unknown:
            if trace is not None:
                trace.append(Step(unknown.pointer, "indeterminate: deny", unknown.reason))
            return self.make(Effect.DENY, unknown.pointer, unknown.reason, None)
        except RecursionError:
            # Arguments nested deeper than Python can walk (an agent can send 10,000
            # levels): not a bug in the engine, a call that cannot be judged.
            reason = (
                f"The arguments for {quote_caller_text(self.tool)} are nested too deeply to "
                "check, so the call "
                "is denied to stay safe; send flatter arguments."
            )
            if trace is not None:
                trace.append(Step(self.entry_pointer, "too deep: deny", reason))
            return self.make(Effect.DENY, self.entry_pointer, reason, None)
        if trace is not None:
            trace.append(Step(self.allow.rule, "allow"))
        return self.allow

    def _approval_step(
        self, identity: str, args: dict[str, Any], session: str | None, approved: Any, trace: Trace
    ) -> Decision | None:
        """Step 9: the decision when the call needs approval it has not been given.

        Only `approved is True` approves; `False` asks; anything else is a misuse, denied.
        """
        if approved is True:
            if trace is not None:
                trace.append(Step(self.entry_pointer, "approval given", "approved=True"))
            return None
        if approved is not False:
            return self._misused_approval(approved, trace)
        if self.approval is not None:
            if trace is not None:
                trace.append(Step(self.approval.rule, "approval required", "every call"))
            return self.approval
        tool = self.tool
        for rule in self.approve_ifs:
            if rule.holds is None or rule.holds(identity, tool, args, session):
                if trace is not None:
                    trace.append(Step(rule.pointer, "held: approval required", rule.summary))
                return rule.decision
            if trace is not None:
                trace.append(Step(rule.pointer, "did not hold", rule.summary))
        return None

    def _as_object(self, args: Any, trace: Trace) -> Any:
        """The arguments as a plain dict, or the denial when they are not an object."""
        if not issubclass(type(args), dict):
            if trace is not None:
                trace.append(Step(self.entry_pointer, "denied", "the arguments are not an object"))
            return self.not_object(args)
        # A dict subclass may redefine get(), [], iter(), keys() or items() to answer
        # each rule differently: judge a plain dict of what it holds. `dict.items` is a
        # view of the storage itself; `dict.copy` and `dict(args)` are not safe, CPython
        # reads a subclass that redefines `__iter__` through its `keys()` and `[]`.
        plain = dict(dict.items(args))
        if len(plain) != dict.__len__(args):
            # Two stored keys became one in the copy: keys whose own __eq__ or __hash__
            # answer differently from one call to the next. Such arguments have no one
            # reading.
            reason = (
                f"The arguments for {quote_caller_text(self.tool)} hold keys that do not compare "
                "consistently "
                "(Python objects with their own equality), so the call is denied to stay "
                "safe; send an object whose keys are plain strings."
            )
            if trace is not None:
                trace.append(Step(self.entry_pointer, "denied", reason))
            return self.make(Effect.DENY, self.entry_pointer, reason, None)
        return plain

    def _misused_approval(self, approved: Any, trace: Trace) -> Decision:
        """The denial when `approved` is not a bool: a misuse that must never approve.

        Reached only on a call whose tool needs approval and whose `approved` is neither
        True nor False, so the common path pays one identity test.
        """
        reason = (
            f"approved must be the boolean True (a person approved this call) or False, but "
            f"it is {describe_type(approved)}, so the call to {quote_caller_text(self.tool)} is "
            "denied at its "
            "approval step to stay safe; pass approved=True only for a call a person approved."
        )
        if trace is not None:
            trace.append(Step("", "approved is not a boolean: deny", reason))
        return self.make(Effect.DENY, "", reason, None)

    def _break_limits(self, args: dict[str, Any], trace: Trace) -> Decision | None:
        """The denial when the arguments break the policy's argument limits."""
        assert self.check_arguments is not None
        failed = self.check_arguments(args)
        if failed is None:
            return None
        pointer, reason = failed
        if trace is not None:
            trace.append(Step(pointer, "denied", reason))
        return self.make(Effect.DENY, pointer, reason, None)

    def _charge(
        self, identity: str, args: dict[str, Any], session: str | None, trace: Trace, dry: bool
    ) -> Decision:
        take_one = self.take_one
        if take_one is not None and not dry:
            # One bucket, a literal cost, no trace: the hot path of a limited tool.
            plan = self.limits[0]
            scope = plan.scope
            key = identity if scope == GRANT else plan.key(identity, session)
            try:
                outcome = take_one(plan.spec, key, plan.fixed_cost)
            except StoreUnavailable as down:
                return self.store_down(down, plan, None)
            if outcome.__class__ is not Shortfall:
                return self.allow.with_receipt(self.store, outcome)
        charges: list[tuple[BucketSpec, Hashable, int]] = []
        plans: list[LimitPlan] = []
        for plan in self.limits:
            spec = plan.spec
            cost = plan.cost(args, self.tool)
            if cost > spec.burst:
                reason = (
                    f"The call to {quote_caller_text(self.tool)} costs {cost} tokens, more than "
                    f"the {spec.burst} "
                    f"that the limit '{spec.counter}' can ever hold, so it can never pass; "
                    "make the call smaller."
                )
                if trace is not None:
                    trace.append(Step(plan.pointer, "denied: cost above burst", reason))
                return self.make(Effect.DENY, plan.pointer, reason, None)
            if cost:
                charges.append((spec, plan.key(identity, session), cost))
                plans.append(plan)
        if not charges:
            return self.allow
        store = self.store
        try:
            outcome = store.check(charges) if dry else store.take(charges)
        except StoreUnavailable as down:
            return self.store_down(down, plans[0], trace)
        if isinstance(outcome, Shortfall):
            return self.limited(outcome, plans, trace)
        if trace is not None:
            for plan in plans:
                trace.append(Step(plan.pointer, "has room", plan.label))
            trace.append(Step(self.allow.rule, "allow"))
        if outcome is None:
            return self.allow
        return self.allow.with_receipt(store, outcome)

    def limited(
        self, shortfall: Shortfall, plans: Sequence[LimitPlan], trace: Trace = None
    ) -> Decision:
        """The RATE_LIMITED decision for `shortfall`, whose index counts in `plans`."""
        plan = plans[shortfall.index]
        wait = shortfall.retry_after
        shown = f"{wait:.1f} s" if wait >= 0.1 else f"{wait * 1000:.0f} ms"
        reason = f"Rate limit '{plan.spec.counter}' ({plan.label}) exceeded; retry in {shown}."
        if trace is not None:
            trace.append(Step(plan.pointer, "rate limited", reason))
        return self.make(Effect.RATE_LIMITED, plan.pointer, reason, wait)

    def store_down(self, down: StoreUnavailable, plan: LimitPlan, trace: Trace = None) -> Decision:
        """The decision when the rate-limit store cannot answer: the store's failure policy."""
        if down.fail_open:
            reason = (
                f"The call to {quote_caller_text(self.tool)} is allowed without counting it: the "
                "rate-limit "
                f"store is unavailable ({down}) and is set to fail open."
            )
            effect = Effect.ALLOW
        else:
            reason = (
                f"The call to {quote_caller_text(self.tool)} is denied because the rate-limit "
                "store is "
                f"unavailable ({down}); try again shortly."
            )
            effect = Effect.DENY
        if trace is not None:
            trace.append(Step(plan.pointer, f"store unavailable: {effect.value}", reason))
        return self.make(effect, plan.pointer, reason, None)
