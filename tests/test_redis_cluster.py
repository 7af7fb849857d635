"""RedisStore on a real Redis Cluster and a real Valkey cluster: slots, races, failover.

The behavioural suite of test_redis_store.py already runs on both clusters (its `subject`
fixture); this module covers what only a cluster has: where the buckets of a call live
(one hash slot: the caller's, or the policy's for counters linked to a global one),
processes racing on a cluster, a primary killed mid-traffic (every call answers by the
failure policy, none raises, and the promoted replica takes over), a frozen primary
backed off alone, a slot resharded under a caller, a node that lost the script, and the
ways to name a cluster. The session's 3-primary clusters come from conftest.py; the
failover test starts its own, with a replica per primary. Without the binaries these
tests skip, and fail instead under CI (see redis_server.py).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import FakeClock, policy
from policylayer_core import Effect, PolicyEngine
from policylayer_core.ratelimit import BucketSpec, StoreUnavailable
from redis_server import (
    CLI_MISSING,
    MISSING,
    REQUIRED_BY,
    VALKEY_MISSING,
    ClusterServers,
    command,
    free_port,
    redis_cli_binary,
    redis_server_binary,
    require,
    valkey_server_binary,
)

try:
    from redis.cluster import RedisCluster

    from policylayer_core.redis_store import RedisStore
except ImportError:  # pragma: no cover - the `test` extra installs redis
    if any(os.environ.get(name) for name in REQUIRED_BY):
        raise
    pytest.skip("redis-py is not installed (pip install -e '.[redis]')", allow_module_level=True)

ALLOW, DENY, RATE = Effect.ALLOW, Effect.DENY, Effect.RATE_LIMITED
SLOW = 5.0  # timeout where a test does not exercise failures: a loaded machine is no failure
FLAVOURS = ["redis", "valkey"]
KEY = re.compile(r"^(?P<prefix>[^{}]+):\{(?P<tag>[ip][0-9a-f]{16})\}:[0-9a-f]{16}:[0-9a-f]{32}$")


@pytest.fixture(params=FLAVOURS)
def cluster(request: pytest.FixtureRequest) -> ClusterServers:
    """The session's 3-primary cluster of each flavour (conftest.py)."""
    found: ClusterServers = request.getfixturevalue(f"{request.param}_cluster")
    return found


@pytest.fixture
def stores() -> Iterator[list[RedisStore]]:
    """Every store a test made, closed after it."""
    made: list[RedisStore] = []
    yield made
    for store in made:
        store.close()


def store_on(stores: list[RedisStore], url: str, **options: Any) -> RedisStore:
    options.setdefault("prefix", f"test-{uuid.uuid4().hex[:8]}")
    options.setdefault("timeout", SLOW)
    store = RedisStore(url, **options)
    stores.append(store)
    return store


def keys_by_node(store: RedisStore) -> dict[int, list[str]]:
    """The store's keys on each primary (by port), read from each node itself."""
    client = store.client
    assert isinstance(client, RedisCluster)
    found: dict[int, list[str]] = {}
    for node in client.get_primaries():
        keys = client.get_redis_connection(node).keys(f"{store._prefix}:*")
        found[node.port] = sorted(key.decode() for key in keys)
    return found


def tag_of(key: str) -> str:
    matched = KEY.match(key)
    assert matched is not None, f"{key!r} does not have the cluster layout"
    return matched["tag"]


# -- where the buckets live -------------------------------------------------------------------


def test_a_calls_buckets_share_the_callers_slot_and_callers_spread_over_the_primaries(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    store = store_on(stores, cluster.url)
    doc = policy(
        {
            "t": {
                "limits": [
                    {"counter": "t", "window": "hour", "max": 100},
                    {"counter": "s", "window": "hour", "max": 100, "scope": "session"},
                ]
            }
        },
        all_tools={"limits": [{"counter": "all", "window": "hour", "max": 1000}]},
    )
    engine = PolicyEngine(doc, store=store)
    callers = [f"caller-{i}" for i in range(60)]
    for caller in callers:
        assert engine.decide(caller, "t", session="s1").effect is ALLOW
    placed = keys_by_node(store)
    assert all(placed.values()), f"every primary holds some callers: {placed}"
    tags: dict[str, set[int]] = {}
    client = store.client
    assert isinstance(client, RedisCluster)
    for port, keys in placed.items():
        for key in keys:
            tags.setdefault(tag_of(key), set()).add(port)
            assert client.keyslot(key) == client.keyslot(f"{{{tag_of(key)}}}")
    assert len(tags) == len(callers), "one tag per caller"
    assert all(tag.startswith("i") and len(ports) == 1 for tag, ports in tags.items())
    assert sum(map(len, placed.values())) == 3 * len(callers), "three buckets per caller"


def test_counters_linked_to_a_global_one_share_the_policys_slot_and_stay_exact(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    # 'x' is charged alone by 'a' and with the global 'g' by 'b': both calls must see ONE
    # bucket 'x' per caller, so 'x' lives in the policy's slot with 'g'. 'z' is unlinked.
    store = store_on(stores, cluster.url)
    x = {"counter": "x", "window": "hour", "max": 3}
    doc = policy(
        {
            "a": {"limits": [x]},
            "b": {"limits": [x, {"counter": "g", "window": "hour", "max": 100, "scope": "global"}]},
            "c": {"limits": [{"counter": "z", "window": "hour", "max": 2}]},
        }
    )
    engine = PolicyEngine(doc, store=store)
    assert [engine.decide("alice", tool).effect for tool in "aab"] == [ALLOW] * 3
    assert engine.decide("alice", "a").effect is RATE
    d = engine.decide("alice", "b")
    assert (d.effect, d.rule) == (RATE, "/tools/b/limits/0")
    assert engine.decide("bob", "b").effect is ALLOW
    assert engine.decide("bob", "c").effect is ALLOW

    def spec(counter: str, scope: str, max: int) -> BucketSpec:
        return BucketSpec("", counter, scope, max, 3600.0, max)

    x_alice, x_bob = (
        store.key(spec("x", "grant", 3), "alice"),
        store.key(spec("x", "grant", 3), "bob"),
    )
    g, z_bob = store.key(spec("g", "global", 100), None), store.key(spec("z", "grant", 2), "bob")
    assert tag_of(x_alice) == tag_of(x_bob) == tag_of(g)
    assert tag_of(g).startswith("p") and tag_of(z_bob).startswith("i")
    everything = [key for keys in keys_by_node(store).values() for key in keys]
    assert sorted(everything) == sorted([x_alice, x_bob, g, z_bob])


def test_a_call_whose_buckets_fall_in_two_slots_is_refused_whole(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    """Only a caller of take() can build such a call (two callers' buckets, or a global
    counter the store was never told about): it is refused, and nothing is taken."""
    store = store_on(stores, cluster.url, fail_open=True)
    grant = BucketSpec("", "n", "grant", 5, 60.0, 5)
    unknown_global = BucketSpec("", "g", "global", 5, 60.0, 5)
    for charges in (
        [(grant, "alice", 1), (grant, "bob", 1)],
        [(grant, "alice", 1), (unknown_global, None, 1)],
    ):
        with pytest.raises(StoreUnavailable, match="different hash slots") as caught:
            store.take(charges)
        assert caught.value.fail_open is True
    assert not any(keys_by_node(store).values())
    assert store.take([(grant, "alice", 5)]) == [(grant, "alice", 5)]


# -- processes ---------------------------------------------------------------------------------

PROCESSES, ATTEMPTS, ALLOWED = 4, 150, 200
RACES = {  # both run in the same 4 processes, one after the other
    # Every process is the same caller: two per-caller limits, in that caller's slot.
    "per-caller": policy(
        {"t": {"limits": [{"counter": "t", "window": "day", "max": ALLOWED}]}},
        all_tools={"limits": [{"counter": "all", "window": "day", "max": 10_000}]},
    ),
    # Every process is its own caller: two global limits, in the policy's slot.
    "global": policy(
        {"t": {"limits": [{"counter": "t", "window": "day", "max": ALLOWED, "scope": "global"}]}},
        all_tools={
            "limits": [{"counter": "all", "window": "day", "max": 10_000, "scope": "global"}]
        },
    ),
}


def _caller(race: str) -> str:
    return "shared" if race == "per-caller" else f"w{os.getpid()}"


def _hammer(url: str, prefix: str, start: Any, results: Any) -> None:
    """One process: for each race, ATTEMPTS decisions on its buckets, as fast as it can."""
    store = RedisStore(url, prefix=prefix, timeout=SLOW)
    engines = {race: PolicyEngine(doc, store=store) for race, doc in RACES.items()}
    allowed = {}
    for race, engine in engines.items():
        start.wait()
        allowed[race] = sum(
            engine.decide(_caller(race), "t").effect is ALLOW for _ in range(ATTEMPTS)
        )
    results.put(allowed)
    store.close()


def test_processes_on_a_cluster_never_pass_more_than_the_limits_allow(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    workers = [
        context.Process(target=_hammer, args=(cluster.url, prefix, start, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        counts = [results.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    late = store_on(stores, cluster.url, prefix=prefix)
    for race, doc in RACES.items():
        allowed = [count[race] for count in counts]
        assert sum(allowed) == ALLOWED, (race, allowed)
        assert sum(n > 0 for n in allowed) >= 2, f"the processes really raced: {race} {allowed}"
        assert PolicyEngine(doc, store=late).decide(_caller(race), "t").effect is RATE


# -- failover --------------------------------------------------------------------------------

LIMITED = policy({"t": {"limits": [{"counter": "t", "window": "hour", "max": 1000}]}})


@pytest.fixture(params=FLAVOURS)
def replicated(request: pytest.FixtureRequest) -> Iterator[ClusterServers]:
    """A cluster of this test's own, 3 primaries with a replica each; a node is called
    failed after 1 s of silence, so a failover takes a second or two."""
    binary, missing = {
        "redis": (redis_server_binary(), MISSING),
        "valkey": (valkey_server_binary(), VALKEY_MISSING),
    }[request.param]
    servers = ClusterServers(
        require(binary, missing),
        cli=require(redis_cli_binary(), CLI_MISSING),
        replicas=1,
        node_timeout=1000,
    )
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def test_a_killed_primary_gives_failure_policy_answers_then_its_replica_takes_over(
    replicated: ClusterServers, stores: list[RedisStore]
) -> None:
    """Kill the primary that holds caller 'i' while callers 'i' and 'o' (on another primary)
    keep calling: until the replica is promoted and found, every call answers, at once, by
    the failure policy or normally (the other primaries' slots keep working until the
    cluster marks the node failed, then answer CLUSTERDOWN for a moment), and none raises."""
    # timeout 0.25 s: generous for a loaded machine; a refused connection fails at once.
    closed = PolicyEngine(LIMITED, store=store_on(stores, replicated.url, timeout=0.25))
    opened = PolicyEngine(
        LIMITED, store=store_on(stores, replicated.url, timeout=0.25, fail_open=True)
    )
    client = stores[0].client
    assert isinstance(client, RedisCluster)
    spec = BucketSpec("", "t", "grant", 1000, 3600.0, 1000)  # the policy's counter
    victim = client.get_node_from_key(stores[0].key(spec, "i")).port
    other = next(
        f"o{n}"
        for n in range(1000)
        if client.get_node_from_key(stores[0].key(spec, f"o{n}")).port != victim
    )
    assert victim in replicated.primary_ports()
    for engine in (closed, opened):
        assert engine.decide("i", "t").effect is engine.decide(other, "t").effect is ALLOW
    replicated.node(victim).kill()

    answers: dict[tuple[str, str], list[tuple[Effect, str, float]]] = {}
    deadline = time.monotonic() + 60
    while True:
        for name, engine in (("closed", closed), ("opened", opened)):
            for caller in ("i", other):
                started = time.monotonic()
                d = engine.decide(caller, "t")
                elapsed = time.monotonic() - started
                answers.setdefault((name, caller), []).append((d.effect, d.reason, elapsed))
        latest = [answers["closed", caller][-1] for caller in ("i", other)]
        if all(effect is ALLOW and "unavailable" not in reason for effect, reason, _ in latest):
            break  # the replica took over and the store found it
        assert time.monotonic() < deadline, f"no failover within 60 s: {latest}"
        time.sleep(0.01)
    unavailable = "rate-limit store is unavailable (Redis"
    for (name, caller), seen in answers.items():
        for effect, reason, elapsed in seen:
            assert elapsed < 2.0, f"no hang: {name} {caller} {elapsed:.3f} s {reason}"
            if name == "opened":
                assert effect is ALLOW, reason
                assert unavailable not in reason or "without counting" in reason, reason
            else:
                assert effect is ALLOW or (effect is DENY and unavailable in reason), reason
    assert any(effect is DENY for effect, _, _ in answers["closed", "i"]), "the kill was noticed"
    assert closed.internal_failures == opened.internal_failures == 0
    if os.environ.get("POLICYLAYER_SHOW_FAILOVER"):  # the figures docs/redis.md quotes
        seen = [answer for each in answers.values() for answer in each]
        slowest = max(elapsed for _, _, elapsed in seen)
        errors = sorted({r.split("(Redis ")[1].split(":")[0] for _, r, _ in seen if "(Redis" in r})
        print(f"\nfailover: {len(seen)} decisions, slowest {slowest:.4f} s, errors {errors}")
    # The replica holds the bucket now and counting goes on (a take the old primary had
    # not yet replicated is lost with it, which only gives a token back).
    assert victim not in replicated.primary_ports()
    assert sum(closed.decide("i", "t").effect is ALLOW for _ in range(5)) == 5


def test_a_frozen_primary_backs_off_alone(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    """A primary that accepts connections and never answers: its callers time out once,
    then get "unavailable" at once for `backoff` seconds; callers of the other primaries
    go on as if nothing happened. (The pause is far shorter than the 2 s after which the
    cluster would call the node failed.)"""
    clock = FakeClock()
    store = store_on(stores, cluster.url, timeout=0.1, backoff=1.0, _clock=clock)
    client = store.client
    assert isinstance(client, RedisCluster)
    spec = BucketSpec("", "n", "grant", 100, 60.0, 100)
    frozen = client.get_node_from_key(store.key(spec, "a")).port
    other = next(
        f"o{n}"
        for n in range(1000)
        if client.get_node_from_key(store.key(spec, f"o{n}")).port != frozen
    )
    assert store.take([(spec, "a", 1)]) and store.take([(spec, other, 1)])
    cluster.node(frozen).pause()
    try:
        with pytest.raises(StoreUnavailable, match="Redis TimeoutError"):
            store.take([(spec, "a", 1)])
        backing_off = f"cluster node 127.0.0.1:{frozen} timed out .* not retried until then"
        with pytest.raises(StoreUnavailable, match=backing_off):
            store.take([(spec, "a", 1)])
        assert store.take([(spec, other, 1)]), "the other primaries are not backed off"
    finally:
        cluster.node(frozen).resume()
    with pytest.raises(StoreUnavailable, match=backing_off):
        store.check([(spec, "a", 1)])  # it answers again, but the back-off still holds
    clock.advance(1.0)
    assert store.take([(spec, "a", 1)])
    cluster.wait_until_ok()


def test_a_slot_that_moves_is_followed_and_its_buckets_stay_exact(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    """Resharding, by hand: the caller's slot is marked migrating from its primary A to
    another primary B, its key moved, then the slot handed to B. The store follows the
    redirects (ASK while migrating, MOVED after) and the bucket never loses a take."""
    store = store_on(stores, cluster.url)
    client = store.client
    assert isinstance(client, RedisCluster)
    spec = BucketSpec("", "n", "grant", 5, 3600.0, 5)
    key = store.key(spec, "mover")
    slot = str(client.keyslot(key))
    source = client.get_node_from_key(key).port
    target = next(port for port in cluster.primary_ports() if port != source)
    ids = {port: command(port, "CLUSTER", "MYID").decode() for port in (source, target)}
    assert store.take([(spec, "mover", 2)])

    command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    assert store.take([(spec, "mover", 1)])  # the key is still on A: A answers
    command(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", key)
    assert store.take([(spec, "mover", 1)])  # A no longer has it: ASK, then B answers
    for port in cluster.primary_ports():
        command(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    assert store.take([(spec, "mover", 1)])  # A answers MOVED; B answers
    assert not isinstance(store.take([(spec, "mover", 1)]), list), "5 of 5 taken, none lost"
    assert command(target, "EXISTS", key) == b"1"
    assert client.get_node_from_key(key).port == target, "the client follows the move"
    cluster.wait_until_ok()


# -- naming a cluster ---------------------------------------------------------------------------


def test_a_cluster_client_url_and_key_layout(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    spec = BucketSpec("", "n", "grant", 5, 60.0, 5)
    plain = cluster.url.replace("redis+cluster://", "redis://")
    given = RedisCluster.from_url(plain)
    store = RedisStore(given, prefix=f"test-{uuid.uuid4().hex[:8]}")
    stores.append(store)
    assert store.cluster and store.client is given
    assert store.take([(spec, "alice", 2)]) == [(spec, "alice", 2)]
    key = store.key(spec, "alice")
    assert KEY.match(key) and key.startswith(f"{store._prefix}:{{i")
    assert given.get(key) is not None
    assert 23_000 <= given.pttl(key) <= 24_002, "expires when the bucket is full again (24 s)"
    by_url = store_on(stores, cluster.url, prefix=store._prefix)
    assert by_url.cluster and by_url.key(spec, "alice") == key
    assert by_url.check([(spec, "alice", 4)]) is not None, "the same bucket, 3 tokens left"
    with pytest.raises(ValueError, match="brace"):
        RedisStore(cluster.url, prefix="app{1}")


def test_an_unreachable_cluster_url_answers_by_the_failure_policy(
    stores: list[RedisStore],
) -> None:
    """The cluster client is built on first use: a store for a cluster that is not there
    constructs, and every call answers by the failure policy until it is."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"  # nothing listens there
    closed = PolicyEngine(LIMITED, store=store_on(stores, url, timeout=0.25))
    opened = PolicyEngine(LIMITED, store=store_on(stores, url, timeout=0.25, fail_open=True))
    for _ in range(2):
        d = closed.decide("i", "t")
        assert d.effect is DENY and "rate-limit store is unavailable (Redis" in d.reason
        d = opened.decide("i", "t")
        assert d.effect is ALLOW and "without counting" in d.reason
    assert closed.internal_failures == opened.internal_failures == 0


def test_a_node_that_lost_the_script_gets_it_again(
    cluster: ClusterServers, stores: list[RedisStore]
) -> None:
    store = store_on(stores, cluster.url)
    spec = BucketSpec("", "n", "grant", 3, 60.0, 3)
    assert store.take([(spec, "a", 1)])
    client = store.client
    assert isinstance(client, RedisCluster)
    client.script_flush()  # every primary
    assert store.take([(spec, "a", 1)])  # NOSCRIPT, then EVAL on that node
    node = client.get_node_from_key(store.key(spec, "a"))
    assert client.get_redis_connection(node).script_exists(store._script.sha) == [True]
    assert store.take([(spec, "a", 1)])
    assert not isinstance(store.take([(spec, "a", 1)]), list)
