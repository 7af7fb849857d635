"""Peers on the nearest equivalent job, with the same inputs as our rows.

* cedarpy `is_authorized` with a pre-parsed `PolicySet` and `Entities` (cedarpy >= 4
  has both handles): the static rows of the qflow policy written in Cedar, one
  request each for an allow, a forbid and a call no permit matches (default deny).
* pycasbin `enforce`: RBAC with `keyMatch` objects (alice has the role agent; agent
  may call the qflow tools, `qflow_spec_*` as a glob).
* limits `hit` with MemoryStorage: FixedWindow 10^9 a minute on the key
  (writes, alice), never exhausted, as our one-limit row; MovingWindow with the
  real 30 a minute, the keys walking over as many callers as the scale rows so
  that every hit is allowed (a moving window of 10^9 would keep 10^9 entries).
* pyrate-limiter `try_acquire(name, 1, False)`: an InMemoryBucket (a log of items,
  10^9 a minute, one bucket for every name) and its token bucket (GCRA state in an
  InMemoryStateStore, 30 a minute with a burst of 10^9, keyed by name).
* "peer stack": the realistic call done with peers, i.e. fastjsonschema for the
  schema, the same require / deny_if / approve_if checks written inline in Python,
  and two limits FixedWindow hits (calls, then writes with cost len(tasks)); unlike
  ours, the two hits are not all-or-nothing.
"""

from __future__ import annotations

from typing import Any

from benchmarks import policies
from benchmarks.harness import Case, Feed, Shape
from benchmarks.suite import Row, Sizes, optional

__all__ = [
    "CASBIN",
    "CEDAR_ALLOW",
    "CEDAR_FORBID",
    "CEDAR_NO_MATCH",
    "LIMITS_FIXED",
    "LIMITS_MOVING",
    "PEER_STACK",
    "PYRATE_BUCKET",
    "PYRATE_TOKEN",
    "peer_rows",
]

CEDAR_ALLOW = "peer.cedar_allow"
CEDAR_FORBID = "peer.cedar_forbid"
CEDAR_NO_MATCH = "peer.cedar_no_match"
CASBIN = "peer.casbin"
LIMITS_FIXED = "peer.limits_fixed"
LIMITS_MOVING = "peer.limits_moving"
PYRATE_BUCKET = "peer.pyrate_bucket"
PYRATE_TOKEN = "peer.pyrate_token"
PEER_STACK = "peer.stack"

NAMES = {
    CEDAR_ALLOW: "cedarpy is_authorized, pre-parsed (permit)",
    CEDAR_FORBID: "cedarpy is_authorized, pre-parsed (forbid)",
    CEDAR_NO_MATCH: "cedarpy is_authorized, pre-parsed (no permit: deny)",
    CASBIN: "pycasbin enforce (RBAC + keyMatch)",
    LIMITS_FIXED: "limits FixedWindow hit (memory)",
    LIMITS_MOVING: "limits MovingWindow hit (memory)",
    PYRATE_BUCKET: "pyrate-limiter try_acquire (InMemoryBucket)",
    PYRATE_TOKEN: "pyrate-limiter try_acquire (token bucket)",
    PEER_STACK: "peer stack: fastjsonschema + checks + 2 limits hits",
}

# The tools of examples/qflow-policy.json that a call may reach without conditions.
_QFLOW_TOOLS = [
    "qflow_task_next",
    "qflow_task_list",
    "qflow_task_get",
    "qflow_task_tree",
    "qflow_what_next",
    "qflow_task_create",
    "qflow_task_batch",
    "qflow_spec_status",
    "qflow_workspace",
]

_CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act
"""


def _is(expected: Any) -> Any:
    def check(result: Any) -> str | None:
        return None if result == expected else f"expected {expected!r}, got {result!r}"

    return check


def _cedar_allowed(expected: bool) -> Any:
    def check(result: Any) -> str | None:
        allowed = getattr(result, "allowed", None)
        return None if allowed is expected else f"expected allowed={expected}, got {result!r}"

    return check


def _cedar() -> list[Case]:
    import cedarpy  # noqa: PLC0415 - optional peer

    text = "\n".join(
        f'permit(principal, action == Action::"call", resource == Tool::"{tool}");'
        for tool in _QFLOW_TOOLS
    )
    text += '\nforbid(principal, action == Action::"call", resource == Tool::"qflow_task_delete");'
    text += '\nforbid(principal, action == Action::"call", resource == Tool::"qflow_task_purge");'
    policy_set = cedarpy.PolicySet.from_str(text)
    entities = cedarpy.Entities.from_json_str("[]")

    def request(tool: str) -> dict[str, Any]:
        return {
            "principal": f'User::"{policies.IDENTITY}"',
            "action": 'Action::"call"',
            "resource": f'Tool::"{tool}"',
            "context": {},
        }

    decide = cedarpy.is_authorized
    return [
        Case(CEDAR_ALLOW, NAMES[CEDAR_ALLOW], decide, Shape.CALL3,
             Feed.const(request("qflow_task_get")), (policy_set, entities),
             _cedar_allowed(True), group="peer"),
        Case(CEDAR_FORBID, NAMES[CEDAR_FORBID], decide, Shape.CALL3,
             Feed.const(request("qflow_task_delete")), (policy_set, entities),
             _cedar_allowed(False), group="peer"),
        Case(CEDAR_NO_MATCH, NAMES[CEDAR_NO_MATCH], decide, Shape.CALL3,
             Feed.const(request("qflow_unknown_tool")), (policy_set, entities),
             _cedar_allowed(False), group="peer"),
    ]  # fmt: skip


def _casbin() -> list[Case]:
    import casbin  # type: ignore[import-untyped]  # noqa: PLC0415 - optional peer

    model = casbin.model.Model()
    model.load_model_from_text(_CASBIN_MODEL)
    enforcer = casbin.Enforcer(model)
    for tool in [*_QFLOW_TOOLS, "qflow_spec_*"]:
        enforcer.add_policy("agent", tool, "call")
    enforcer.add_grouping_policy(policies.IDENTITY, "agent")
    return [
        Case(CASBIN, NAMES[CASBIN], enforcer.enforce, Shape.CALL3,
             Feed.const(policies.IDENTITY), ("qflow_task_get", "call"), _is(True),
             group="peer"),
    ]  # fmt: skip


def _limits(sizes: Sizes) -> list[Case]:
    from limits import (  # noqa: PLC0415 - optional peer
        RateLimitItemPerMinute,
        storage,
        strategies,
    )

    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    big = RateLimitItemPerMinute(policies.BENCH_BURST)
    real = RateLimitItemPerMinute(30)
    callers = [f"user-{i:06d}" for i in range(max(sizes.identities, 1000))]
    return [
        Case(LIMITS_FIXED, NAMES[LIMITS_FIXED], fixed.hit, Shape.CALL3,
             Feed.const(big), ("writes", policies.IDENTITY), _is(True), group="peer"),
        Case(LIMITS_MOVING, NAMES[LIMITS_MOVING], moving.hit, Shape.PAIRS3,
             Feed.walk([(real, who) for who in callers]), ("writes",), _is(True),
             group="peer"),
    ]  # fmt: skip


def _pyrate() -> list[Case]:
    import pyrate_limiter as pyrate  # noqa: PLC0415 - optional peer

    bucket = pyrate.Limiter(
        pyrate.InMemoryBucket([pyrate.Rate(policies.BENCH_BURST, pyrate.Duration.MINUTE)])
    )
    token = pyrate.limiter_factory.create_token_bucket_limiter(
        30, pyrate.Duration.MINUTE, burst=policies.BENCH_BURST
    )
    return [
        Case(PYRATE_BUCKET, NAMES[PYRATE_BUCKET], bucket.try_acquire, Shape.CALL3,
             Feed.const(policies.IDENTITY), (1, False), _is(True), group="peer"),
        Case(PYRATE_TOKEN, NAMES[PYRATE_TOKEN], token.try_acquire, Shape.CALL3,
             Feed.const(policies.IDENTITY), (1, False), _is(True), group="peer"),
    ]  # fmt: skip


def _peer_stack() -> list[Case]:
    import fastjsonschema  # noqa: PLC0415 - optional peer
    from limits import RateLimitItemPerMinute, storage, strategies  # noqa: PLC0415

    validate = fastjsonschema.compile(policies.BATCH_SCHEMA)
    hit = strategies.FixedWindowRateLimiter(storage.MemoryStorage()).hit
    calls = RateLimitItemPerMinute(policies.BENCH_BURST)
    writes = RateLimitItemPerMinute(policies.BENCH_BURST)
    invalid = fastjsonschema.JsonSchemaValueException

    def decide(identity: str, tool: str, args: dict[str, Any]) -> str:
        try:
            validate(args)
        except invalid:
            return "deny: schema"
        root = args.get("projectRoot")
        if not (isinstance(root, str) and root.startswith("/srv/projects/")):
            return "deny: require"
        if args.get("action") == "rewrite":
            return "deny: no-rewrites"
        tasks = args.get("tasks", [])
        if len(tasks) > 20:
            return "approval"
        if not hit(calls, "calls", identity):
            return "rate limited: calls"
        if not hit(writes, "writes", identity, cost=len(tasks)):
            return "rate limited: writes"
        return "allow"

    return [
        Case(PEER_STACK, NAMES[PEER_STACK], decide, Shape.CALL3,
             Feed.const(policies.IDENTITY), ("qflow_task_batch", policies.BATCH_ARGS),
             _is("allow"), group="peer"),
    ]  # fmt: skip


def peer_rows(sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    rows += optional(NAMES, [CEDAR_ALLOW, CEDAR_FORBID, CEDAR_NO_MATCH], _cedar)
    rows += optional(NAMES, [CASBIN], _casbin)
    rows += optional(NAMES, [LIMITS_FIXED, LIMITS_MOVING], lambda: _limits(sizes))
    rows += optional(NAMES, [PYRATE_BUCKET, PYRATE_TOKEN], _pyrate)
    rows += optional(NAMES, [PEER_STACK], _peer_stack)
    return rows
