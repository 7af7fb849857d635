"""`RedisStore`: token buckets shared by every process and machine that uses one Redis.

Install the extra (`pip install 'policylayer-core[redis]'`) and pass the store to the
engine; every replica of a server then draws from the same buckets:

    from policylayer_core import PolicyEngine
    from policylayer_core.redis_store import RedisStore

    engine = PolicyEngine.from_file("policy.json", store=RedisStore("redis://cache:6379/0"))

The semantics are `MemoryStore`'s (see ratelimit.py): a call takes from all its buckets
or from none, `retry_after` is the longest wait, refunds never go above burst. All the
buckets of a call are read, checked and written by one Lua script (`_redis_lua.py`),
loaded once and called by its SHA in one round trip; time is the Redis server's `TIME`.

When Redis is down or slower than `timeout`, `take` and `check` raise `StoreUnavailable`
(the engine turns it into a DENY, or with `fail_open=True` an ALLOW, that says so) and
the next call tries again. After a *timeout* (a server that accepts but does not answer)
the store answers "unavailable" at once for `backoff` seconds instead of making every
call wait `timeout`; a refused connection costs microseconds and is retried on every call.
docs/redis.md has the key layout, the failure modes and the deployment notes.

On a Redis Cluster (or a Valkey cluster: a `redis.cluster.RedisCluster`, or a
`redis+cluster://` URL) every bucket one call can charge is keyed under one hash tag, so
the script still sees all of them at once; `_redis_cluster.py` chooses the tags and runs
the script on the node that owns them. Single-node keys carry no tag and are unchanged.

This module and `_redis_cluster.py` are the only ones that import `redis`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from policylayer_core._redis_cluster import (
    BackingOff,
    ClusterScript,
    Placement,
    build_cluster,
    is_cluster_url,
)
from policylayer_core._redis_lua import SCRIPT
from policylayer_core.ratelimit import BucketSpec, Charge, Receipt, Shortfall, StoreUnavailable

__all__ = ["RedisStore"]

_log = logging.getLogger("policylayer_core.redis_store")

_SPEC_HEX: Final = 16  # 64 bits of sha1(spec.uid): a handful of specs per deployment
_KEY_HEX: Final = 32  # 128 bits of sha1(repr(scope key)): collisions never happen in practice


class RedisStore:
    """A `RateLimitStore` in Redis: `RedisStore(client_or_url, *, prefix, timeout, fail_open)`.

    - `client_or_url`: a `redis.Redis` or `redis.cluster.RedisCluster`, or a URL
      (`redis://host:6379/0`, `rediss://...`, `unix:///path.sock`; for a cluster
      `redis+cluster://host:port` or `rediss+cluster://...`, any one node) from which the
      store builds its own client with `socket_timeout` and `socket_connect_timeout` =
      `timeout` and no retries, so no call waits longer than `timeout` (a refused
      connection fails at once); a cluster client is built on first use, since building
      one reads the topology. A client you pass keeps its own timeouts and retry policy:
      build it the same way (recent redis-py versions retry failed commands by default,
      which multiplies the wait).
    - `prefix`: the first part of every key (`{prefix}:{spec}:{scope key}`, on a cluster
      `{prefix}:{tag}:{spec}:{scope key}`, see docs/redis.md); stores with different
      prefixes never share a bucket. On a cluster it may not contain `{` or `}`.
    - `timeout`: seconds; the longest a call waits for Redis (with the client the store
      builds from a URL).
    - `fail_open`: what the engine does when Redis cannot answer: deny (False, the
      default) or allow without counting (True); `StoreUnavailable` carries the choice.
    - `backoff`: seconds during which, after a timeout, calls answer "unavailable"
      without trying Redis (0 disables).
    - `_time_offset`, `_clock`: test hooks. `_time_offset()` returns seconds added to the
      Redis server's time inside the script (so tests move time without sleeping while
      the script still reads `TIME`); `_clock` is the monotonic clock of the back-off.
    """

    # Each call is a network round trip: async integrations move decide() off the event
    # loop for a blocking store (see policylayer_core.fastmcp).
    blocking = True

    __slots__ = (
        "_client",
        "_clock",
        "_lock",
        "_placement",
        "_prefix",
        "_resume_at",
        "_script",
        "_specs",
        "_time_offset",
        "backoff",
        "fail_open",
        "timeout",
    )

    def __init__(
        self,
        client_or_url: redis.Redis | RedisCluster | str,
        *,
        prefix: str = "policylayer",
        timeout: float = 0.05,
        fail_open: bool = False,
        backoff: float = 1.0,
        _time_offset: Callable[[], float] | None = None,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not (isinstance(backoff, int | float) and 0 <= backoff < math.inf):
            raise ValueError(f"backoff must be a non-negative number of seconds, not {backoff!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, not {prefix!r}")
        cluster: RedisCluster | Callable[[], RedisCluster] | None = None
        if isinstance(client_or_url, str) and is_cluster_url(client_or_url):
            url = client_or_url
            cluster = lambda: build_cluster(url, timeout)  # noqa: E731
        elif isinstance(client_or_url, str):
            client: redis.Redis | None = redis.Redis.from_url(
                client_or_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        elif isinstance(client_or_url, redis.Redis):
            client = client_or_url
        elif isinstance(client_or_url, RedisCluster):
            cluster = client_or_url
        else:
            raise TypeError(
                "RedisStore needs a redis.Redis or redis.cluster.RedisCluster client or a "
                f"URL, not {type(client_or_url)}"
            )
        self._placement: Placement | None = None
        self._script: Any
        if cluster is not None:
            if "{" in prefix or "}" in prefix:
                raise ValueError(
                    f"prefix {prefix!r} contains a brace: on a cluster, the first {{...}} of "
                    "a key chooses its hash slot, so the store's own tag must come first; "
                    "choose a prefix without { or }"
                )
            self._client = None
            self._script = ClusterScript(cluster, SCRIPT, clock=_clock)
            self._placement = Placement(prefix)
        else:
            assert client is not None
            self._client = client
            self._script = client.register_script(SCRIPT)
        self._prefix = prefix
        self.timeout = float(timeout)
        self.fail_open = fail_open
        self.backoff = float(backoff)
        self._time_offset = _time_offset
        self._clock = _clock
        self._resume_at = -math.inf
        self._lock = threading.Lock()
        # spec.uid -> (key prefix of its buckets, interval, limit, capacity as script args)
        self._specs: dict[str, tuple[str, bytes, bytes, bytes]] = {}

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The redis-py client the store talks through (a cluster client is built on first
        use: reading this then may raise redis-py's error when no node answers)."""
        if self._client is not None:
            return self._client
        cluster: RedisCluster = self._script.client
        return cluster

    def close(self) -> None:
        """Close the client's connections (a later call opens new ones). A cluster client
        that was never built is not built now."""
        if self._client is not None:
            self._client.close()
        else:
            self._script.close()

    @property
    def cluster(self) -> bool:
        """True when the buckets live on a Redis Cluster (keys carry a hash tag)."""
        return self._placement is not None

    def key(self, spec: BucketSpec, scope_key: object) -> str:
        """The Redis key of one bucket: `{prefix}:{sha1(spec.uid)[:16]}:{sha1(repr(key))[:32]}`;
        on a cluster a hash tag (`{i...}` or `{p...}`) comes after the prefix (docs/redis.md,
        "Key layout")."""
        return self._key(spec, scope_key)

    def co_charged(self, groups: Iterable[Sequence[BucketSpec]]) -> None:
        """Learn which counters one call can charge together (the engine calls this for
        each policy it compiles: one group per tool entry). On a cluster it decides each
        counter's hash slot (see `_redis_cluster.Placement`); on one node it does nothing."""
        if self._placement is not None:
            self._placement.co_charged(groups)

    def _key(self, spec: BucketSpec, scope_key: object) -> str:
        head = self._spec_args(spec)[0]
        tail = _digest(repr(scope_key), _KEY_HEX)
        if self._placement is None:
            return head + tail
        return f"{self._prefix}:{{{self._placement.tag(spec, scope_key)}}}:{head}{tail}"

    def take(self, charges: Sequence[Charge]) -> Receipt | Shortfall:
        """Take every charge's cost, or nothing; one round trip whatever the count."""
        reply = self._call(b"take", charges)
        if reply is None:
            return []
        if isinstance(reply, Shortfall):
            return reply
        return [charge for charge in charges if charge[2] > 0]

    def check(self, charges: Sequence[Charge]) -> Shortfall | None:
        """The verdict `take` would give now, writing nothing."""
        reply = self._call(b"check", charges)
        return reply if isinstance(reply, Shortfall) else None

    def refund(self, receipt: Receipt) -> None:
        """Give back what `receipt` took, at most once, never above burst.

        The receipt is emptied before Redis is asked, so a second refund (from any
        thread) does nothing. A refund Redis cannot apply is logged and lost, never
        retried: at-most-once is the only guarantee a lost reply allows.
        """
        with self._lock:
            charges = receipt.copy()
            receipt.clear()
        if not charges:
            return
        try:
            self._call(b"refund", charges)
        except StoreUnavailable as down:
            _log.warning("a rate-limit refund of %d charge(s) was lost: %s", len(charges), down)

    def _call(self, mode: bytes, charges: Sequence[Charge]) -> Shortfall | bool | None:
        """Run the script on the charges with a cost; None when there are none, True when
        every bucket had room, else the Shortfall (its index into `charges`)."""
        keys: list[str] = []
        args: list[bytes | int] = [mode, 0]
        index: list[int] = []
        placement = self._placement
        tags: set[str] = set()
        for i, (spec, scope_key, cost) in enumerate(charges):
            if cost <= 0:
                continue
            head, interval, limit, capacity = self._spec_args(spec)
            tail = _digest(repr(scope_key), _KEY_HEX)
            if placement is None:
                keys.append(head + tail)
            else:
                tag = placement.tag(spec, scope_key)
                tags.add(tag)
                keys.append(f"{self._prefix}:{{{tag}}}:{head}{tail}")
            args += (interval, limit, capacity, cost)
            index.append(i)
        if not keys:
            return None
        if len(tags) > 1:
            # One script, one slot: charging the buckets one slot at a time would not be
            # all or nothing. The engine never sends such a call (it tells the store which
            # counters go together); a caller of take() with other charges may.
            raise StoreUnavailable(
                "this call's buckets are in different hash slots of the Redis Cluster (the "
                "buckets of different callers, or a global counter the store was not told "
                "goes with the others), so they cannot be taken all or nothing in one "
                "script; charge one caller's buckets per call, through the engine",
                fail_open=self.fail_open,
            )
        if self._clock() < self._resume_at:
            raise StoreUnavailable(
                f"Redis timed out within the last {self.backoff:g} s; not retried until then",
                fail_open=self.fail_open,
            )
        try:
            if self._time_offset is not None:
                args[1] = round(self._time_offset() * 1_000_000)
            reply: Any
            if placement is None:
                reply = self._script(keys=keys, args=args)
            else:  # a cluster backs off the node that timed out, not the whole store
                reply = self._script.run(keys, args, self.backoff)
            if reply.__class__ is int:
                return True
            return Shortfall(index[int(reply[0]) - 1], float(reply[1]))
        except BackingOff as exc:
            raise StoreUnavailable(str(exc), fail_open=self.fail_open) from None
        except Exception as exc:  # redis errors, OSError, an odd reply: never anything else
            if isinstance(exc, redis.TimeoutError) and self.backoff > 0 and placement is None:
                self._resume_at = self._clock() + self.backoff
            raise StoreUnavailable(_describe(exc), fail_open=self.fail_open) from exc

    def _spec_args(self, spec: BucketSpec) -> tuple[str, bytes, bytes, bytes]:
        cached = self._specs.get(spec.uid)
        if cached is None:
            # The key's head: `prefix:spec:` on one node; on a cluster the tag goes between
            # the prefix and the spec, so the head is `spec:` alone.
            head = "" if self._placement is not None else f"{self._prefix}:"
            cached = (  # bytes: redis-py sends them as they are, with no encoding step
                f"{head}{_digest(spec.uid, _SPEC_HEX)}:",
                repr(spec.interval).encode(),
                repr(spec._limit).encode(),
                repr(spec.capacity).encode(),
            )
            self._specs[spec.uid] = cached
        return cached


def _digest(text: str, length: int) -> str:
    data = text.encode("utf-8", "backslashreplace")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:length]


def _describe(exc: Exception) -> str:
    """A short, single-line account of why Redis could not answer."""
    text = " ".join(str(exc).split()) or "no detail"
    if len(text) > 200:
        text = text[:197] + "..."
    return f"Redis {type(exc).__name__}: {text}"
