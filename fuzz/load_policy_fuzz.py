"""atheris harness: `load_policy` on any text (docs/fuzzing.md).

    pip install atheris
    mkdir -p /tmp/fuzz-load /tmp/fuzz-artifacts
    python fuzz/load_policy_fuzz.py -max_total_time=180 -dict=fuzz/policy.dict \
        -artifact_prefix=/tmp/fuzz-artifacts/ /tmp/fuzz-load

An empty first corpus directory is seeded with the seeds of the tests (examples/, the
policies of docs/, tests/fuzz_corpus/load/), and libFuzzer adds what it finds there.

Each input is UTF-8 (bytes that are not become lone surrogates, which a Python caller can
also pass). The property is `check_text` of tests/test_fuzz_load.py: a policy that builds an
engine and answers calls, or a PolicyError whose issues read well; nothing else. A JSON
object is also loaded as a parsed document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

# _harness first: it instruments policylayer_core before anything else imports it.
from _harness import crash_on_failure, test_fuzz_load, use_libfuzzer_timeouts

from policylayer_core import load_policy


def check(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    test_fuzz_load.check_text(text)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return
    if isinstance(document, dict):
        test_fuzz_load.check_load(lambda: load_policy(document), None)


def _seed(argv: list[str]) -> None:
    """Fill an empty first corpus directory with the tests' seeds (examples, docs, corpus)."""
    directories = [Path(arg) for arg in argv[1:] if not arg.startswith("-")]
    if directories and directories[0].is_dir() and not any(directories[0].iterdir()):
        for i, text in enumerate(test_fuzz_load.SEED_TEXTS.values()):
            (directories[0] / f"seed-{i:03d}").write_bytes(text.encode("utf-8", "surrogateescape"))


def main() -> None:
    _seed(sys.argv)
    use_libfuzzer_timeouts()
    atheris.Setup(sys.argv, crash_on_failure(check))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
