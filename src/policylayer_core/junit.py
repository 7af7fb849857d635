"""JUnit XML for `policylayer test --junit-xml`: the report format CI systems read.

One `<testsuite>` per case file inside a `<testsuites>` root; one `<testcase>` per case, whose
`classname` is the case file and `name` the case's name. A failed case holds a `<failure>`
whose `message` is one line and whose text is what `policylayer test` prints for it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policylayer_core.policytest import CaseResult

__all__ = ["junit_xml", "write_junit"]

Suites = Sequence[tuple[str, Sequence["CaseResult"]]]


def junit_xml(suites: Suites, *, name: str = "policylayer test") -> ET.Element:
    """The JUnit XML `<testsuites>` element for (case file, results) pairs."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "time": 0.0}
    for file, results in suites:
        failures = sum(1 for r in results if r.failure is not None)
        seconds = sum(r.seconds for r in results)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=file,
            tests=str(len(results)),
            failures=str(failures),
            errors="0",
            skipped="0",
            time=f"{seconds:.6f}",
        )
        for result in results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=file,
                name=result.case.name,
                file=file,
                time=f"{result.seconds:.6f}",
            )
            if result.case.line is not None:
                case.set("line", str(result.case.line))
            if result.failure is not None:
                failure = ET.SubElement(case, "failure", message=result.failure.summary())
                failure.set("type", "PolicyCaseFailure")
                failure.text = result.failure.format()
        totals["tests"] += len(results)
        totals["failures"] += failures
        totals["time"] += seconds
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", f"{totals['time']:.6f}")
    ET.indent(root)
    return root


def write_junit(path: str | PathLike[str], suites: Suites) -> None:
    """Write the JUnit XML of `suites` to `path` (UTF-8, with an XML declaration)."""
    ET.ElementTree(junit_xml(suites)).write(path, encoding="utf-8", xml_declaration=True)
