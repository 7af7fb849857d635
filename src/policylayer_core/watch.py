"""Noticing that a policy file changed, without a thread.

A `FileWatch` is asked `due(now)` on every decision (one float comparison); at most every
`interval` seconds the engine then calls `poll()`, which `stat`s the file and, when its
modification time or size moved, reads it and compares a hash of the content, so a touch
that changes nothing does not reload. A content that failed to load is remembered, so a
broken file is reported once, not on every poll, until it changes again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

__all__ = ["FileWatch"]


class FileWatch:
    """Polls one file; `poll()` returns its new text when the content changed."""

    def __init__(self, path: str | os.PathLike[str], interval: float, now: float) -> None:
        if interval < 0:
            raise ValueError(f"watch_interval must be zero or more seconds, not {interval}")
        self.path = Path(path)
        self.interval = interval
        self.next_at = now + interval
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._digest = self._hash(self._read())
        self._failed_digest: str | None = None

    def due(self, now: float) -> bool:
        """True when the next poll is due (cheap: called on every decision)."""
        return now >= self.next_at

    def poll(self, now: float) -> str | None:
        """The file's new text when its content changed since the last accepted one.

        Returns None when nothing changed, when another thread is polling, or when the
        file cannot be read right now (a writer may be replacing it; the next poll tries
        again).
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self.next_at = now + self.interval
            signature = self._stat()
            if signature == self._signature:
                return None
            text = self._read()
            if text is None:
                return None
            self._signature = signature
            digest = self._hash(text)
            if digest in (self._digest, self._failed_digest):
                return None
            return text
        finally:
            self._lock.release()

    def accepted(self, text: str) -> None:
        """The engine loaded `text`: it is the content to compare against from now on."""
        self._digest = self._hash(text)
        self._failed_digest = None

    def rejected(self, text: str) -> None:
        """`text` did not load: do not report it again until the file changes."""
        self._failed_digest = self._hash(text)

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    @staticmethod
    def _hash(text: str | None) -> str:
        return hashlib.sha256((text or "").encode()).hexdigest()
