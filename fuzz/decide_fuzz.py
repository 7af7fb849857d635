"""atheris harness: `decide()` on any call, and rate limits over any sequence (docs/fuzzing.md).

    pip install atheris
    mkdir -p /tmp/fuzz-decide /tmp/fuzz-artifacts
    python fuzz/decide_fuzz.py -max_total_time=180 -artifact_prefix=/tmp/fuzz-artifacts/ \
        /tmp/fuzz-decide

The first byte picks what to check: one call to one of the policies of
tests/test_fuzz_decide.py (always a Decision; no internal failure for JSON; for the
reference policy, the reference evaluation's effect and rule), or a sequence of calls, clock
advances and refunds on the limits policy against the reference buckets.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import atheris

# _harness first: it instruments policylayer_core before anything else imports it.
from _harness import crash_on_failure, use_libfuzzer_timeouts

import test_fuzz_decide as fd

POLICY_NAMES = sorted(fd.POLICIES)
KEYS = [*fd.ARG_KEYS, "0", "*", ""]
ODD: list[Any] = [math.nan, math.inf, -math.inf, b"x", frozenset({"a"}), ("a",), 10**400]


def _name(fdp: atheris.FuzzedDataProvider, known: list[str]) -> str:
    if fdp.ConsumeBool():
        return known[fdp.ConsumeIntInRange(0, len(known) - 1)]
    return str(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24)))


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return str(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 16)))
    if kind == 5:
        return fd.INTERESTING[fdp.ConsumeIntInRange(0, len(fd.INTERESTING) - 1)]
    if kind == 6:
        return [] if fdp.ConsumeBool() else {}
    if kind in (7, 8):
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {
        KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]: _value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 5))
    }


def _arguments(fdp: atheris.FuzzedDataProvider) -> Any:
    if fdp.ConsumeIntInRange(0, 3) == 0:  # sometimes JSON text, as an MCP client sends it
        try:
            return json.loads(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 200)))
        except (ValueError, RecursionError):
            return None
    args = _value(fdp)
    if isinstance(args, dict) and fdp.ConsumeIntInRange(0, 7) == 0:
        args[KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]] = ODD[
            fdp.ConsumeIntInRange(0, len(ODD) - 1)
        ]
    return args


def _call(fdp: atheris.FuzzedDataProvider, tools: list[str]) -> fd.Call:
    return fd.Call(
        identity=_name(fdp, [*fd.GRANTED, *fd.IDENTITIES]),
        tool=_name(fdp, tools),
        args=_arguments(fdp),
        session=None if fdp.ConsumeBool() else _name(fdp, ["s1", "s2"]),
        approved=fdp.ConsumeBool(),
    )


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        steps: list[Any] = []
        tools = ["read", "write", "batch", "spec", "apply", "nope"]
        while fdp.remaining_bytes() and len(steps) < 60:
            kind = fdp.ConsumeIntInRange(0, 5)
            if kind == 0:
                steps.append(("advance", fdp.ConsumeIntInRange(0, 64) / 4))
            elif kind == 1:
                steps.append(("refund", fdp.ConsumeIntInRange(0, 40)))
            else:
                call = _call(fdp, tools)
                if fd.is_json(call.args):  # the reference buckets judge JSON costs only
                    steps.append(
                        fd.Call(
                            identity="alice" if fdp.ConsumeBool() else "bob",
                            tool=call.tool,
                            args=call.args,
                            session=call.session if call.session in (None, "s1", "s2") else None,
                            approved=call.approved,
                        )
                    )
        fd.run_limit_steps(steps)
        return
    policy = POLICY_NAMES[fdp.ConsumeIntInRange(0, len(POLICY_NAMES) - 1)]
    call = _call(fdp, [*fd.NAMED_TOOLS, *fd.TOOL_NAMES])
    json_call = fd.is_json([call.identity, call.tool, call.args, call.session])
    if policy == "reference" and json_call:
        fd.check_against_reference(fd.ENGINES[policy], call)
    else:
        fd.check_decide(fd.ENGINES[policy], call, json_only=json_call)


def main() -> None:
    use_libfuzzer_timeouts(fd)
    atheris.Setup(sys.argv, crash_on_failure(check))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
