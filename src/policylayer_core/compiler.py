"""From a loaded policy to the tables `decide()` reads: compile once, decide many.

For each policy (a plain document is one policy named ""):

* `Parts` per tool entry (and for `default: allow`): the entry's conditions, schema
  validator and limits, compiled once whatever the tool name;
* `Route` per tool name: a constant decision (hidden, `action: deny`, `default: deny`),
  or a `ToolProgram` whose decisions name the tool. Exact keys get their routes at
  compile time; names that only globs match get theirs on first use, in a bounded cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, replace
from fnmatch import translate
from typing import Any, TypeVar

from policylayer_core._program_codegen import Run, Specialiser, general_run
from policylayer_core._rule_parts import RuleParts, compile_rule
from policylayer_core.argument_limits import ArgumentLimits
from policylayer_core.conditions import describe_type
from policylayer_core.decision import Decision, Effect, quote_caller_text
from policylayer_core.globs import BoundedCache, GlobTable, is_glob
from policylayer_core.jsontext import pointer_join
from policylayer_core.model import Limit, Policy, Rule, RuleSet, ToolEntry
from policylayer_core.paths import parse_path
from policylayer_core.program import (
    GLOBAL,
    GRANT,
    SESSION,
    CostSource,
    LimitPlan,
    RuleCheck,
    Step,
    ToolProgram,
)
from policylayer_core.ratelimit import BucketSpec, RateLimitStore
from policylayer_core.safe_regex import CallBudget, RegexLimits, needs_time_bound
from policylayer_core.schemas import describe_violation
from policylayer_core.validators import (
    ArgumentValidator,
    compile_validator,
    schema_needs_time_bound,
)

__all__ = [
    "MAX_TOOL_NAME_LENGTH",
    "ROUTE_CACHE_CHARS",
    "ROUTE_CACHE_SIZE",
    "CompiledPolicy",
    "Route",
]

# Tool names resolved through globs or the default, remembered per policy: at most this
# many names, adding up to at most this many characters (64 characters a name on average
# before the character budget binds first).
ROUTE_CACHE_SIZE = 65_536
ROUTE_CACHE_CHARS = 4_194_304
# The longest tool name matched against hide globs, tool globs and the default. MCP tool
# names are 1-128 characters; this is eight times that. A longer name that no exact key
# names is denied at "" without looking at any glob, and never remembered, so resolving a
# name costs at most (globs + hide entries) x this many characters. Exact keys of any
# length still match (a policy author's key is trusted; the lookup is one dict.get).
MAX_TOOL_NAME_LENGTH = 1_024
_SCOPES = {"grant": GRANT, "session": SESSION, "global": GLOBAL}
_T = TypeVar("_T")  # tool names resolved through globs or the default, per policy


@dataclass(frozen=True, slots=True)
class Route:
    """How calls to one tool name are decided.

    `constant` is returned whatever the arguments (a static denial); `static` is
    returned when the arguments are None or an object (a plain allow); otherwise
    `run(route, identity, tool, args, session, approved)` decides with the program's
    generated code (`_program_codegen`), which reads this route's own `decisions` and
    the allow decision's `fields`. `steps` record how the name was resolved, for
    `explain()`.
    `listed` is false for a tool that is hidden or falls to `default: deny`, which
    tools/list leaves out. A tool with `action: deny` stays listed: the format calls it
    "visible but always denied", which is what sets it apart from `hide`.
    """

    # What every call reads comes first, next to the object's header: one or two cache
    # lines per call (depending on where the allocator puts the route), not three.
    constant: Decision | None
    static: Decision | None
    _: KW_ONLY
    run: Run = general_run
    fields: tuple[Any, ...] = ()
    program: ToolProgram | None
    steps: tuple[Step, ...]
    listed: bool = True
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True, slots=True)
class Parts:
    """What one tool entry (or the default) compiles to, independent of the tool name."""

    key: str | None
    entry_pointer: str
    on_deny: str | None
    action: str
    validator: ArgumentValidator | None
    requires: tuple[RuleParts, ...]
    deny_ifs: tuple[RuleParts, ...]
    approve_ifs: tuple[RuleParts, ...]
    limits: tuple[LimitPlan, ...]
    bounded_regex: bool = False  # a pattern may run on the time-bounded regex engine


class CompiledPolicy:
    """One policy's decision tables; `route(tool)` is the hot lookup."""

    def __init__(
        self, policy: Policy, *, name: str, prefix: str, store: RateLimitStore, enforced: bool
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.enforced = enforced and policy.mode != "shadow"
        self._store = store
        self._default = policy.default
        self._hide = tuple(policy.hide)
        # `hide` is read in file order: the first entry that matches decides.
        self._hide_matchers = tuple(
            re.compile(translate(p)).match if is_glob(p) else p.__eq__ for p in policy.hide
        )
        all_tools = policy.all_tools or RuleSet()
        self.argument_limits = ArgumentLimits.from_model(
            policy.arguments, pointer=self._ptr("arguments")
        )
        self._regex_limits = RegexLimits(max_input=self.argument_limits.max_regex_input)
        self._regex_budget = CallBudget(self._regex_limits.call_budget)
        self._specialise = Specialiser(store, self._regex_limits)
        # The walk is opt-in: a program calls it only when the section sets a size limit
        # or non_json "deny" (docs/decisions.md, "Hostile arguments").
        self._check_arguments = (
            self.argument_limits.check if self.argument_limits.enforced else None
        )
        self._all_tools_rules: dict[str, list[RuleParts]] = {}
        self._interned: dict[Any, Any] = {}
        self._parts: dict[str, Parts] = {
            key: self._compile_entry(key, entry, all_tools) for key, entry in policy.tools.items()
        }
        self._exact = {key: parts for key, parts in self._parts.items() if not is_glob(key)}
        self._globs = GlobTable((key, parts) for key, parts in self._parts.items() if is_glob(key))
        self._default_parts = self._compile_entry(None, ToolEntry(), all_tools)
        # A store that must keep the buckets of one call together (a RedisStore on a
        # cluster keeps them in one hash slot) learns which counters a call can charge.
        co_charged = getattr(store, "co_charged", None)
        if co_charged is not None:
            entries = (*self._parts.values(), self._default_parts)
            co_charged([[plan.spec for plan in parts.limits] for parts in entries])
        self._cache: BoundedCache[Route] = BoundedCache(ROUTE_CACHE_SIZE, ROUTE_CACHE_CHARS)
        self.cached = self._cache.get  # read without a lock on the hot path
        self.routes: dict[str, Route] = _packed(
            {
                name: self.resolve(name)
                for name in (*self._exact, *(p for p in self._hide if not is_glob(p)))
            }
        )

    # -- compile time ---------------------------------------------------------------

    def _ptr(self, *tokens: str | int) -> str:
        pointer = self.prefix
        for token in tokens:
            pointer = pointer_join(pointer, token)
        return pointer

    def _compile_entry(self, key: str | None, entry: ToolEntry, all_tools: RuleSet) -> Parts:
        base = self._ptr("tools", key) if key is not None else self._ptr("default")

        def rules(attr: str) -> tuple[RuleParts, ...]:
            # all_tools rules are compiled once per policy: every tool then shares their
            # closures, and so can share generated code.
            shared = self._all_tools_rules.get(attr)
            if shared is None:
                shared = self._all_tools_rules[attr] = [
                    compile_rule(self._ptr("all_tools", attr, i), r, self._regex_limits)
                    for i, r in enumerate(getattr(all_tools, attr))
                ]
            own = (
                [
                    compile_rule(f"{base}/{attr}/{i}", r, self._regex_limits)
                    for i, r in enumerate(getattr(entry, attr))
                ]
                if key is not None
                else []
            )
            return tuple(shared + own)

        validator = None
        if entry.json_schema is not None:
            validator = compile_validator(entry.json_schema, regex_limits=self._regex_limits)
        limits = [
            (self._ptr("all_tools", "limits", i), lim) for i, lim in enumerate(all_tools.limits)
        ]
        if key is not None:
            limits += [(f"{base}/limits/{i}", lim) for i, lim in enumerate(entry.limits)]
        return Parts(
            key=key,
            entry_pointer=base,
            on_deny=entry.on_deny,
            action=entry.action,
            validator=validator,
            requires=rules("require"),
            deny_ifs=rules("deny_if"),
            approve_ifs=rules("approve_if"),
            limits=self._plan_limits(limits),
            bounded_regex=_bounded_regex(entry, all_tools, key is not None),
        )

    def _plan_limits(self, limits: list[tuple[str, Limit]]) -> tuple[LimitPlan, ...]:
        # A bucket is charged once per call, with the larger cost, when all_tools and
        # the tool name the same counter.
        plans: dict[BucketSpec, tuple[str, list[CostSource]]] = {}
        for pointer, limit in limits:
            spec = BucketSpec(
                namespace=self.name,
                counter=limit.counter if limit.counter is not None else pointer,
                scope="grant" if limit.scope == "identity" else limit.scope,
                max=limit.max,
                window=limit.window_seconds,
                burst=limit.burst if limit.burst is not None else limit.max,
            )
            if isinstance(limit.cost, str):
                source = CostSource(pointer, 1, parse_path(limit.cost).steps, limit.cost)
            else:
                source = CostSource(pointer, limit.cost, None, "")
            plans.setdefault(self._shared(spec), (pointer, []))[1].append(source)
        return tuple(
            self._shared(
                LimitPlan(
                    spec,
                    pointer,
                    tuple(sources),
                    spec.label,
                    None if any(s.path for s in sources) else max(s.literal for s in sources),
                    _SCOPES[spec.scope],
                )
            )
            for spec, (pointer, sources) in plans.items()
        )

    def _shared(self, value: _T) -> _T:
        """One object for equal specs and plans: every tool that names an all_tools
        counter then touches the same (warm) objects, and memory does not grow with the
        number of tools."""
        return self._interned.setdefault(value, value)  # type: ignore[no-any-return]

    # -- routes ---------------------------------------------------------------------

    def route(self, tool: str) -> Route:
        """The route for a tool name (exact table, then cache, then resolution)."""
        return self.routes.get(tool) or self.cached(tool) or self.resolve_and_remember(tool)

    def resolve_and_remember(self, tool: str) -> Route:
        """Resolve a name that no exact key names, and remember it in the bounded cache.

        A name longer than `MAX_TOOL_NAME_LENGTH` is denied without being matched or
        remembered (see `_too_long`)."""
        if len(tool) > MAX_TOOL_NAME_LENGTH:
            return self._too_long(tool)
        return self._cache.put(tool, self.resolve(tool))

    def _too_long(self, tool: str) -> Route:
        # Made per call, not cached: remembering it would keep the name alive.
        reason = (
            f"The tool name {quote_caller_text(tool)} is {len(tool):,} characters long; names "
            f"longer than {MAX_TOOL_NAME_LENGTH:,} characters are denied unless the policy "
            "lists them exactly (MCP tool names are 1 to 128 characters); use the tool's "
            "real name."
        )
        denial = self._make(Effect.DENY, tool, "", reason)
        steps = (Step("", "tool name too long: deny", reason),)
        return Route(denial, None, program=None, steps=steps, listed=False)

    def _hide_index(self, tool: str) -> int | None:
        for index, matches in enumerate(self._hide_matchers):
            if matches(tool):
                return index
        return None

    def resolve(self, tool: str) -> Route:
        """Resolve a tool name through hide, tool keys and the default (steps 2-4)."""
        steps: list[Step] = []
        parts = self._exact.get(tool)
        if parts is not None:
            how = "matched exactly"
        else:
            matched = self._globs.match(tool)
            parts = matched[1] if matched is not None else None
            how = "matched by glob"
        on_deny = parts.on_deny if parts is not None else None
        hidden = self._hide_index(tool)
        if hidden is not None:
            pointer = self._ptr("hide", hidden)
            shown = quote_caller_text(tool)
            steps.append(Step(pointer, "hidden", f"'{self._hide[hidden]}' matches {shown}"))
            reason = on_deny or f"The tool {shown} is not available: the policy hides it."
            denial = self._make(Effect.DENY, tool, pointer, reason)
            return Route(denial, None, program=None, steps=tuple(steps), listed=False)
        if parts is None:
            pointer = self._ptr("default")
            steps.append(Step(pointer, f"no tool entry matches; default is {self._default}"))
            if self._default == "deny":
                reason = (
                    f"The tool {quote_caller_text(tool)} is not allowed: the policy allows "
                    "only the tools it lists."
                )
                denial = self._make(Effect.DENY, tool, pointer, reason)
                return Route(denial, None, program=None, steps=tuple(steps), listed=False)
            return self._program_route(self._default_parts, tool, steps)
        steps.append(Step(parts.entry_pointer, how, f"'{parts.key}'"))
        if parts.action == "deny":
            pointer = parts.entry_pointer + "/action"
            steps.append(Step(pointer, "action is deny"))
            reason = on_deny or f"The tool {quote_caller_text(tool)} is denied by the policy."
            denial = self._make(Effect.DENY, tool, pointer, reason)
            return Route(denial, None, program=None, steps=tuple(steps))
        return self._program_route(parts, tool, steps)

    def _program_route(self, parts: Parts, tool: str, steps: list[Step]) -> Route:
        program = self._instantiate(parts, tool)
        static = program.allow if program.is_static else None
        run, decisions = self._specialise(program)
        return Route(
            None,
            static,
            program=program,
            steps=tuple(steps),
            run=run,
            decisions=decisions,
            fields=program.allow._fields,
        )

    def _make(
        self, effect: Effect, tool: str, rule: str, reason: str, retry_after: float | None = None
    ) -> Decision:
        return Decision(effect, tool, rule, reason, enforced=self.enforced, retry_after=retry_after)

    def _instantiate(self, parts: Parts, tool: str) -> ToolProgram:
        # Reasons name the tool as the caller spelled it, cut to a bounded prefix: a name
        # resolved through a glob or the default is caller text, and every decision of
        # its route is remembered in the route cache.
        shown = quote_caller_text(tool)

        def make(effect: Effect, rule: str, reason: str, retry_after: float | None) -> Decision:
            return self._make(effect, tool, rule, reason, retry_after)

        def decided(rule: RuleParts, effect: Effect, generated: str) -> RuleCheck:
            reason = rule.on_deny or parts.on_deny or generated
            return RuleCheck(
                rule.pointer,
                rule.holds,
                make(effect, rule.pointer, reason, None),
                rule.summary
                if rule.label == rule.pointer
                else f"{rule.label.split(' at ')[0]}: {rule.summary}",
                rule.simple,
            )

        entry = parts.entry_pointer

        def not_object(args: Any) -> Decision:
            reason = (
                f"The arguments for {shown} must be a JSON object, but they are "
                f"{describe_type(args)}; send an object of named arguments."
            )
            return make(Effect.DENY, entry, reason, None)

        approval = None
        if parts.action == "approve":
            reason = parts.on_deny or f"Every call to {shown} needs a human's approval."
            approval = make(Effect.APPROVAL_REQUIRED, entry + "/action", reason, None)
        allowed_by = (
            f"the policy's entry '{parts.key}'"
            if parts.key is not None
            else "the policy's default (allow)"
        )
        return ToolProgram(
            tool=tool,
            entry_pointer=entry,
            make=make,
            not_object=not_object,
            check_arguments=self._check_arguments,
            validator=parts.validator,
            schema_pointer=entry + "/schema",
            violation_reason=_violation_reason(tool),
            requires=tuple(
                decided(
                    r,
                    Effect.DENY,
                    f"The call to {shown} is denied: it must meet {r.summary} (rule {r.label}).",
                )
                for r in parts.requires
            ),
            deny_ifs=tuple(
                decided(
                    r,
                    Effect.DENY,
                    f"The call to {shown} is denied because {r.summary} (rule {r.label}).",
                )
                for r in parts.deny_ifs
            ),
            approval=approval,
            approve_ifs=tuple(
                decided(
                    r,
                    Effect.APPROVAL_REQUIRED,
                    f"The call to {shown} needs a human's approval because {r.summary} "
                    f"(rule {r.label}).",
                )
                for r in parts.approve_ifs
            ),
            limits=parts.limits,
            regex_budget=self._regex_budget if parts.bounded_regex else None,
            store=self._store,
            allow=make(
                Effect.ALLOW, entry, f"The call to {shown} is allowed by {allowed_by}.", None
            ),
        )


def _packed(routes: dict[str, Route]) -> dict[str, Route]:
    """The same routes, with what a call reads of each (the route and its allow fields)
    made again side by side.

    Resolving a name allocates a dozen objects, so the routes of a large policy end up
    scattered through memory, one cache line and often one page each. With 10,000
    tools called at random, a call's cost is mostly cache misses; copies made in one
    pass sit together and miss less (about 200 ns less a call, measured).
    """
    packed = {}
    for name, route in routes.items():
        # A route and its fields tuple are both 96-byte objects, made in turn here so
        # that each pair sits side by side in one memory pool.
        fields = tuple(list(route.fields))
        packed[name] = replace(route, fields=fields)
    return packed


def _bounded_regex(entry: ToolEntry, all_tools: RuleSet, own: bool) -> bool:
    """Whether a call of the entry may run a regex on the time-bounded engine, and so
    needs a budget for the call (`safe_regex.CallBudget`); `own`: the entry's own rules
    count (not for the default)."""
    rules = [r for a in ("require", "deny_if", "approve_if") for r in getattr(all_tools, a)]
    if own:
        rules += [r for a in ("require", "deny_if", "approve_if") for r in getattr(entry, a)]
    conditions = [c for r in rules for c in (r.conditions if isinstance(r, Rule) else [r])]
    if any(c.op == "regex" and needs_time_bound(c.value) for c in conditions):
        return True
    return entry.json_schema is not None and schema_needs_time_bound(entry.json_schema)


def _violation_reason(tool: str) -> Callable[[Any], str]:
    return lambda violation: describe_violation(tool, violation)
