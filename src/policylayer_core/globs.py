"""Glob keys (`*`, `?`, `[...]`, case-sensitive) and the precedence among them.

Tool keys and grant keys share one rule: an exact key wins over every glob; among
globs the one with the most literal characters wins; a tie goes to the one that comes
first in the file. Names are compared code point by code point, with no Unicode
normalisation and no case folding, so a look-alike name never matches by accident.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from fnmatch import translate
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "GlobTable", "is_glob", "literal_count"]

T = TypeVar("T")
V = TypeVar("V")


def is_glob(key: str) -> bool:
    """True when `key` uses a wildcard, so it is matched rather than looked up."""
    return any(ch in key for ch in "*?[")


def literal_count(pattern: str) -> int:
    """How many characters of `pattern` must appear literally in a match."""
    count, i, n = 0, 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch in "*?":
            i += 1
            continue
        if ch == "[":
            # A class counts as a wildcard when it is closed, as fnmatch reads it.
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:
                i = j + 1
                continue
        count += 1
        i += 1
    return count


class GlobTable(Generic[T]):
    """Globs in precedence order; `match(name)` gives the winning glob's key and value."""

    __slots__ = ("_entries",)

    def __init__(self, globs: Iterable[tuple[str, T]]) -> None:
        ordered = sorted(enumerate(globs), key=lambda item: (-literal_count(item[1][0]), item[0]))
        self._entries: tuple[tuple[Callable[[str], object], str, T], ...] = tuple(
            (re.compile(translate(key)).match, key, value) for _, (key, value) in ordered
        )

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, name: str) -> tuple[str, T] | None:
        """The winning glob for `name`, or None when no glob matches."""
        for matches, key, value in self._entries:
            if matches(name) is not None:
                return key, value
        return None


class BoundedCache(Generic[V]):
    """A dict for keys that come from callers, bounded in entries and in characters.

    It holds at most `maxsize` entries whose keys add up to at most `max_chars`
    characters; a key longer than `max_chars` on its own is never remembered. So its
    memory is bounded whatever names arrive: 50 distinct names of a megabyte each cost
    what `max_chars` allows, not 50 MB (a cap on entries alone does not bound that).

    Reads are plain `dict.get` (atomic under the GIL, no lock, no bookkeeping), which
    is why this is not a cachetools LRU: an LRU reorders on every hit and needs a lock
    around it. Inserts take a lock and evict the oldest entries (FIFO, kept in a deque:
    `next(iter(dict))` would rescan the slots of every key deleted before it) until the
    new one fits, so an attacker sending endless new names costs one computation each,
    never memory.
    """

    __slots__ = ("_chars", "_data", "_lock", "_max_chars", "_maxsize", "_order", "get")

    def __init__(self, maxsize: int, max_chars: int) -> None:
        self._data: dict[str, V] = {}
        self._order: deque[str] = deque()
        self._lock = threading.Lock()
        self._maxsize = maxsize
        self._max_chars = max_chars
        self._chars = 0
        self.get = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    @property
    def chars(self) -> int:
        """The characters of the keys held."""
        return self._chars

    def put(self, key: str, value: V) -> V:
        """Remember `value` for `key` (unless `key` alone is over the budget); return it."""
        size = len(key)
        if size > self._max_chars:
            return value
        with self._lock:
            data = self._data
            if key not in data:
                order = self._order
                while order and (
                    len(data) >= self._maxsize or self._chars + size > self._max_chars
                ):
                    oldest = order.popleft()
                    del data[oldest]
                    self._chars -= len(oldest)
                order.append(key)
                self._chars += size
            data[key] = value
        return value
