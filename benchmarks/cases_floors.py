"""Floors: what the cheapest Python operations cost on this machine, in this run."""

from __future__ import annotations

import time

from benchmarks.harness import Case, Feed, Shape
from benchmarks.suite import Row, Sizes

__all__ = ["ASYNC_EMPTY", "DICT_GET", "EMPTY_CALL", "MONOTONIC", "floor_rows"]

EMPTY_CALL = "floor.empty_call"
DICT_GET = "floor.dict_get"
MONOTONIC = "floor.monotonic"
ASYNC_EMPTY = "floor.await_empty"


def empty(identity: object, tool: object, args: object) -> None:
    """The empty 3-argument call: `decide(identity, tool, args)` minus everything it does."""


async def empty_async(identity: object, tool: object, args: object) -> None:
    """The empty coroutine function, awaited: the floor for async integrations."""


def floor_rows(sizes: Sizes) -> list[Row]:
    table = {f"qflow_tool_{i}": i for i in range(10)}
    return [
        Case(EMPTY_CALL, "floor: empty 3-argument call", empty, Shape.CALL3,
             Feed.const("alice"), ("qflow_task_get", {}), group="floor"),
        Case(DICT_GET, "floor: dict.get (hit)", table.get, Shape.CALL2,
             Feed.const("qflow_tool_3"), (None,), group="floor"),
        Case(MONOTONIC, "floor: time.monotonic()", time.monotonic, Shape.CALL0,
             Feed.const(None), group="floor"),
        Case(ASYNC_EMPTY, "floor: await empty async 3-argument call", empty_async,
             Shape.AWAIT3, Feed.const("alice"), ("qflow_task_get", {}), group="floor"),
    ]  # fmt: skip
