"""`JsonlSink`: audit events appended to a JSON Lines file, batched and rotated by size.

Each event is one line of UTF-8 JSON (`AuditEvent.to_json()`) ending in `\\n`. The file
is opened for appending, never truncated, so closing and reopening it loses nothing.
Before a write that would take the file past `max_bytes`, it is rotated: `audit.jsonl`
becomes `audit.jsonl.1`, `.1` becomes `.2`, and so on, keeping `backups` old files (with
`backups=0` the old file is deleted). A batch is never split, so a file is only larger
than `max_bytes` when a single batch is.

Durability. `emit()` appends the event to an in-memory buffer; the buffer is written when
it holds `batch_size` events and on every `flush()`, as one `os.write` of the joined lines
straight to the kernel (there is no second, userspace buffer). A line that was written
survives the process being killed (SIGKILL, OOM killer, crash): the kernel owns it. So a
killed process loses at most the events buffered since the last successful write - at
most `batch_size - 1` - plus those still in the engine's queue, which the engine hands to
the sink and flushes at least every `AuditOptions.flush_interval` (0.25 s by default).
While writes fail, events stay buffered up to `10 * batch_size` (then the oldest are
dropped and counted in `dropped`), and a kill loses those too. Surviving an operating
system crash or power loss also needs fsync: with `fsync=True` (the default) the file is
fsynced on `close()` and before each rotation (and its directory after the renames), not
on every flush. An fsync costs milliseconds (tens on network storage) and the engine
flushes once per batch under load, so fsync per batch would cap the audit thread at a few
hundred batches a second and let the engine's queue fill and drop events: routine loss
traded for a rare one. A power loss can therefore lose lines written since the last
fsync that the kernel had not yet written back (by default within about 30 s on Linux).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import deque
from pathlib import Path
from types import TracebackType

from policylayer_core.audit import AuditEvent

__all__ = ["JsonlSink"]

# O_BINARY keeps Windows from turning "\n" into "\r\n"; it is 0 (absent) on POSIX.
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
_MODE = 0o640  # audit logs name identities and tools: not for every local user to read
_BUFFER_BATCHES = 10  # while writes fail, keep at most this many batches of events


class JsonlSink:
    """An `AuditSink` writing one JSON line per event to `path` (see the module docstring).

    Thread-safe: one lock guards the buffer and the file. Errors from the file system
    (disk full, permission denied) are raised as `OSError` out of `emit`, `flush` and
    `close`, with the events kept for the next attempt.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 256,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 5,
        fsync: bool = True,
    ) -> None:
        if batch_size < 1 or max_bytes < 1 or backups < 0:
            raise ValueError("batch_size and max_bytes must be at least 1, backups at least 0")
        self._path = Path(path)
        self._batch_size = batch_size
        self._max_bytes = max_bytes
        self._backups = backups
        self._fsync = fsync
        self._lock = threading.Lock()
        self._buffer: deque[bytes] = deque()
        self._since_attempt = 0  # events emitted since the last write attempt
        self._fd: int | None = None  # opened on the first write, so no empty file appears
        self._size = 0  # bytes in the open file
        self._torn = False  # the open file does not end in "\n" (a write cut short before)
        self._closed = False
        self.dropped = 0  # events dropped, oldest first, because writes kept failing

    @property
    def path(self) -> Path:
        """The current log file; rotated files are this path with `.1`, `.2`, ... added."""
        return self._path

    def emit(self, event: AuditEvent) -> None:
        """Buffer one event; write the buffer once `batch_size` events have come in.

        An `OSError` from here means the write failed, not that the event was lost: it
        stays buffered and the next `flush()` (or the next full batch) tries again.
        """
        line = (event.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                raise ValueError(f"this JsonlSink for {self._path} is closed; it takes no events")
            self._buffer.append(line)
            if len(self._buffer) > _BUFFER_BATCHES * self._batch_size:
                self._buffer.popleft()
                self.dropped += 1
            self._since_attempt += 1
            # Counting emits since the last attempt (not the buffer's length) means a failing
            # disk is retried once per batch, not once per event, when flush() is not called.
            if self._since_attempt >= self._batch_size:
                self._write()

    def flush(self) -> None:
        """Write every buffered event to the file now (after close(), retry a failed close)."""
        with self._lock:
            if self._closed:
                self._close()
            else:
                self._write()

    def close(self) -> None:
        """Write what is buffered, fsync (when `fsync=True`) and close the file.

        Idempotent. If the final write fails the error is raised, the events stay
        buffered, and calling close() again tries again.
        """
        with self._lock:
            self._closed = True
            self._close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- with the lock held ---------------------------------------------------------------

    def _close(self) -> None:
        if self._fd is None and not self._buffer:
            return
        try:
            self._write()
            if self._fsync and self._fd is not None:
                os.fsync(self._fd)
        finally:
            self._release()

    def _write(self) -> None:
        self._since_attempt = 0
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        if self._fd is None:
            self._open()
        if self._size > 0 and self._size + self._torn + len(data) > self._max_bytes:
            self._rotate()
            self._open()
        if self._torn:
            data = b"\n" + data  # so the cut-short line does not swallow the first new one
        fd, start = self._fd, self._size
        assert fd is not None  # opened above
        try:
            view = memoryview(data)
            while view:  # a short write (disk filling up) is retried, then raises
                written = os.write(fd, view)
                if written == 0:
                    raise OSError(errno.EIO, "the file accepted no bytes", str(self._path))
                view = view[written:]
        except OSError:
            # Take back a partial write so that the retry neither duplicates events nor
            # leaves half a line; if even that fails, reopening re-reads size and tail.
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._release()
            raise
        self._buffer.clear()
        self._size += len(data)
        self._torn = False

    def _open(self) -> None:
        fd = os.open(self._path, _FLAGS, _MODE)
        self._fd, self._size = fd, os.fstat(fd).st_size
        self._torn = self._size > 0 and self._last_byte() != b"\n"

    def _last_byte(self) -> bytes:
        try:
            with self._path.open("rb") as tail:
                tail.seek(-1, os.SEEK_END)
                return tail.read(1)
        except OSError:  # unreadable (write-only): assume the file ends cleanly
            return b"\n"

    def _rotate(self) -> None:
        # Everything written is in the file before it is renamed: a rotated file is final.
        if self._fsync and self._fd is not None:
            os.fsync(self._fd)
        self._release()
        if self._backups == 0:
            self._path.unlink(missing_ok=True)
        else:
            # Shift only up to the first missing number: a rotation cut short by an error
            # leaves a hole there, and repeating it must not move (and so overwrite) the
            # older files a second time. With no hole, os.replace onto the last number
            # deletes the oldest file in the same atomic step.
            hole = next(
                (n for n in range(1, self._backups) if not self._numbered(n).exists()),
                self._backups,
            )
            for n in range(hole - 1, 0, -1):
                os.replace(self._numbered(n), self._numbered(n + 1))
            os.replace(self._path, self._numbered(1))
        if self._fsync:
            self._sync_directory()

    def _numbered(self, n: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{n}")

    def _sync_directory(self) -> None:
        # Renames are durable only once the directory is synced; Windows cannot open one.
        if os.name != "posix":
            return
        fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # already gone; the next write reopens
                os.close(fd)
