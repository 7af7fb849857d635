"""Rows on a real Redis: our decide() with RedisStore, `limits` on Redis, and PING as the floor.

The builder starts its own `redis-server` (tests/redis_server.py: a free loopback port, a
temporary directory, persistence off) and stops it when the benchmark process exits.
Every row talks to that one server over loopback TCP, so each call pays one round trip
and the rows differ by what they do around it:

* floor: `PING` through redis-py: the round trip and the client's own work;
* decide() on the one-limit policy of the engine rows with a `RedisStore`: one EVALSHA;
* decide() on the realistic qflow_task_batch call: two buckets, still one EVALSHA;
* `limits` FixedWindow `hit` on its `RedisStorage` (10^9 a minute, never exhausted), the
  peer's nearest job: one script call (INCRBY and EXPIRE) per hit.

Beside them, the same two decide() rows with a `RedisStore` on a Redis Cluster: three
primaries on loopback (`redis-server --cluster-enabled yes` x3 joined by `redis-cli
--cluster create`, as the tests start it). The call goes straight to the node that owns
the caller's slot, so the difference from the single-node rows is the store's routing
(a hash tag, a slot lookup), not an extra hop.

Without a `redis-server` binary the rows show "redis-server not installed" (the cluster
rows also need `redis-cli`); without redis-py (`pip install -e '.[bench,redis]'`), "not
installed (redis)".
"""

from __future__ import annotations

import atexit
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import policies
from benchmarks.cases_engine import expect
from benchmarks.harness import Case, Feed, Shape, one_line
from benchmarks.suite import Missing, Row, Sizes, optional
from policylayer_core import Effect, PolicyEngine

__all__ = [
    "CLUSTER_ONE_LIMIT",
    "CLUSTER_REALISTIC",
    "LIMITS_FIXED_REDIS",
    "ONE_LIMIT_REDIS",
    "PING",
    "REALISTIC_REDIS",
    "redis_rows",
]

PING = "floor.redis_ping"
ONE_LIMIT_REDIS = "ours.redis_one_limit"
REALISTIC_REDIS = "ours.redis_realistic"
LIMITS_FIXED_REDIS = "peer.limits_fixed_redis"
CLUSTER_ONE_LIMIT = "ours.redis_cluster_one_limit"
CLUSTER_REALISTIC = "ours.redis_cluster_realistic"

NAMES = {
    PING: "floor: Redis PING (one loopback round trip)",
    ONE_LIMIT_REDIS: "decide: one token-bucket limit, RedisStore",
    REALISTIC_REDIS: "decide: realistic qflow_task_batch, RedisStore (2 buckets)",
    LIMITS_FIXED_REDIS: "limits FixedWindow hit (RedisStorage)",
    CLUSTER_ONE_LIMIT: "decide: one token-bucket limit, RedisStore on a 3-primary cluster",
    CLUSTER_REALISTIC: "decide: realistic qflow_task_batch, RedisStore on a 3-primary cluster",
}

_STARTER = Path(__file__).resolve().parent.parent / "tests" / "redis_server.py"


def _starter() -> ModuleType:
    """tests/redis_server.py, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_policylayer_redis_server", _STARTER)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {_STARTER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_true(result: Any) -> str | None:
    return None if result is True else f"expected True, got {result!r}"


def _cases(url: str) -> list[Case]:
    import redis  # noqa: PLC0415 - optional
    from limits import RateLimitItemPerMinute, storage, strategies  # noqa: PLC0415 - optional peer

    from policylayer_core.redis_store import RedisStore  # noqa: PLC0415 - needs redis

    client = redis.Redis.from_url(url)

    def store() -> RedisStore:
        # A generous timeout: a loaded machine must not turn a timed call into a DENY.
        return RedisStore(url, prefix="bench", timeout=1.0)

    limited = PolicyEngine.from_dict(policies.one_limit_policy(), store=store())
    realistic = PolicyEngine.from_dict(policies.realistic_policy(), store=store())
    fixed = strategies.FixedWindowRateLimiter(storage.RedisStorage(url))
    big = RateLimitItemPerMinute(policies.BENCH_BURST)
    who, args = policies.IDENTITY, dict[str, Any]()
    return [
        Case(PING, NAMES[PING], client.ping, Shape.CALL0, Feed.const(None), (), _is_true,
             group="redis"),
        Case(ONE_LIMIT_REDIS, NAMES[ONE_LIMIT_REDIS], limited.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_create", args),
             expect(Effect.ALLOW, "/tools/qflow_task_create"), group="redis"),
        Case(REALISTIC_REDIS, NAMES[REALISTIC_REDIS], realistic.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_batch", policies.BATCH_ARGS),
             expect(Effect.ALLOW, "/tools/qflow_task_batch"), group="redis"),
        Case(LIMITS_FIXED_REDIS, NAMES[LIMITS_FIXED_REDIS], fixed.hit, Shape.CALL3,
             Feed.const(big), ("writes", who), _is_true, group="redis"),
    ]  # fmt: skip


def _cluster_cases(url: str) -> list[Case]:
    from policylayer_core.redis_store import RedisStore  # noqa: PLC0415 - needs redis

    def engine(doc: dict[str, Any]) -> PolicyEngine:
        # A generous timeout: a loaded machine must not turn a timed call into a DENY.
        return PolicyEngine.from_dict(doc, store=RedisStore(url, prefix="bench", timeout=1.0))

    limited, realistic = engine(policies.one_limit_policy()), engine(policies.realistic_policy())
    who, args = policies.IDENTITY, dict[str, Any]()
    return [
        Case(CLUSTER_ONE_LIMIT, NAMES[CLUSTER_ONE_LIMIT], limited.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_create", args),
             expect(Effect.ALLOW, "/tools/qflow_task_create"), group="redis"),
        Case(CLUSTER_REALISTIC, NAMES[CLUSTER_REALISTIC], realistic.decide, Shape.CALL3,
             Feed.const(who), ("qflow_task_batch", policies.BATCH_ARGS),
             expect(Effect.ALLOW, "/tools/qflow_task_batch"), group="redis"),
    ]  # fmt: skip


def redis_rows(sizes: Sizes) -> list[Row]:
    keys = [PING, ONE_LIMIT_REDIS, REALISTIC_REDIS, LIMITS_FIXED_REDIS]
    cluster_keys = [CLUSTER_ONE_LIMIT, CLUSTER_REALISTIC]
    starter = _starter()
    if starter.redis_server_binary() is None:
        return [
            Missing(key, NAMES[key], "redis-server not installed", "redis")
            for key in keys + cluster_keys
        ]
    server = starter.RedisServer()
    try:
        server.start()
    except Exception as exc:
        server.stop()
        reason = f"redis-server did not start: {one_line(exc)}"
        rows: list[Row] = [Missing(key, NAMES[key], reason, "redis", failed=True) for key in keys]
    else:
        atexit.register(server.stop)
        rows = optional(NAMES, keys, lambda: _cases(server.url), group="redis")
    return rows + _cluster_rows(starter, cluster_keys)


def _cluster_rows(starter: ModuleType, keys: list[str]) -> list[Row]:
    if starter.redis_cli_binary() is None:
        return [Missing(key, NAMES[key], "redis-cli not installed", "redis") for key in keys]
    cluster = starter.ClusterServers()
    try:
        cluster.start()
    except Exception as exc:
        cluster.stop()
        reason = f"the Redis Cluster did not start: {one_line(exc)}"
        return [Missing(key, NAMES[key], reason, "redis", failed=True) for key in keys]
    atexit.register(cluster.stop)
    return optional(NAMES, keys, lambda: _cluster_cases(cluster.url), group="redis")
