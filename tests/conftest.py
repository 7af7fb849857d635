"""Shared test helpers: a fake clock that only moves when told, and policy builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"


class FakeClock:
    """A monotonic clock for tests: time moves only by `advance` (never by sleeping)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def qflow_tools() -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = json.loads((DATA / "qflow-tools.json").read_text("utf-8"))[
        "tools"
    ]
    return tools


def policy(tools: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A policy document with `default: deny` unless told otherwise."""
    doc: dict[str, Any] = {"version": "1", "default": "deny"}
    doc.update(top)
    if tools is not None:
        doc["tools"] = tools
    return doc


# -- Redis Cluster and Valkey: one cluster of each per test session --------------------------


def _cluster(binary: str | None, missing: str) -> Any:
    """A 3-primary cluster on loopback for the whole session (2-3 s to start), stopped at
    the end; skipped (failed under CI) without the binaries. Tests share it by prefix."""
    from redis_server import (  # noqa: PLC0415 - only the Redis tests need it
        CLI_MISSING,
        ClusterServers,
        redis_cli_binary,
        require,
    )

    server = require(binary, missing)
    cli = require(redis_cli_binary(), CLI_MISSING)
    cluster = ClusterServers(server, cli=cli)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Any:
    from redis_server import MISSING, redis_server_binary  # noqa: PLC0415

    yield from _cluster(redis_server_binary(), MISSING)


@pytest.fixture(scope="session")
def valkey_cluster() -> Any:
    from redis_server import VALKEY_MISSING, valkey_server_binary  # noqa: PLC0415

    yield from _cluster(valkey_server_binary(), VALKEY_MISSING)
