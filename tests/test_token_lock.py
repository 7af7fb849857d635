"""The one-token mutex of the rate-limit store."""

from __future__ import annotations

import threading
import time

import pytest

from policylayer_core._token_lock import TokenLock


def test_it_excludes_other_threads() -> None:
    lock = TokenLock()
    counter = [0]

    def work() -> None:
        for _ in range(200):
            lock.acquire()
            try:
                seen = counter[0]
                time.sleep(0)  # gives the GIL away inside the critical section
                counter[0] = seen + 1
            finally:
                lock.put(None)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter[0] == 800  # no update lost


def test_a_waiter_blocks_until_the_holder_releases() -> None:
    lock = TokenLock()
    lock.acquire()
    got = threading.Event()

    def wait() -> None:
        with lock:
            got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not got.wait(0.05)
    lock.release()
    assert got.wait(5)
    waiter.join()


def test_with_releases_on_an_exception() -> None:
    lock = TokenLock()
    with pytest.raises(ValueError), lock:
        raise ValueError("boom")
    done = threading.Event()

    def take() -> None:
        with lock:
            done.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert done.wait(5)
    thread.join()
