"""What the suite is made of: sizes per mode, rows that could not be built, the row list.

To add a row, write a builder that returns `Case`s (see harness.Case) and add it to
`ROW_BUILDERS`; to judge it, add a `Budget` in budgets.py naming its key. A builder
for a peer imports the peer inside `optional(...)`, so a missing package becomes a
"not installed" row instead of a crash.

The planned row "PolicyMiddleware above a bare call_next vs FastMCP
RateLimitingMiddleware" fits this shape as it is: a builder in a new module
`cases_middleware.py` returning three AWAIT3 cases (a bare `call_next`, the same
call through `PolicyMiddleware`, and through FastMCP's `RateLimitingMiddleware`),
wrapped in `optional(...)` for fastmcp, plus a `Budget` with `above="<bare call_next
key>"` in budgets.py (budgets can judge a row's median minus another row's median).
The floor "await an empty async 3-argument call" is already measured for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from benchmarks.harness import Case, one_line

__all__ = ["Missing", "Row", "Sizes", "optional"]


@dataclass(frozen=True)
class Sizes:
    """The sizes a mode uses."""

    tools: int
    identities: int
    memory_identities: int
    walk: int  # length of the call sequences the scale rows walk (at least `identities`)


@dataclass(frozen=True)
class Missing:
    """A row that could not be built (its peer is not installed, or failed to set up)."""

    key: str
    name: str
    reason: str
    group: str = "peer"
    failed: bool = False


Row = Case | Missing


def optional(
    names: Mapping[str, str],
    keys: Sequence[str],
    build: Callable[[], list[Case]],
    group: str = "peer",
) -> list[Row]:
    """Build a peer's rows; when the peer cannot be imported, one `Missing` per row.

    `keys` are the rows the builder would return (`names` maps keys to display names),
    so the table keeps the rows (as "not installed") either way. Any other exception while building
    is kept as a failed row: the run goes on and exits non-zero at the end.
    """
    try:
        return list(build())
    except ImportError as exc:
        what = exc.name or str(exc)
        return [Missing(key, names[key], f"not installed ({what})", group) for key in keys]
    except Exception as exc:
        reason = f"set-up failed: {one_line(exc)}"
        return [Missing(key, names[key], reason, group, failed=True) for key in keys]
