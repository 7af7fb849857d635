"""The table: rows from measurements and budgets, rendered as text or Markdown; the
environment header; rewriting the results section of docs/performance.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmarks.budgets import COMPARED_WITH, Judgement
from benchmarks.harness import Measurement

__all__ = [
    "COLUMNS",
    "DOCS_END",
    "DOCS_START",
    "Environment",
    "TableRow",
    "environment",
    "fmt_ns",
    "ratio_text",
    "render_markdown",
    "render_text",
    "verdict_text",
    "write_docs",
]

COLUMNS = (
    "case",
    "median",
    "p99",
    "× floor",
    "compared with",
    "ratio",
    "budget",
    "budget at this floor",
    "verdict",
)

DOCS_START = "<!-- benchmark-results:start -->"
DOCS_END = "<!-- benchmark-results:end -->"

_PACKAGES = (
    "policylayer-core",
    "cedarpy",
    "pycasbin",
    "limits",
    "pyrate-limiter",
    "fastjsonschema",
    "jsonschema",
    "pydantic",
)


@dataclass(frozen=True)
class Environment:
    python: str
    cpu: str
    cores: int
    load: tuple[float, float, float]
    versions: Mapping[str, str]
    date: str


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def environment() -> Environment:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return Environment(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        load=_load(),
        versions=versions,
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def load_text(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load) + " (1, 5, 15 min)"


def fmt_ns(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value < 1_000:
        return f"{value:.0f} ns"
    if value < 1_000_000:
        return f"{value / 1_000:.2f} µs"
    return f"{value / 1_000_000:.2f} ms"


def ratio_text(ours: float, other: float) -> str:
    """How many times faster (or slower) `ours` is than `other`."""
    if math.isnan(ours) or math.isnan(other) or ours <= 0 or other <= 0:
        return "—"
    r = other / ours
    if r >= 1:
        return f"{r:,.0f}× faster" if r >= 100 else f"{r:.1f}× faster"
    return f"{1 / r:.2f}× slower"


def verdict_text(judgements: Sequence[Judgement], judged: bool) -> str:
    if not judgements:
        return ""
    if not judged:
        return "not judged"
    if any(j.met is False for j in judgements):
        return "MISSED"
    if any(j.met is None for j in judgements):
        notes = "; ".join(j.note for j in judgements if j.met is None)
        return f"can't tell ({notes})"
    return "met"


@dataclass(frozen=True)
class TableRow:
    cells: tuple[str, ...]
    section: str


def measured_row(
    m: Measurement,
    *,
    floor_ns: float,
    medians: Mapping[str, float],
    judgements: Sequence[Judgement],
    judged: bool,
) -> TableRow:
    case = m.case
    other, compared = COMPARED_WITH.get(case.key, ("", ""))
    ratio = ratio_text(m.median_ns, medians.get(other, math.nan)) if other else ""
    return TableRow(
        (
            case.name,
            fmt_ns(m.median_ns),
            fmt_ns(m.p99_ns),
            f"{m.median_ns / floor_ns:.1f}×" if floor_ns > 0 else "—",
            compared,
            ratio,
            "; ".join(j.budget for j in judgements),
            "; ".join(j.rescaled for j in judgements),
            verdict_text(judgements, judged),
        ),
        case.group,
    )


def plain_row(
    name: str,
    value: str,
    group: str,
    *,
    judgements: Sequence[Judgement] = (),
    judged: bool = True,
) -> TableRow:
    return TableRow(
        (
            name,
            value,
            "—",
            "—",
            "",
            "",
            "; ".join(j.budget for j in judgements),
            "; ".join(j.rescaled for j in judgements),
            verdict_text(judgements, judged),
        ),
        group,
    )


def render_text(rows: Sequence[TableRow]) -> str:
    widths = [len(c) for c in COLUMNS]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row.cells, strict=True)]
    numeric = {1, 2, 3, 5}

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    lines = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    section = None
    for row in rows:
        if section is not None and row.section != section:
            lines.append("")
        section = row.section
        lines.append(line(row.cells))
    return "\n".join(lines)


def render_markdown(rows: Sequence[TableRow]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    align = ["---", "---:", "---:", "---:", "---", "---:", "---", "---", "---"]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row.cells) + " |" for row in rows]
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    """Replace what lies between the result markers of `path` with `section`."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(DOCS_START) + r".*?" + re.escape(DOCS_END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(
            f"{path}: the markers {DOCS_START} and {DOCS_END} were not found; "
            "the results section was not written"
        )
    replacement = f"{DOCS_START}\n{section.strip()}\n{DOCS_END}"
    path.write_text(pattern.sub(lambda _: replacement, text, count=1), encoding="utf-8")
