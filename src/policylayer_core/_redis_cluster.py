"""`RedisStore` on a Redis Cluster (or a Valkey cluster): which hash slot a bucket lives in,
and how the script reaches the node that holds it.

A Lua script may only touch keys of one hash slot, and the all-or-nothing take of a call
needs all its buckets in one script. So every bucket one call can charge must share a slot,
and a bucket must always have the same key, whichever call charges it (two keys for one
bucket would count it twice). The slot is chosen by a hash tag, `{...}` in the key:

- `{i<16 hex>}`, the caller's slot (a digest of the identity), for every bucket of a
  grant- or session-scope counter: a call's buckets are all its caller's, so callers
  spread over the whole cluster.
- `{p<16 hex>}`, the policy's slot (a digest of the prefix and the policy's name), for
  every bucket of a global-scope counter AND of every counter that some call charges
  together with a global one, directly or through a chain of calls (a counter in
  `all_tools` links every tool). A global bucket is one key that every caller shares, so
  the counters linked to it cannot follow the caller: they all live on the one node that
  holds the policy's slot. That node does the work of those limits alone (a hot slot).

Which counters are linked comes from the policy: the engine tells the store, per policy,
which counters each tool entry charges together (`co_charged`). A counter the store was
never told about is placed by its own scope (global in the policy's slot, others in the
caller's); a call whose buckets then fall in different slots is refused with
`StoreUnavailable`, never split.

The script runs on the node that owns the slot, through that node's own client: a node
that is down, a cluster that answers CLUSTERDOWN or TRYAGAIN, fails the call at once
(redis-py's cluster client would sleep and retry inside the call). After a connection
error or a timeout, the next call (at most one a second) re-reads the topology first, so
a replica promoted by a failover is found; after a timeout, that node alone is backed off
(the store's `backoff`), never the cluster. A slot that moved or is moving (MOVED, ASK:
resharding) is left to redis-py's cluster client, which follows the redirect.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    NoScriptError,
    RedisClusterException,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from policylayer_core.ratelimit import BucketSpec

__all__ = [
    "CLUSTER_SCHEMES",
    "BackingOff",
    "ClusterScript",
    "Placement",
    "build_cluster",
    "is_cluster_url",
]

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes of a cluster, and the plain scheme redis-py's `RedisCluster.from_url` reads."""

REFRESH_INTERVAL: Final = 1.0
"""Seconds between two topology re-reads that errors ask for."""

_TAG_HEX: Final = 16  # 64 bits: enough to spread callers over 16384 slots


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def build_cluster(url: str, timeout: float) -> RedisCluster:
    """A `RedisCluster` for a `redis+cluster://host:port` (or `rediss+cluster://`) URL, with
    `timeout` on every socket and no retries, as RedisStore builds its single-node client.
    It connects at once (to read the topology), so the store calls this on first use."""
    scheme, _, rest = url.partition("://")
    return RedisCluster.from_url(
        f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}",
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _digest(text: str, length: int) -> str:
    data = text.encode("utf-8", "backslashreplace")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:length]


class Placement:
    """The hash tag of every bucket: the caller's slot, or the policy's slot for counters
    linked to a global one (see the module docstring). Read without a lock: `co_charged`
    replaces the table whole."""

    __slots__ = ("_policy_tags", "_prefix", "_shared")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._shared: dict[str, bool] = {}  # spec.uid -> lives in the policy's slot
        self._policy_tags: dict[str, str] = {}  # namespace -> "p<hex>"

    def co_charged(self, groups: Iterable[Sequence[BucketSpec]]) -> None:
        """Learn which counters one call can charge together: each group is the counters
        of one tool entry (with `all_tools`'). Counters linked, through any chain of groups,
        to a global-scope counter go to the policy's slot; the others to the caller's."""
        parent: dict[str, str] = {}
        specs: dict[str, BucketSpec] = {}

        def root(uid: str) -> str:
            while parent[uid] != uid:
                parent[uid] = parent[parent[uid]]
                uid = parent[uid]
            return uid

        for group in groups:
            first: str | None = None
            for spec in group:
                specs[spec.uid] = spec
                parent.setdefault(spec.uid, spec.uid)
                if first is None:
                    first = root(spec.uid)
                else:
                    parent[root(spec.uid)] = first
        linked = {root(uid) for uid, spec in specs.items() if spec.scope == "global"}
        self._shared = {**self._shared, **{uid: root(uid) in linked for uid in specs}}

    def tag(self, spec: BucketSpec, scope_key: object) -> str:
        """The hash tag's content for one bucket: `i<hex>` or `p<hex>`."""
        shared = self._shared.get(spec.uid)
        if shared is None:
            shared = spec.scope == "global"  # never told about: placed by its own scope
        if shared:
            tag = self._policy_tags.get(spec.namespace)
            if tag is None:
                tag = "p" + _digest(repr((self._prefix, spec.namespace)), _TAG_HEX)
                self._policy_tags[spec.namespace] = tag
            return tag
        identity = scope_key
        if spec.scope == "session" and isinstance(scope_key, tuple) and len(scope_key) == 2:
            identity = scope_key[0]  # (identity, session): the caller's slot
        return "i" + _digest(repr(identity), _TAG_HEX)


class BackingOff(Exception):  # noqa: N818 - a state, as StoreUnavailable is
    """A node (or the cluster, before its client could be built) timed out recently, so
    the call is not sent: the store answers "unavailable" at once."""


class ClusterScript:
    """Runs the store's script on the node that owns its keys' slot.

    `client` is a `RedisCluster` or a function that builds one (called on first use, and
    again on the next call while it fails); `sha` is the script's SHA-1. A timeout backs
    off the node that timed out, not the cluster: the other nodes' callers go on.
    """

    __slots__ = (
        "_build",
        "_client",
        "_clock",
        "_failed_node",
        "_lock",
        "_refresh_at",
        "_resume_at",
        "script",
        "sha",
    )

    def __init__(
        self,
        client: RedisCluster | Callable[[], RedisCluster],
        script: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.script = script
        self.sha = hashlib.sha1(script.encode("utf-8"), usedforsecurity=False).hexdigest()
        if isinstance(client, RedisCluster):
            self._client: RedisCluster | None = client
            self._build: Callable[[], RedisCluster] | None = None
        else:
            self._client, self._build = None, client
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_at: float | None = None  # when a stale topology may be re-read
        self._failed_node: str | None = None  # asked last by that re-read
        # node name ("" for the cluster as a whole) -> when it may be asked again; one
        # entry per node at most, so as bounded as the cluster.
        self._resume_at: dict[str, float] = {}

    @property
    def client(self) -> RedisCluster:
        """The cluster client, built now if it has not been yet (which may raise)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    assert self._build is not None
                    client = self._client = self._build()
        return client

    def close(self) -> None:
        """Close the cluster client's connections, if it was built."""
        if self._client is not None:
            self._client.close()

    def run(self, keys: Sequence[str], args: Sequence[bytes | int], backoff: float) -> Any:
        """The script's reply; redis-py's error, or `BackingOff`, when there is none."""
        client = self._client
        if client is None:
            self._check_backoff("", backoff)
            try:
                client = self.client
            except Exception as exc:
                if _timed_out(exc):
                    self._back_off("", backoff)
                raise
        refresh_at = self._refresh_at
        if refresh_at is not None and self._clock() >= refresh_at:
            self._refresh(client)
        name = ""
        try:
            node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
            name = node.name
            self._check_backoff(name, backoff)
            return self._on(client.get_redis_connection(node), keys, args)
        except AskError:  # MOVED too (a subclass): the slot moved or is moving
            self._stale(name)
            return self._on(client, keys, args)
        except RedisTimeoutError:
            self._back_off(name, backoff)
            self._stale(name)
            raise
        except (RedisConnectionError, RedisClusterException):
            self._stale(name)
            raise

    def _on(self, client: Any, keys: Sequence[str], args: Sequence[bytes | int]) -> Any:
        # EVAL (not SCRIPT LOAD, which a cluster client sends to every primary) caches the
        # script on the one node that needed it.
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.script, len(keys), *keys, *args)

    def _check_backoff(self, name: str, backoff: float) -> None:
        resume_at = self._resume_at.get(name)
        if resume_at is not None:
            if self._clock() < resume_at:
                where = f"the cluster node {name}" if name else "the Redis Cluster"
                raise BackingOff(
                    f"{where} timed out within the last {backoff:g} s; not retried until then"
                )
            self._resume_at.pop(name, None)

    def _back_off(self, name: str, backoff: float) -> None:
        if backoff > 0:
            self._resume_at[name] = self._clock() + backoff

    def _stale(self, name: str) -> None:
        """A node failed or a slot moved: re-read the topology on a coming call."""
        if name:
            self._failed_node = name
        if self._refresh_at is None:
            self._refresh_at = self._clock()

    def _refresh(self, client: RedisCluster) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is re-reading it; this call uses the current map
        try:
            self._refresh_at = self._clock() + REFRESH_INTERVAL  # paced even when it fails
            initialize = client.nodes_manager.initialize
            if "last_failed_node_name" in inspect.signature(initialize).parameters:
                initialize(last_failed_node_name=self._failed_node)  # asked last
            else:  # an older redis-py
                initialize()
            self._refresh_at = self._failed_node = None
        finally:
            self._lock.release()


def _timed_out(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, is a timeout."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, RedisTimeoutError | TimeoutError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
