"""A tool program written out as one Python function: the allow path without detours.

`ToolProgram.run` walks tuples of rules, calling a closure per rule and testing for a
trace at every step. That is the general path, and it stays the reference: `explain()`
uses it, and so does every call the generated function is not sure about. What this
module writes is the common case only, for one program's exact shape, with the rules
unrolled, the simplest conditions inline and the charge made directly on the store (for
a MemoryStore, written into the function itself: see `_memory_take`):

* every step that passes continues; a rule that holds returns its constant decision;
* anything unusual (arguments that are not a plain dict, a value of a type the inline
  test does not cover, a failing schema, an odd cost, any exception) hands the call to
  `ToolProgram.run`, which decides it from the start. Every step before the charge is
  pure, so deciding again gives the answer the general path gives;
* nothing is handed over once tokens may have been taken.

The source depends only on the program's shape, so one `exec` serves every tool of
the same shape. The values it uses (closures, literals, bucket specs) are arguments
of a factory; tools whose values are the same objects share one function, and what
belongs to one tool (its decisions, its program) is read from the `Route` passed in.
With 10,000 tools that matters more than any bytecode: a call touches the route and
the allow decision's fields, not a function, closure and cells of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Any

from policylayer_core._memory_take import MemoryTakes, pair_shortfall, write_pair, write_single
from policylayer_core.decision import Decision, _Taken
from policylayer_core.paths import MISSING
from policylayer_core.program import GLOBAL, GRANT, LimitPlan, RuleCheck, ToolProgram
from policylayer_core.ratelimit import MemoryStore, Shortfall, StoreUnavailable
from policylayer_core.safe_regex import DEFAULT_REGEX_LIMITS, RegexLimits, compile_search

__all__ = ["Run", "Specialiser", "general_run"]


# run(route, identity, tool, args, session, approved) -> Decision
Run = Callable[[Any, str, str, Any, "str | None", bool], Decision]


def general_run(  # noqa: PLR0917 - the signature of every generated run
    route: Any, identity: str, tool: str, args: Any, session: str | None, approved: bool
) -> Decision:
    """The run of a program with no generated code: `ToolProgram.run`."""
    program: ToolProgram = route.program
    return program.run(identity, args, session, approved)


_EMPTY: dict[str, Any] = {}

# The exact classes each inline test covers; any other value goes to the general path,
# which judges it (or finds it indeterminate). `type(x)`, never `x.__class__`: an object
# can define `__class__` as a property and claim to be a str.
_STRING = "type(x) is str"
_SIZED = "(type(x) is list or type(x) is str or type(x) is dict)"


def _inline_test(op: str, value: Any, regex_limits: RegexLimits) -> tuple[str, str, Any] | None:
    """(type guard, test, constant) for `args.KEY op value`, or None to call the closure.

    The test reads the argument as `x` and the policy's value as `V`; within the guard
    it gives the same verdict as `conditions.compile_condition`.
    """
    if op in ("eq", "neq") and type(value) is str:
        return _STRING, "x == V" if op == "eq" else "x != V", value
    if op in ("in", "not_in") and isinstance(value, list) and all(type(v) is str for v in value):
        return _STRING, "x in V" if op == "in" else "x not in V", frozenset(value)
    if op == "regex" and type(value) is str:
        # the bounded matcher conditions use (the same object: compile_search is cached);
        # RegexRefused goes to the general path, which words the indeterminate reason
        return _STRING, "V(x)", compile_search(value, regex_limits)
    if op == "starts_with" and type(value) is str:
        return _STRING, "x.startswith(V)", value
    if op == "ends_with" and type(value) is str:
        return _STRING, "x.endswith(V)", value
    comparisons = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
    if op in ("lt", "lte", "gt", "gte") and type(value) in (int, float):
        # ints only: a float argument may be NaN, which the general path calls indeterminate
        return "type(x) is int", f"x {comparisons[op]} V", value
    lengths = {"len_gt": ">", "len_gte": ">=", "len_lt": "<", "len_lte": "<=", "len_eq": "=="}
    if op in lengths and type(value) is int:
        return _SIZED, f"len(x) {lengths[op]} V", value
    return None


class _Writer:
    """Source lines, the shared values they name (k0, k1, ...) and the tool's own
    decisions they return (route.decisions[i]), in order."""

    def __init__(self, regex_limits: RegexLimits) -> None:
        self.regex_limits = regex_limits
        self.lines: list[str] = []
        self.values: list[Any] = []
        self.decisions: list[Decision] = []

    def const(self, value: Any) -> str:
        self.values.append(value)
        return f"k{len(self.values) - 1}"

    def decision(self, decision: Decision) -> str:
        self.decisions.append(decision)
        return f"route.decisions[{len(self.decisions) - 1}]"

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


_AGAIN = "return route.program.run(identity, args, session, approved)"


def _rules(w: _Writer, rules: tuple[RuleCheck, ...], *, holds_denies: bool, depth: int) -> None:
    """Write `require` rules (holds_denies False: a rule that does not hold decides) or
    `deny_if`/`approve_if` rules (holds_denies True: a rule that holds decides)."""
    for rule in rules:
        if rule.holds is None:
            if holds_denies:
                w.line(depth, f"return {w.decision(rule.decision)}")
                return  # nothing after an unconditional rule can run
            continue  # a require with no conditions always holds
        decision = w.decision(rule.decision)
        inline = (
            _inline_test(rule.simple[1], rule.simple[2], w.regex_limits) if rule.simple else None
        )
        if inline is None:
            check = w.const(rule.holds)
            negate = "" if holds_denies else "not "
            w.line(depth, f"if {negate}{check}(identity, tool, args, session):")
            w.line(depth + 1, f"return {decision}")
            continue
        assert rule.simple is not None
        guard, test, value = inline
        key, v = w.const(rule.simple[0]), w.const(value)
        w.line(depth, f"x = args.get({key}, MISSING)")
        w.line(depth, f"if {guard}:")
        w.line(depth + 1, f"if {'' if holds_denies else 'not '}({test.replace('V', v)}):")
        w.line(depth + 2, f"return {decision}")
        # An absent argument: the condition is false. Anything else: the general path.
        if holds_denies:
            w.line(depth, "elif x is not MISSING:")
        else:
            w.line(depth, "else:")
        w.line(depth + 1, _AGAIN)


def _costs(w: _Writer, program: ToolProgram, depth: int) -> list[str] | None:
    """Write each limit's cost into c0, c1, ...; None when one has no inline form."""
    names = []
    for index, plan in enumerate(program.limits):
        name = f"c{index}"
        burst = plan.spec.burst
        if plan.fixed_cost is not None:
            if not 0 < plan.fixed_cost <= burst:
                return None  # free or impossible: the general path says so
            names.append(str(plan.fixed_cost))  # an int literal, written into the source
            continue
        if len(plan.sources) != 1:
            return None
        path = plan.sources[0].path
        if path is None or len(path) != 1 or not isinstance(path[0], str) or path[0] == "*":
            return None
        w.line(depth, f"x = args.get({w.const(path[0])}, MISSING)")
        w.line(depth, "if type(x) is list or type(x) is str:")
        w.line(depth + 1, f"{name} = len(x)")
        w.line(depth + 1, f"if {name} == 0 or {name} > {w.const(burst)}:")
        w.line(depth + 2, _AGAIN)
        w.line(depth, "else:")
        w.line(depth + 1, _AGAIN)
        names.append(name)
    return names


def _scope_key(w: _Writer, plan: LimitPlan) -> str:
    """The expression of the plan's bucket key (the session key made once, up front)."""
    if plan.scope == GRANT:
        return "identity"
    if plan.scope == GLOBAL:
        return "None"
    w.line(1, "session_key = (identity, session)")
    return "session_key"


def _charge(w: _Writer, program: ToolProgram, costs: list[str], store: StoreMethods) -> None:
    """Write the take and what follows it; nothing here hands the call over.

    The limit plans are read from the route, not bound into the function: they differ
    per tool (each carries its pointer), and a value of its own would stop a tool
    sharing its function. Only the denial paths read them.
    """
    plans = program.limits
    distinct = len({plan.spec.uid for plan in plans}) == len(plans)
    memory = store.memory
    if memory is not None and len(plans) <= 2 and distinct and plans[0].fixed_cost is not None:
        _charge_memory(w, plans, costs, memory)
    else:
        _charge_store(w, program, costs, store)


def _charge_memory(
    w: _Writer, plans: tuple[LimitPlan, ...], costs: list[str], memory: MemoryTakes
) -> None:
    """The take written inline (`_memory_take`), then the allow that can refund it."""
    keys = [_scope_key(w, plan) for plan in plans]
    first, cost = plans[0].spec, plans[0].fixed_cost
    assert cost is not None
    if len(plans) == 1:
        refunder, payload = write_single(w, memory, spec=first, cost=cost, key=keys[0], depth=1)
    else:
        refunder, payload = write_pair(
            w,
            memory,
            first=first,
            cost=cost,
            second=plans[1].spec,
            keys=(keys[0], keys[1]),
            cost2=costs[1],
            depth=1,
        )
    w.line(1, "if out is not None:")
    w.line(2, "return route.program.limited(out, route.program.limits)")
    w.line(1, "d = Taken()")
    w.line(1, "d._fields = route.fields")
    w.line(1, f"d._refund = {payload}")
    w.line(1, f"d._refunder = {refunder}")
    w.line(1, "return d")


def _charge_store(w: _Writer, program: ToolProgram, costs: list[str], store: StoreMethods) -> None:
    """A call of the store's take, then the allow that carries its receipt."""
    charges = [
        f"({w.const(plan.spec)}, {_scope_key(w, plan)}, {cost})"
        for plan, cost in zip(program.limits, costs, strict=True)
    ]
    if len(charges) == 1 and store.take_one is not None:
        call = f"{w.const(store.take_one)}({charges[0][1:-1]})"
    else:
        call = f"{w.const(store.take)}([{', '.join(charges)}])"
    w.line(1, "try:")
    w.line(2, f"out = {call}")
    w.line(1, "except StoreUnavailable as down:")
    w.line(2, "return route.program.store_down(down, route.program.limits[0])")
    w.line(1, "if out.__class__ is Shortfall:")
    w.line(2, "return route.program.limited(out, route.program.limits)")
    w.line(1, "if out is None:")
    w.line(2, f"return {w.decision(program.allow)}")
    # allow.with_receipt(store, receipt), without the method call
    w.line(1, "d = Taken()")
    w.line(1, "d._fields = route.fields")
    w.line(1, f"d._refund = ({w.const(store.store)}, out)")
    w.line(1, "return d")


class StoreMethods:
    """A store's take methods for generated code, each looked up once per compiled
    policy: tools share generated code only when the values it uses are the same
    objects (and a bound method is a new object at every lookup)."""

    __slots__ = ("memory", "store", "take", "take_one")

    def __init__(self, store: Any) -> None:
        self.store = store
        self.take = store.take
        self.take_one = getattr(store, "take_one", None)
        # Only the store whose internals _memory_take knows, not a subclass of it.
        self.memory = MemoryTakes(store) if type(store) is MemoryStore else None


def _source(
    program: ToolProgram, store: StoreMethods, regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS
) -> tuple[str, list[Any], list[Decision]] | None:
    w = _Writer(regex_limits)
    w.line(1, "try:")
    opened = len(w.lines)
    if program.check_arguments is not None:
        w.line(2, f"if {w.const(program.check_arguments)}(args) is not None:")
        w.line(3, _AGAIN)
    if program.validator is not None:
        w.line(2, f"if {w.const(program.validator)}(args) is not None:")
        w.line(3, _AGAIN)
    _rules(w, program.requires, holds_denies=False, depth=2)
    _rules(w, program.deny_ifs, holds_denies=True, depth=2)
    if program.approval is not None or program.approve_ifs:
        # Only `True` approves. Anything else but `False` ("false", 1, [False]) is a
        # misuse the general path denies with a reason. One identity test for the
        # common call (False), as cheap as the truth test it replaces.
        w.line(2, "if approved is False:")
        if program.approval is not None:
            w.line(3, f"return {w.decision(program.approval)}")
        else:
            _rules(w, program.approve_ifs, holds_denies=True, depth=3)
        w.line(2, "elif approved is not True:")
        w.line(3, _AGAIN)
    costs = _costs(w, program, depth=2) if program.limits else []
    if costs is None:
        return None
    if len(w.lines) == opened:
        w.lines.pop()  # nothing before the charge can fail: no try
    else:
        w.line(1, "except Exception:")
        w.line(2, _AGAIN)
    if program.limits:
        _charge(w, program, costs, store)
    else:
        w.line(1, f"return {w.decision(program.allow)}")
    params = ", ".join(f"k{i}" for i in range(len(w.values)))
    head = [
        f"def factory({params}):",
        "    def run(route, identity, tool, args, session, approved):",
        "        if type(args) is not dict:",
        "            if args is not None:",
        "                return route.program.run(identity, args, session, approved)",
        "            args = EMPTY",
    ]
    body = ["    " + line for line in w.lines]
    return "\n".join([*head, *body, "    return run"]) + "\n", w.values, w.decisions


@lru_cache(maxsize=256)
def _factory(source: str) -> Callable[..., Run]:
    namespace: dict[str, Any] = {
        "EMPTY": _EMPTY,
        "MISSING": MISSING,
        "Shortfall": Shortfall,
        "StoreUnavailable": StoreUnavailable,
        "Taken": _Taken,
        "pair_shortfall": pair_shortfall,
    }
    exec(compile(source, "<policylayer program>", "exec"), namespace)
    factory: Callable[..., Run] = namespace["factory"]
    return factory


def _identity(value: Any) -> Hashable:
    """How the sharing cache tells values apart: by type and value where both are
    immutable, else by object (the cached function keeps the object alive)."""
    if isinstance(value, str | int | float | frozenset):
        return (type(value), value)
    return id(value)


class Specialiser:
    """Generated runs for the programs of one compiled policy, shared where possible.

    Its cache is keyed by program shape and values, which come from the policy, not
    from callers: tools resolved through globs or the default reuse their entry's.
    """

    def __init__(self, store: Any, regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS) -> None:
        self._store = StoreMethods(store)
        self._regex_limits = regex_limits
        self._shared: dict[tuple[Hashable, ...], Run] = {}

    def __call__(self, program: ToolProgram) -> tuple[Run, tuple[Decision, ...]]:
        """The run for `program` and the decisions its route must carry."""
        if program.is_static:
            return general_run, ()
        if program.regex_budget is not None:
            # A regex may run on the time-bounded engine: the general path decides in one
            # pass within the call's budget. Generated code would hand a refusal over to
            # the general path, which would spend the budget again from the start.
            return general_run, ()
        written = _source(program, self._store, self._regex_limits)
        if written is None:
            return general_run, ()
        source, values, decisions = written
        key = (source, *(_identity(v) for v in values))
        run = self._shared.get(key)
        if run is None:
            run = self._shared[key] = _factory(source)(*values)
        return run, tuple(decisions)
