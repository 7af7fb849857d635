"""A mutex made of a one-token `queue.SimpleQueue`, for the rate-limit store's hot path.

Taking the token (`get`) is acquiring, putting it back is releasing. `get` blocks while
another thread holds the token and wakes when it comes back, so this is a real mutex
(a semaphore of one), with the same rules as `threading.Lock`: not reentrant, released
only by its holder. It exists for speed: `threading.Lock.acquire` parses its optional
arguments on every call, and acquire plus release cost about 60 ns here; the queue's
`get` and `put` take theirs through the fast calling convention and, uncontended, only
move one item in a list, about 30 ns for both. A limited decision pays for one pair.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from types import TracebackType

__all__ = ["TokenLock"]


class TokenLock:
    """`acquire()` / `release()` (or `with`); generated code calls `acquire()` and
    `put(None)`, the bound methods themselves."""

    __slots__ = ("acquire", "put")

    def __init__(self) -> None:
        tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        tokens.put(None)
        self.acquire: Callable[[], None] = tokens.get
        self.put: Callable[[None], None] = tokens.put

    def release(self) -> None:
        self.put(None)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.put(None)
