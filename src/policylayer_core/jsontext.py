"""Strict JSON parsing that remembers where every value came from.

`parse_json_text` returns what `json.loads` would return, plus a map from RFC 6901
pointers to (line, column) and a list of problems, so every load error can name both
the pointer and the place in the file. Duplicate keys are reported (the last value wins,
as in `json.loads`); the first syntax error stops parsing and is reported with a sentence
that says what was expected, what was found and how to fix it.

Conventions:

* Lines split on "\\n" only; "\\r" is whitespace, so "\\r\\n" counts as one line break.
  Columns are 1-based and counted in code points.
* A UTF-8 byte order mark at the very start is accepted and skipped; columns on line 1
  are counted after it, as editors show them. A BOM anywhere else is a syntax error.
* Strict JSON only: NaN, Infinity, comments, trailing commas, single quotes and raw
  control characters in strings are errors. Nesting deeper than `MAX_DEPTH` is an error,
  so recursive consumers of the value (validators, `==`, `repr`) stay far from Python's
  recursion limit; the parser itself is iterative.
* A syntax error names the pointer of the value being parsed: the member or element
  whose value was expected, or the enclosing container when a comma, colon or closing
  bracket is missing. Positions read before the error are kept; the value is None.
* For a duplicated key, positions describe the occurrence that was kept (the last).
"""

from __future__ import annotations

import json.decoder
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

__all__ = ["MAX_DEPTH", "ParsedText", "TextIssue", "parse_json_text", "pointer_join"]

MAX_DEPTH = 256

_WS = re.compile(r"[ \t\n\r]*")
_SIMPLE_STRING = re.compile(r'"([^"\\\x00-\x1f]*)"')
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z0-9_+.-]{1,24}")
_LITERALS = (("true", True), ("false", False), ("null", None))
_CONTROL_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The C string decoder json.loads itself uses, so escapes and surrogates decode identically.
_scanstring: Callable[[str, int, bool], tuple[str, int]]
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
_skip_ws = cast(Callable[[str, int], "re.Match[str]"], _WS.match)  # the pattern always matches

_ONE_VALUE = "a JSON document holds one value, so remove it or wrap the values in an array."
_MESSAGES = {
    "empty": "the text is empty; write a JSON value such as {{}}.",
    "depth": "nesting is deeper than {depth} levels; flatten the document.",
    "number": "the number {number!r} is followed by {next!r}; write numbers like 42, -0.5 or 1e3.",
    "bigint": "this integer has too many digits for Python; shorten it or quote it as a string.",
    "extra": "found {found} after the end of the top-level value; {fix}",
    "value": "expected a value (object, array, string, number, true, false or null) but found "
    "{found}{hint}",
    "value_eof": "the text ends where a value was expected; add the value and close every "
    "open bracket.",
    "trailing": "trailing comma before {closer!r}; JSON allows no comma after the last "
    "{item}, so remove it.",
    "key": "expected a member name in double quotes but found {found}{hint}",
    "colon": "expected ':' after the key {key!r} but found {found}; write a colon between a "
    "key and its value.",
    "after": "expected ',' or {closer!r} after an {item} but found {found}; {fix}",
    "unclosed": "the text ends inside the {kind} that starts at {start}; close it with {closer!r}.",
    "string_eof": "the text ends inside a string that starts at {start}; close it with '\"'.",
    "string_eol": "the string that starts at {start} is not closed on its line; close it with "
    "'\"' or write the line break as \\n.",
    "control": "control character U+{code:04X} is not allowed inside a string; write it as "
    "{escape}.",
    "unicode": "a \\u escape needs exactly four hex digits, but found '{found}'; write it like "
    "\\u00e9.",
    "escape": "'{found}' is not a valid escape; use one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
    "\\uXXXX (write a backslash itself as \\\\).",
}


@dataclass(frozen=True, slots=True)
class TextIssue:
    """One problem in JSON text: where it is (pointer and line:column) and what to do."""

    pointer: str
    message: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class ParsedText:
    """The parsed value (None after a syntax error), value positions, and the issues."""

    value: Any
    positions: dict[str, tuple[int, int]]
    issues: tuple[TextIssue, ...]


def pointer_join(parent: str, token: str | int) -> str:
    """Append one reference token to an RFC 6901 pointer, escaping "~" and "/"."""
    token = str(token)
    if "~" in token or "/" in token:
        token = token.replace("~", "~0").replace("/", "~1")
    return f"{parent}/{token}"


def parse_json_text(text: str) -> ParsedText:
    """Parse `text` as strict JSON; never raises for any `str` input."""
    return _Parser(text[1:] if text.startswith("\ufeff") else text).parse()


class _SyntaxError(Exception):
    """The first syntax error; raised inside the parser and never leaves this module."""

    def __init__(self, pointer: str, pos: int, template: str, **details: object) -> None:
        self.pointer, self.pos = pointer, pos
        self.message = "Invalid JSON: " + _MESSAGES[template].format(**details)
        super().__init__(self.message)


def _describe(text: str, pos: int) -> str:
    """Name the text found at `pos` for an error message."""
    if pos >= len(text):
        return "the end of the text"
    word = _WORD.match(text, pos)
    if word and len(word.group()) > 1:
        return repr(word.group())
    char = text[pos]
    if char == "\ufeff":
        return "a byte order mark (U+FEFF)"
    return repr(char) if char.isprintable() else f"the invisible character U+{ord(char):04X}"


def _hint(text: str, pos: int) -> str:
    """Explain the usual cause when the found text is a common non-JSON habit."""
    rest = text[pos : pos + 9]
    if rest.startswith(("//", "/*", "#")):
        return "; JSON has no comments, so remove it."
    if rest.startswith("'"):
        return "; JSON strings and keys need double quotes, not single quotes."
    if rest.startswith(("NaN", "Infinity", "-Infinity")):
        return "; JSON has no NaN or Infinity, so use a finite number or null."
    if rest.startswith(("True", "False", "None", "TRUE", "FALSE", "Null", "NULL")):
        return "; JSON literals are lowercase: true, false and null."
    return "."


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.offsets: dict[str, int] = {}
        self.issues: list[TextIssue] = []
        self._newlines: list[int] | None = None

    def line_col(self, pos: int) -> tuple[int, int]:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        line = bisect_right(self._newlines, pos - 1)
        start = self._newlines[line - 1] + 1 if line else 0
        return line + 1, pos - start + 1

    def where(self, pos: int) -> str:
        line, column = self.line_col(pos)
        return f"line {line}, column {column}"

    def parse(self) -> ParsedText:
        value: Any = None
        try:
            value = self.run()
        except _SyntaxError as error:
            self.issues.append(TextIssue(error.pointer, error.message, *self.line_col(error.pos)))
        positions = {ptr: self.line_col(pos) for ptr, pos in self.offsets.items()}
        return ParsedText(value, positions, tuple(self.issues))

    def run(self) -> Any:  # noqa: PLR0915 -- one hot loop; splitting it costs speed
        text, n, offsets = self.text, len(self.text), self.offsets
        ws, simple_string, number = _skip_ws, _SIMPLE_STRING.match, _NUMBER.match
        # A frame is [container, pointer, open offset, keys (objects only), current key or index].
        stack: list[list[Any]] = []
        ptr = ""
        pos = ws(text, 0).end()
        if pos == n:
            raise _SyntaxError("", 0, "empty")
        offsets[ptr] = pos
        value: Any
        while True:
            char = text[pos] if pos < n else ""
            if char == '"':
                match = simple_string(text, pos)
                value, pos = (match.group(1), match.end()) if match else self.string(pos, ptr)
            elif char in {"{", "["}:
                if len(stack) >= MAX_DEPTH:
                    raise _SyntaxError(ptr, pos, "depth", depth=MAX_DEPTH)
                start, pos = pos, ws(text, pos + 1).end()
                if char == "{" and text.startswith("}", pos):
                    value, pos = {}, pos + 1
                elif char == "[" and text.startswith("]", pos):
                    value, pos = [], pos + 1
                elif char == "{":
                    frame: list[Any] = [{}, ptr, start, {}, None]
                    stack.append(frame)
                    pos, ptr = self.member(frame, pos)
                    continue
                else:
                    stack.append([[], ptr, start, None, 0])
                    ptr += "/0"
                    offsets[ptr] = pos
                    continue
            elif char and char in "-0123456789" and (match := number(text, pos)):
                pos = match.end()
                if pos < n and text[pos] in ".eE0123456789":
                    raise _SyntaxError(ptr, pos, "number", number=match.group(), next=text[pos])
                if match.group(2) or match.group(3):
                    value = float(match.group())
                else:
                    try:
                        value = int(match.group())
                    except ValueError:  # longer than sys.get_int_max_str_digits(), like json.loads
                        raise _SyntaxError(ptr, match.start(), "bigint") from None
            else:
                for word, literal in _LITERALS:
                    if text.startswith(word, pos):
                        value, pos = literal, pos + len(word)
                        break
                else:
                    raise self.expected_value(pos, ptr)
            # The value is complete: store it and close every container that ends here.
            while True:
                pos = ws(text, pos).end()
                if not stack:
                    if pos < n:
                        fix = _hint(text, pos)[2:] or _ONE_VALUE
                        raise _SyntaxError("", pos, "extra", found=_describe(text, pos), fix=fix)
                    return value
                frame = stack[-1]
                char = text[pos] if pos < n else ""
                if frame[3] is not None:
                    frame[0][frame[4]] = value
                    if char == ",":
                        pos, ptr = self.member(frame, pos + 1)
                        break
                    closer = "}"
                else:
                    frame[0].append(value)
                    if char == ",":
                        frame[4] += 1
                        pos = ws(text, pos + 1).end()
                        ptr = f"{frame[1]}/{frame[4]}"
                        offsets[ptr] = pos
                        break
                    closer = "]"
                if char != closer:
                    raise self.expected_after(frame, pos)
                stack.pop()
                value, ptr, pos = frame[0], frame[1], pos + 1

    def member(self, frame: list[Any], pos: int) -> tuple[int, str]:
        """Parse `"key":` at `pos` for the object in `frame`; return value offset and pointer."""
        text = self.text
        pos = _skip_ws(text, pos).end()
        if not text.startswith('"', pos):
            if text.startswith("}", pos) and frame[3]:
                raise _SyntaxError(frame[1], pos, "trailing", closer="}", item="member")
            if pos >= len(text):
                raise self.unclosed(frame, pos)
            raise _SyntaxError(
                frame[1], pos, "key", found=_describe(text, pos), hint=_hint(text, pos)
            )
        match = _SIMPLE_STRING.match(text, pos)
        key, end = (match.group(1), match.end()) if match else self.string(pos, frame[1])
        ptr = pointer_join(frame[1], key)
        keys: dict[str, int] = frame[3]
        if key in keys:
            message = (
                f"Duplicate key {key!r} in this object (first at {self.where(keys[key])}); "
                "JSON keeps only the last one, so merge or rename them."
            )
            self.issues.append(TextIssue(ptr, message, *self.line_col(pos)))
            # The later value replaces the earlier one, so the earlier one's positions go too.
            prefix = ptr + "/"
            for stale in [p for p in self.offsets if p.startswith(prefix)]:
                del self.offsets[stale]
        else:
            keys[key] = pos
        self.offsets[ptr] = pos
        frame[4] = key
        colon = _skip_ws(text, end).end()
        if not text.startswith(":", colon):
            if colon >= len(text):
                raise self.unclosed(frame, colon)
            raise _SyntaxError(ptr, colon, "colon", key=key, found=_describe(text, colon))
        return _skip_ws(text, colon + 1).end(), ptr

    def string(self, pos: int, ptr: str) -> tuple[str, int]:
        """Decode the string at `pos` that the fast path rejected (escapes or an error)."""
        text = self.text
        try:
            return _scanstring(text, pos + 1, True)
        except json.JSONDecodeError as error:
            bad, reason, start = error.pos, error.msg, self.where(pos)
        if reason.startswith("Invalid \\u"):  # reported at the "u", not at the backslash
            bad -= 1
        if bad >= len(text) or reason.startswith("Unterminated"):
            raise _SyntaxError(ptr, len(text), "string_eof", start=start)
        if reason.startswith("Invalid control"):
            if text[bad] == "\n":
                raise _SyntaxError(ptr, bad, "string_eol", start=start)
            escape = _CONTROL_ESCAPES.get(text[bad], f"\\u{ord(text[bad]):04x}")
            raise _SyntaxError(ptr, bad, "control", code=ord(text[bad]), escape=escape)
        if text.startswith("\\u", bad):
            raise _SyntaxError(ptr, bad, "unicode", found=text[bad : bad + 6])
        raise _SyntaxError(ptr, bad, "escape", found=text[bad : bad + 2])

    def expected_value(self, pos: int, ptr: str) -> _SyntaxError:
        text = self.text
        if text.startswith("]", pos) and text[:pos].rstrip(" \t\n\r").endswith(","):
            return _SyntaxError(ptr, pos, "trailing", closer="]", item="element")
        if pos >= len(text):
            return _SyntaxError(ptr, pos, "value_eof")
        return _SyntaxError(ptr, pos, "value", found=_describe(text, pos), hint=_hint(text, pos))

    def unclosed(self, frame: list[Any], pos: int) -> _SyntaxError:
        kind, closer = ("object", "}") if frame[3] is not None else ("array", "]")
        start = self.where(frame[2])
        return _SyntaxError(frame[1], pos, "unclosed", kind=kind, start=start, closer=closer)

    def expected_after(self, frame: list[Any], pos: int) -> _SyntaxError:
        text = self.text
        if pos >= len(text):
            return self.unclosed(frame, pos)
        item, closer = ("object member", "}") if frame[3] is not None else ("array element", "]")
        if text[pos] in "]}":
            fix = f"the bracket opened at {self.where(frame[2])} must be closed with {closer!r}."
        elif text[pos] in "\"'{[-0123456789tfn":
            fix = "a comma is probably missing."
        else:
            fix = _hint(text, pos)[2:] or "remove it, or add a comma before the next value."
        found = _describe(text, pos)
        return _SyntaxError(frame[1], pos, "after", closer=closer, item=item, found=found, fix=fix)
