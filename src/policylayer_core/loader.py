"""`load_policy`: from a path, JSON text or dict to a checked, immutable `LoadedPolicy`.

Every problem in the document is collected into one `PolicyError`: JSON syntax and
duplicate keys (from `jsontext`), the model's own errors (from pydantic, rewritten
into sentences with RFC 6901 pointers and "did you mean" hints), then the checks that
need the whole document (counter conflicts, grants naming unknown policies).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from policylayer_core._spelling import did_you_mean
from policylayer_core.errors import PolicyError, PolicyIssue
from policylayer_core.jsontext import parse_json_text, pointer_join
from policylayer_core.model import UNION_TAGS, Bundle, Limit, Policy, _allowed_keys

__all__ = ["LoadedPolicy", "load_policy"]


@dataclass(frozen=True, slots=True, eq=False)
class LoadedPolicy:
    """A policy document that loaded cleanly: the model, its source and its digest.

    `policies` maps each policy's name to its model ("" for a plain document);
    `grants` is the bundle's grant table (empty for a plain document, which applies
    to every identity). `digest` is a short SHA-256 of the canonical JSON, so audit
    events can say which version of a policy decided.
    """

    source: str
    document: Policy | Bundle
    raw: Mapping[str, Any]
    digest: str
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def is_bundle(self) -> bool:
        """True when the document names several policies and grants identities to them."""
        return isinstance(self.document, Bundle)

    @property
    def policies(self) -> dict[str, Policy]:
        """Each policy by name; a plain document is the one policy named ""."""
        if isinstance(self.document, Bundle):
            return dict(self.document.policies)
        return {"": self.document}

    @property
    def grants(self) -> dict[str, str]:
        """The bundle's grants (identity or glob -> policy name); empty for a plain document."""
        return dict(self.document.grants) if isinstance(self.document, Bundle) else {}


def load_policy(source: str | os.PathLike[str] | Mapping[str, Any] | LoadedPolicy) -> LoadedPolicy:
    """Load and check a policy document; raise `PolicyError` listing every problem.

    `source` is a path (`str` or `Path`), JSON text (a `str` whose first non-blank
    character is `{`), a dict, or an already loaded policy (returned as it is).
    """
    if isinstance(source, LoadedPolicy):
        return source
    if isinstance(source, Mapping):
        return _load_document(dict(source), "<dict>", {}, [])
    # A byte order mark may open JSON text (parse_json_text skips it), so look past it.
    if isinstance(source, str) and source.removeprefix("\ufeff").lstrip().startswith("{"):
        return _load_text(source, "<text>")
    if isinstance(source, str) and not source.strip():
        # Path("") is ".", the current directory: "Is a directory: '.'" would send the reader
        # looking for the wrong mistake.
        raise _single(
            "<text>",
            "load_policy was given an empty string, which is neither JSON text nor a path; "
            "pass the policy file's path, its JSON text or a dict.",
        )
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except IsADirectoryError:
            raise _single(
                str(path),
                f"The policy path {str(path)!r} is a directory; pass the policy file inside it.",
            ) from None
        except FileNotFoundError:
            raise _single(str(path), f"The policy file {str(path)!r} does not exist.") from None
        except (OSError, ValueError) as exc:  # ValueError: bad UTF-8, a NUL in the path
            raise _single(
                str(path), f"The policy file {str(path)!r} cannot be read: {exc}."
            ) from None
        return _load_text(text, str(path))
    raise _single(
        "<policy>",
        f"load_policy takes a path, JSON text or a dict, not a {type(source).__name__}.",
    )


def load_text(text: str, source: str) -> LoadedPolicy:
    """Load JSON text read from `source` (a path, for messages); raise PolicyError."""
    return _load_text(text, source)


def _single(source: str, message: str) -> PolicyError:
    return PolicyError([PolicyIssue("", message)], source=source)


def _load_text(text: str, source: str) -> LoadedPolicy:
    parsed = parse_json_text(text)
    issues = [PolicyIssue(i.pointer, i.message, i.line, i.column) for i in parsed.issues]
    if parsed.value is None and issues:
        raise PolicyError(issues, source=source)
    return _load_document(parsed.value, source, parsed.positions, issues)


def _load_document(
    doc: Any, source: str, positions: Mapping[str, tuple[int, int]], issues: list[PolicyIssue]
) -> LoadedPolicy:
    if not isinstance(doc, dict):
        issues.append(
            PolicyIssue(
                "",
                "A policy must be a JSON object such as "
                '{"version": "1", "default": "deny", "tools": {}}.',
            )
        )
        raise PolicyError(_placed(issues, positions), source=source)
    model: type[Policy] | type[Bundle] = Bundle if "policies" in doc else Policy
    context: dict[str, Any] = {}
    document: Policy | Bundle | None = None
    try:
        document = model.model_validate(doc, context=context)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, context.get("unknown", {}), doc))
    except RecursionError:
        issues.append(PolicyIssue("", "The document is nested too deeply to check."))
    if document is not None:
        issues.extend(_whole_document_issues(document))
    if issues:
        raise PolicyError(_placed(issues, positions), source=source)
    assert document is not None
    try:
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _single(source, f"The policy holds a value that is not JSON: {exc}.") from None
    except RecursionError:  # a dict nested deeper than Python can walk (x- keys are not checked)
        raise _single(source, "The document is nested too deeply to check.") from None
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return LoadedPolicy(source, document, doc, digest, dict(positions))


def _placed(
    issues: list[PolicyIssue], positions: Mapping[str, tuple[int, int]]
) -> list[PolicyIssue]:
    """Give each issue the line:column of its pointer, or of the nearest enclosing value."""
    if not positions:
        return issues
    placed = []
    for issue in issues:
        if issue.line is not None:
            placed.append(issue)
            continue
        pointer = issue.pointer
        while pointer not in positions and pointer:
            pointer = pointer.rsplit("/", 1)[0]
        line, column = positions.get(pointer, (None, None))
        placed.append(PolicyIssue(issue.pointer, issue.message, line, column))
    return placed


def _pointer(loc: tuple[int | str, ...]) -> str:
    pointer = ""
    for step in loc:
        if step not in UNION_TAGS:
            pointer = pointer_join(pointer, step)
    return pointer


def _json_repr(value: Any, *, ascii_only: bool = False) -> str:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
    except (TypeError, ValueError):
        text = repr(value)
    except RecursionError:
        return "a value nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."


def _from_pydantic(
    exc: ValidationError, unknown: Mapping[str, type[BaseModel]]
) -> Iterator[PolicyIssue]:
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == "extra_forbidden":
            yield PolicyIssue(_pointer(loc), _unknown_key_message(str(loc[-1]), unknown))
        elif kind == "missing":
            key = loc[-1]
            yield PolicyIssue(
                _pointer(loc[:-1]), f"The required key '{key}' is missing here; add it."
            )
        elif kind == "policy":
            yield PolicyIssue(_pointer(loc) + str(ctx.get("subpointer", "")), error["msg"])
        elif kind in ("union_tag_invalid", "model_type", "dict_type"):
            yield PolicyIssue(
                _pointer(loc),
                f"This must be a JSON object, but it is {_json_repr(error['input'])}.",
            )
        else:
            message = error["msg"].replace("Input should be", "This value must be")
            hint = ""
            if kind == "literal_error":
                hint = did_you_mean(error["input"], re.findall(r"'([^']*)'", str(ctx["expected"])))
            yield PolicyIssue(
                _pointer(loc), f"{message}, but it is {_json_repr(error['input'])}.{hint}"
            )


def _pydantic_issues(
    exc: ValidationError, unknown: Mapping[str, type[BaseModel]], doc: Any
) -> list[PolicyIssue]:
    try:
        return list(_from_pydantic(exc, unknown))
    except UnicodeEncodeError:
        # pydantic cannot render an error whose details hold an unpaired surrogate: "\ud800"
        # is valid JSON, but no character. Point at those texts instead.
        found = list(_unpaired_surrogates(doc))
        return found or [PolicyIssue("", "The policy holds text that cannot be reported on.")]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogates(doc: Any) -> Iterator[PolicyIssue]:
    """An issue for every key or string of `doc` that holds an unpaired UTF-16 surrogate."""
    todo: list[tuple[str, Any]] = [("", doc)]
    while todo:
        pointer, value = todo.pop()
        texts: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for key, child in value.items():
                child_pointer = pointer_join(pointer, key)
                texts.append((child_pointer, str(key)))
                todo.append((child_pointer, child))
        elif isinstance(value, list):
            todo.extend((pointer_join(pointer, i), child) for i, child in enumerate(value))
        elif isinstance(value, str):
            texts.append((pointer, value))
        for where, text in texts:
            if found := _SURROGATE.search(text):
                yield PolicyIssue(
                    where,
                    f"The text {_json_repr(text, ascii_only=True)} holds the unpaired surrogate "
                    f"\\u{ord(found.group()):04x}, which is not a character; write the "
                    "character itself, or a pair of \\u escapes that encodes it.",
                )


def _unknown_key_message(key: str, unknown: Mapping[str, type[BaseModel]]) -> str:
    model = unknown.get(key)
    allowed = _allowed_keys(model) if model is not None else []
    noun = getattr(model, "noun", "this object")
    hint = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1, cutoff=0.6)
    did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
    listing = f" The keys allowed in {noun} are: {', '.join(allowed)}." if allowed else ""
    return (
        f"Unknown key '{key}' in {noun}.{did_you_mean}{listing} "
        "Keys that begin with 'x-' are ignored, for comments and vendor data."
    )


def _limits(policy: Policy, prefix: str) -> Iterator[tuple[str, Limit]]:
    if policy.all_tools is not None:
        for i, limit in enumerate(policy.all_tools.limits):
            yield f"{prefix}/all_tools/limits/{i}", limit
    for key, entry in policy.tools.items():
        for i, limit in enumerate(entry.limits):
            yield f"{pointer_join(prefix + '/tools', key)}/limits/{i}", limit


def _limit_definition(limit: Limit) -> tuple[str, int, float, int]:
    scope = "grant" if limit.scope == "identity" else limit.scope
    return (scope, limit.max, limit.window_seconds, limit.burst or limit.max)


def _whole_document_issues(document: Policy | Bundle) -> Iterator[PolicyIssue]:
    """Checks that need more than one entry: shared counters must agree."""
    if isinstance(document, Bundle):
        named = [
            (pointer_join("/policies", name), policy) for name, policy in document.policies.items()
        ]
        for key, name in document.grants.items():
            if name not in document.policies:
                known = ", ".join(repr(p) for p in document.policies) or "none"
                yield PolicyIssue(
                    pointer_join("/grants", key),
                    f"The grant {key!r} names the policy {name!r}, which this bundle does not "
                    f"define (defined: {known}).",
                )
    else:
        named = [("", document)]
    for prefix, policy in named:
        first: dict[str, tuple[str, tuple[str, int, float, int]]] = {}
        for pointer, limit in _limits(policy, prefix):
            if limit.counter is None:
                continue
            definition = _limit_definition(limit)
            seen = first.setdefault(limit.counter, (pointer, definition))
            if seen[1] != definition:
                yield PolicyIssue(
                    pointer + "/counter",
                    f"The counter '{limit.counter}' is defined differently at {seen[0]} "
                    "(scope, max, window and burst must all match to share one bucket); "
                    "make the definitions equal or give this limit another counter name.",
                )
