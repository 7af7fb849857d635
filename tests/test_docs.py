"""The documentation cannot drift: every policy in docs/*.md loads, every decision it shows is real.

How the Markdown is read (see docs/policy-format.md, "How the examples are checked"):

* Every ```json block that parses to an object with "version": "1" is a policy (or a bundle)
  and must load with `load_policy`. A ```json block that fails to parse but mentions "version"
  is a broken policy and fails the test. Other ```json blocks (fragments) are not checked.
* A marker is an HTML comment holding one word, on its own line, followed (after blank lines
  only) by the block it applies to:
  - `<!-- decisions -->` before a Markdown table: each row is one call, made in order on one
    fresh engine for the policy above it (clock fixed at 0.0); the columns `tool`, `effect`,
    `rule` and `reason` are required, `identity` (default "alice"), `args` (JSON; empty or
    "—" for none), `session`, `approved`, `allowed` and `retry_after` are optional.
  - `<!-- decisions -->` before a ```python block: the block runs with `policy` bound to the
    dict of the policy above it.
  - `<!-- run -->` before a ```python block: the block runs on its own.
  - `<!-- output -->` before a ```text block that follows a run block: what the run block
    printed must equal it.
  - `<!-- load-error -->` before a ```json policy: loading it must raise `PolicyError`.
  A python block that runs also has every zero-argument `test_*` function it defines called.
  Every other ```python block must at least compile.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from policylayer_core import Decision, PolicyEngine, PolicyError, load_policy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

MARKERS = frozenset({"decisions", "run", "output", "load-error"})
MARKER = re.compile(r"<!--\s*([a-z][a-z-]*)\s*-->")
NONE_CELLS = frozenset({"", "—", "-", "none"})
REQUIRED_COLUMNS = frozenset({"tool", "effect", "rule", "reason"})
OPTIONAL_COLUMNS = frozenset({"identity", "args", "session", "approved", "allowed", "retry_after"})
TABLE_COLUMNS = REQUIRED_COLUMNS | OPTIONAL_COLUMNS


@dataclass
class Block:
    """A fenced code block or a Markdown table, with the marker written just before it."""

    where: str
    kind: str  # "code" or "table"
    lang: str
    text: str
    marker: str | None


@dataclass
class Case:
    """One check: `kind` says what to do with `block`."""

    kind: str
    block: Block
    policy: str | None = None
    output: Block | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.block.where}-{self.kind}"


def read_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The code blocks and tables of one Markdown file, and any misplaced markers."""
    lines = path.read_text("utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: str | None = None
    marker_at = 0
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        where = f"{path.name}:{i + 1}"
        found = MARKER.fullmatch(stripped)
        if found:
            if found.group(1) not in MARKERS:
                problems.append(f"{where}: unknown marker <!-- {found.group(1)} -->")
            elif marker is not None:
                problems.append(f"{path.name}:{marker_at}: <!-- {marker} --> has no block")
            marker, marker_at = found.group(1), i + 1
            i += 1
            continue
        if stripped.startswith("```"):
            lang = stripped[3:].strip().split(" ")[0]
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                problems.append(f"{where}: the code block is not closed")
            blocks.append(Block(where, "code", lang, textwrap.dedent("\n".join(body)), marker))
            marker = None
            i += 1
            continue
        if stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            blocks.append(Block(where, "table", "", "\n".join(rows), marker))
            marker = None
            continue
        if stripped and marker is not None:
            problems.append(f"{path.name}:{marker_at}: <!-- {marker} --> has no block after it")
            marker = None
        i += 1
    if marker is not None:
        problems.append(f"{path.name}:{marker_at}: <!-- {marker} --> has no block")
    return blocks, problems


def is_policy(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("version") == "1"


def collect(path: Path) -> list[Case]:
    """Turn one file's blocks into checks."""
    blocks, problems = read_blocks(path)
    cases: list[Case] = []
    if problems:
        cases.append(Case("markers", Block(path.name, "file", "", "", None), problems=problems))
    policy: str | None = None
    last_run: Case | None = None
    for block in blocks:
        previous_run, last_run = last_run, None
        if block.marker == "output":
            if previous_run is None or block.kind != "code":
                cases.append(Case("misplaced", block, problems=["output must follow a run block"]))
            else:
                previous_run.output = block
            continue
        if block.kind == "code" and block.lang == "json":
            if is_policy(block.text):
                if block.marker == "load-error":
                    cases.append(Case("load-error", block))
                elif block.marker is not None:
                    problem = f"<!-- {block.marker} --> goes before the table or python block"
                    cases.append(Case("misplaced", block, problems=[problem]))
                else:
                    cases.append(Case("policy", block))
                    policy = block.text
            elif '"version"' in block.text:
                cases.append(Case("broken-json", block))
            elif block.marker is not None:
                cases.append(Case("misplaced", block, problems=["marker on a non-policy"]))
            continue
        if block.marker == "decisions":
            if policy is None:
                cases.append(Case("misplaced", block, problems=["no policy above this"]))
            elif block.kind == "table":
                cases.append(Case("table", block, policy))
            elif block.lang == "python":
                last_run = Case("python", block, policy)
                cases.append(last_run)
            else:
                cases.append(Case("misplaced", block, problems=["decisions need a table"]))
        elif block.marker == "run":
            if block.lang != "python":
                cases.append(Case("misplaced", block, problems=["only python blocks run"]))
            else:
                last_run = Case("python", block)
                cases.append(last_run)
        elif block.marker is not None:
            cases.append(Case("misplaced", block, problems=[f"{block.marker} does not fit"]))
        elif block.lang == "python" and not block.text.lstrip().startswith(">>>"):
            cases.append(Case("compile", block))
    return cases


CASES = [case for path in sorted(DOCS.glob("*.md")) for case in collect(path)]


def test_the_docs_have_checked_examples() -> None:
    kinds = {case.kind for case in CASES}
    assert {"policy", "table", "python"} <= kinds, "docs/ lost its checked examples"


# -- one row of a decisions table --------------------------------------------------------


def split_row(row: str) -> list[str]:
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [unquote(cell) for cell in re.split(r"(?<!\\)\|", inner)]


def unquote(cell: str) -> str:
    cell = cell.strip().replace("\\|", "|")
    ticks = re.match(r"`+", cell)
    if ticks and cell.endswith(ticks.group(0)) and len(cell) >= 2 * len(ticks.group(0)):
        cell = cell[len(ticks.group(0)) : -len(ticks.group(0))]
        if len(ticks.group(0)) > 1:
            cell = cell.strip()
    return cell


def flag(cell: str) -> bool:
    value = cell.lower()
    if value in ("yes", "true"):
        return True
    if value in ("no", "false") or value in NONE_CELLS:
        return False
    raise AssertionError(f"expected yes or no, not {cell!r}")


def check_row(engine: PolicyEngine, row: dict[str, str], where: str) -> None:
    args_cell = row.get("args", "")
    args: Any = None if args_cell in NONE_CELLS else json.loads(args_cell)
    session_cell = row.get("session", "")
    d = engine.decide(
        row.get("identity") or "alice",
        row["tool"],
        args,
        session=None if session_cell in NONE_CELLS else session_cell,
        approved=flag(row.get("approved", "")),
    )
    rule = "" if row["rule"] == "(root)" else row["rule"]
    assert (d.effect.value, d.rule, d.reason) == (row["effect"], rule, row["reason"]), (
        f"{where}: the engine decided\n  effect: {d.effect.value}\n  rule:   {d.rule}\n"
        f"  reason: {d.reason}"
    )
    if "allowed" in row:
        assert d.allowed is flag(row["allowed"]), f"{where}: allowed is {d.allowed}"
    if "retry_after" in row:
        expected = None if row["retry_after"] in NONE_CELLS else float(row["retry_after"])
        assert d.retry_after == (None if expected is None else pytest.approx(expected)), where


def check_table(case: Case) -> None:
    assert case.policy is not None
    lines = case.block.text.splitlines()
    header = [cell.lower() for cell in split_row(lines[0])]
    assert not set(header) - TABLE_COLUMNS, f"unknown columns {set(header) - TABLE_COLUMNS}"
    assert set(header) >= REQUIRED_COLUMNS, f"missing columns {REQUIRED_COLUMNS - set(header)}"
    assert len(lines) > 2, "a decisions table needs at least one row"
    engine = PolicyEngine(load_policy(case.policy), clock=lambda: 0.0)
    file, line = case.block.where.rsplit(":", 1)
    for offset, text in enumerate(lines[2:], start=2):
        cells = split_row(text)
        assert len(cells) == len(header), f"{file}:{int(line) + offset}: wrong number of cells"
        check_row(engine, dict(zip(header, cells, strict=True)), f"{file}:{int(line) + offset}")


# -- running python blocks ----------------------------------------------------------------


def run_python(case: Case) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    if case.policy is not None:
        namespace["policy"] = json.loads(case.policy)
    code = compile(case.block.text, case.block.where, "exec")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, namespace)
        for name, value in list(namespace.items()):
            if name.startswith("test_") and inspect.isfunction(value):
                value()
    if case.output is not None:
        got = "\n".join(line.rstrip() for line in printed.getvalue().rstrip().splitlines())
        want = "\n".join(line.rstrip() for line in case.output.text.rstrip().splitlines())
        assert got == want, f"{case.output.where}: the block printed\n{got}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_docs(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples may read files such as examples/qflow-policy.json
    if case.problems:
        pytest.fail("; ".join(case.problems))
    elif case.kind == "policy":
        load_policy(case.block.text)
    elif case.kind == "load-error":
        with pytest.raises(PolicyError):
            load_policy(case.block.text)
    elif case.kind == "broken-json":
        json.loads(case.block.text)  # raises, naming the syntax error
        pytest.fail("a json block that mentions 'version' is not a policy")
    elif case.kind == "table":
        check_table(case)
    elif case.kind == "python":
        run_python(case)
    elif case.kind == "compile":
        compile(case.block.text, case.block.where, "exec")
    else:  # pragma: no cover - every kind is handled above
        pytest.fail(f"unknown case kind {case.kind}")


def test_the_table_reader() -> None:
    assert split_row('| `a\\|b` | `{"x": 1}` | `` `y` `` |') == ["a|b", '{"x": 1}', "`y`"]
    assert flag("yes") and not flag("—")
    assert isinstance(PolicyEngine({"version": "1", "default": "allow"}).decide("a", "t"), Decision)
