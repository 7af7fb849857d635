""" "Did you mean" hints for values a policy author misspelt or wrote in another tool's words.

Close spellings are found by `difflib` (`gtt` → `gt`, `minutes` → `minute`); words that other
policy languages use for the same thing are found by a table, since no edit distance leads
from `greater_than` to `gt` or from `user` to `identity`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["did_you_mean"]

# Other spellings of this format's values, lower case, with `-` and spaces as `_`.
_SYNONYMS = {
    "greater_than": "gt",
    "greater": "gt",
    "more_than": "gt",
    ">": "gt",
    "greater_than_or_equal": "gte",
    "greater_or_equal": "gte",
    "ge": "gte",
    ">=": "gte",
    "less_than": "lt",
    "less": "lt",
    "<": "lt",
    "less_than_or_equal": "lte",
    "less_or_equal": "lte",
    "le": "lte",
    "<=": "lte",
    "equals": "eq",
    "equal": "eq",
    "is": "eq",
    "=": "eq",
    "==": "eq",
    "not_equal": "neq",
    "not_equals": "neq",
    "ne": "neq",
    "!=": "neq",
    "one_of": "in",
    "any_of": "in",
    "not_one_of": "not_in",
    "none_of": "not_in",
    "matches": "regex",
    "match": "regex",
    "regexp": "regex",
    "pattern": "regex",
    "like": "glob",
    "wildcard": "glob",
    "startswith": "starts_with",
    "prefix": "starts_with",
    "endswith": "ends_with",
    "suffix": "ends_with",
    "includes": "contains",
    "has": "contains",
    "exist": "exists",
    "present": "exists",
    "user": "identity",
    "per_user": "identity",
    "caller": "identity",
    "client": "identity",
    "agent": "identity",
    "principal": "identity",
    "per_identity": "identity",
    "per_session": "session",
    "conversation": "session",
    "all": "global",
    "shared": "global",
    "everyone": "global",
    "sec": "second",
    "s": "second",
    "min": "minute",
    "m": "minute",
    "hr": "hour",
    "h": "hour",
    "d": "day",
    "daily": "day",
    "hourly": "hour",
    "reject": "deny",
    "block": "deny",
    "forbid": "deny",
    "permit": "allow",
    "accept": "allow",
    "ask": "approve",
    "confirm": "approve",
    "require_approval": "approve",
    "dry_run": "shadow",
    "audit": "shadow",
    "monitor": "shadow",
    "enforcing": "enforce",
}


def did_you_mean(value: object, allowed: Sequence[str]) -> str:
    """` Did you mean 'x'?` for the allowed value `value` most likely stands for, or ''."""
    if type(value) is not str or not allowed:
        return ""
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    if word in allowed and word != value:
        return f" Did you mean '{word}'?"  # the right word in the wrong case
    synonym = _SYNONYMS.get(word)
    if synonym in allowed:
        return f" Did you mean '{synonym}'?"
    if word.endswith("s") and word[:-1] in allowed:
        return f" Did you mean '{word[:-1]}'?"  # minutes, hours, days
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
