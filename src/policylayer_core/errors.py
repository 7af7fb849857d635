"""The one exception this library raises for bad policies, and the issues it carries.

A denial is never an exception: `decide()` returns a `Decision`. `PolicyError` is for
a policy document that cannot be loaded (or a reload that was refused), and it collects
every problem found, not just the first, so an author fixes the file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PolicyError", "PolicyIssue"]


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy document.

    `pointer` is an RFC 6901 JSON pointer into the document ("" is the root);
    `line` and `column` (1-based, columns in characters) are set when the
    document was given as JSON text or read from a file.
    """

    pointer: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return self.format()

    def format(self, source: str | None = None) -> str:
        """`SOURCE:LINE:COL: POINTER: message`, leaving out the parts that are unknown."""
        where = [source] if source else []
        if self.line is not None:
            where += [str(self.line), str(self.column)]
        prefix = ":".join(where)
        pointer = self.pointer or "(document root)"
        return f"{prefix}: {pointer}: {self.message}" if prefix else f"{pointer}: {self.message}"


def _sort_key(issue: PolicyIssue) -> tuple[int, int, str]:
    return (issue.line or 0, issue.column or 0, issue.pointer)


class PolicyError(ValueError):
    """A policy document could not be loaded; `.issues` lists every problem found.

    Subclasses `ValueError`, so code that already catches bad values keeps working.
    `.source` names where the document came from (a path, or "<text>" / "<dict>").
    """

    issues: list[PolicyIssue]
    source: str

    def __init__(self, issues: Iterable[PolicyIssue], *, source: str = "<policy>") -> None:
        self.issues = sorted(issues, key=_sort_key)
        self.source = source
        super().__init__(self._describe())

    def _describe(self) -> str:
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        head = f"The policy {self.source} has {count} {noun}:"
        lines = [f"  {issue.format(self.source)}" for issue in self.issues]
        return "\n".join([head, *lines])
