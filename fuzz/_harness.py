"""What both atheris harnesses share: the test modules' properties, made fit for libFuzzer.

The properties are the ones pytest runs (tests/test_fuzz_load.py, tests/test_fuzz_decide.py),
imported from there so a harness and the suite can never disagree about what a bug is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Instrument the library (not its dependencies: they would only slow the fuzzer down) before
# anything imports it, so libFuzzer sees which branches of policylayer_core an input reaches.
with atheris.instrument_imports(include=["policylayer_core"]):
    import policylayer_core
    import policylayer_core.loader  # noqa: F401

import test_fuzz_load  # noqa: E402 - after the instrumented import, on purpose


@contextlib.contextmanager
def _no_time_limit(seconds: float = 0.0) -> Iterator[None]:
    yield


def use_libfuzzer_timeouts(*modules: Any) -> None:
    """libFuzzer's -timeout owns SIGALRM; the tests' own time limit must stay out of its way."""
    for module in (test_fuzz_load, *modules):
        module.time_limit = _no_time_limit


def crash_on_failure(check: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Turn pytest's outcome exceptions (BaseException) into an error libFuzzer reports."""

    def run(data: bytes) -> None:
        try:
            check(data)
        except Exception:
            raise
        except BaseException as failure:
            if isinstance(failure, KeyboardInterrupt | SystemExit):
                raise
            raise AssertionError(f"{type(failure).__name__}: {failure}") from failure

    return run
