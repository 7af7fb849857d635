"""`policylayer test`: find case files, run them, report (text, JSON, JUnit, coverage)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from policylayer_core.errors import PolicyError
from policylayer_core.loader import LoadedPolicy, load_policy
from policylayer_core.policytest import (
    SUFFIX,
    CaseFile,
    CaseFileError,
    CaseResult,
    load_case_file,
    run_case,
)
from policylayer_core.policytest_coverage import Coverage, measure_coverage

__all__ = ["run_command"]


def run_command(args: argparse.Namespace) -> int:
    """`policylayer test POLICY_OR_DIR [CASES...]`: 0 all passed, 1 failures, 2 bad input."""
    parser: argparse.ArgumentParser = args.parser
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        parser.error(f"--fail-under takes a percentage from 0 to 100, not {args.fail_under:g}.")
    paths, override = _case_paths(Path(args.target), [Path(c) for c in args.cases], parser)
    files, problems = [], []
    for path in paths:
        try:
            files.append(load_case_file(path))
        except CaseFileError as error:
            problems.append(str(error))
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        return 2
    policies: dict[Path, LoadedPolicy] = {}
    runs: list[tuple[CaseFile, LoadedPolicy]] = []
    for case_file in files:
        where = override or case_file.policy_path
        try:
            policy = policies.get(where.resolve()) or load_policy(where)
        except PolicyError as error:
            sys.stderr.write(f"{error}\n")
            return 1
        runs.append((case_file, policies.setdefault(where.resolve(), policy)))
    suites = [(f, p, [run_case(case, p) for case in f.cases]) for f, p in runs]
    results = [result for _, _, found in suites for result in found]
    failed = sum(1 for result in results if not result.passed)
    summary = f"{len(results) - failed} passed, {failed} failed"
    reports = []
    if args.coverage or args.fail_under is not None:
        reports = [
            measure_coverage(p, [r for f, q, found in suites if q is p for r in found])
            for p in {id(p): p for _, p in runs}.values()
        ]
    rules = [rule for report in reports for rule in report.rules]
    percent = 100.0 * sum(1 for r in rules if r[2]) / len(rules) if rules else 100.0
    low = args.fail_under is not None and percent < args.fail_under
    if args.junit_xml is not None:
        from policylayer_core.junit import write_junit  # noqa: PLC0415 - only when asked

        try:
            write_junit(args.junit_xml, [(str(f.path), found) for f, _, found in suites])
        except OSError as exc:
            parser.error(f"Cannot write {args.junit_xml!r} ({exc.strerror}); choose another path.")
    if args.json:
        report = _json_report(
            suites, reports if args.coverage else [], percent if reports else None
        )
        sys.stdout.write(json.dumps(report | {"summary": summary}, ensure_ascii=False, indent=2))
        sys.stdout.write("\n")
        return 1 if failed or low else 0
    lines = []
    for case_file, _, found in suites:
        for result in found:
            if result.failure is not None:
                lines += [f"FAILED {case_file.path}::{result.case.name}", result.failure.format()]
    lines += [report.format() for report in reports] if args.coverage else []
    if low:
        lines.append(f"Coverage {percent:.1f}% is below --fail-under {args.fail_under:g}%.")
    sys.stdout.write("\n".join([*lines, summary]) + "\n")
    return 1 if failed or low else 0


def _case_paths(
    target: Path, cases: list[Path], parser: argparse.ArgumentParser
) -> tuple[list[Path], Path | None]:
    """The case files to run, and the policy that replaces theirs (a policy file given)."""
    if not target.exists():
        parser.error(f"{str(target)!r} does not exist; give a policy file or a directory.")
    if target.is_dir():
        if cases:
            parser.error("Case files may follow a policy file, not a directory; name it alone.")
        found = sorted(p for p in target.rglob("*" + SUFFIX) if p.is_file())
        if not found:
            parser.error(f"No {SUFFIX} file is under {str(target)!r}; see docs/testing.md.")
        return found, None
    if target.name.endswith(SUFFIX):
        return [target, *cases], None
    if not cases:
        beside = target.with_name(target.stem + SUFFIX)
        if not beside.is_file():
            parser.error(
                f"No cases for {str(target)!r}: {str(beside)!r} does not exist; write it, or "
                "name the case files after the policy."
            )
        cases = [beside]
    return cases, target


def _json_report(
    suites: list[tuple[CaseFile, LoadedPolicy, list[CaseResult]]],
    reports: list[Coverage],
    percent: float | None,
) -> dict[str, Any]:
    cases = [
        {
            "file": str(case_file.path),
            "name": r.case.name,
            "line": r.case.line,
            "passed": r.passed,
            "seconds": r.seconds,
            "failure": r.failure.to_json() if r.failure is not None else None,
        }
        for case_file, _, found in suites
        for r in found
    ]
    coverage = [
        {
            "policy": c.policy.source,
            "percent": c.percent,
            "reached": c.reached,
            "total": len(c.rules),
            "rules": [{"pointer": p, "kind": k, "reached": hit} for p, k, hit in c.rules],
        }
        for c in reports
    ]
    passed = sum(1 for c in cases if c["passed"])
    return {
        "passed": passed,
        "failed": len(cases) - passed,
        "cases": cases,
        "coverage": coverage or None,
        "coverage_percent": percent,
    }
