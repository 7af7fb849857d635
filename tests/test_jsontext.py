"""Tests for `policylayer_core.jsontext`: values, positions, duplicate keys, syntax errors.

Set POLICYLAYER_FUZZ_EXAMPLES to run the property tests with more examples.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policylayer_core.jsontext import (
    MAX_DEPTH,
    ParsedText,
    TextIssue,
    parse_json_text,
    pointer_join,
)

FUZZ = settings(
    max_examples=int(os.environ.get("POLICYLAYER_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet='ab/~"\\é \n', max_size=4), children, max_size=5)
    ),
    max_leaves=25,
)
dumps_options = st.fixed_dictionaries(
    {"indent": st.sampled_from([None, 0, 2, "\t"]), "ensure_ascii": st.booleans()}
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_loads_accepts(text: str) -> bool:
    """The oracle: strict json.loads (no NaN/Infinity) on the text, BOM removed as we do."""
    try:
        json.loads(text.removeprefix("\ufeff"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _syntax_issues(parsed: ParsedText) -> list[TextIssue]:
    return [issue for issue in parsed.issues if issue.message.startswith("Invalid JSON:")]


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(previous) + 1 for previous in lines[: line - 1]) + column - 1


def _pointers(value: Any) -> dict[str, bool]:
    """Every pointer in `value`, mapped to whether it names an object member."""
    found: dict[str, bool] = {}
    todo: list[tuple[str, bool, Any]] = [("", False, value)]
    while todo:
        pointer, is_member, item = todo.pop()
        found[pointer] = is_member
        if isinstance(item, dict):
            todo.extend((pointer_join(pointer, key), True, child) for key, child in item.items())
        elif isinstance(item, list):
            todo.extend((pointer_join(pointer, i), False, child) for i, child in enumerate(item))
    return found


def _check_positions(text: str, parsed: ParsedText) -> None:
    """Every value has a position; members point at their key, others at the value."""
    pointers = _pointers(parsed.value)
    assert set(parsed.positions) == set(pointers)
    body = text.removeprefix("\ufeff")
    for pointer, (line, column) in parsed.positions.items():
        char = body[_offset(body, line, column)]
        assert (char == '"') if pointers[pointer] else (char in '{["-0123456789tfn')


def _only(text: str) -> TextIssue:
    parsed = parse_json_text(text)
    assert parsed.value is None
    assert len(parsed.issues) == 1, parsed.issues
    return parsed.issues[0]


# --- values -----------------------------------------------------------------------------------


@FUZZ
@given(json_values, dumps_options)
def test_values_equal_json_loads(value: Any, options: dict[str, Any]) -> None:
    text = json.dumps(value, **options)
    parsed = parse_json_text(text)
    expected = json.loads(text)
    # repr tells 1 from 1.0 and -0.0 from 0.0, and shows key order.
    assert repr(parsed.value) == repr(expected)
    assert parsed.issues == ()
    _check_positions(text, parsed)


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud83d\\ude00 \\u00e9 \\n \\" \\\\ \\/ \\b \\f \\r \\t"',
        '"\\ud800 lone surrogate"',
        "123456789012345678901234567890123456789",
        "-0",
        "-0.0",
        "1e400",
        "1E-400",
        "0.1e+2",
        '[true, false, null, {}, [], ""]',
        '{"\\u0061": 1, "a": 2}',
        " \r\n\t 7 \r\n",
        "1" * 4300,
    ],
)
def test_edge_values_equal_json_loads(text: str) -> None:
    parsed = parse_json_text(text)
    assert repr(parsed.value) == repr(json.loads(text))


def test_bom_is_skipped_and_not_counted_in_columns() -> None:
    parsed = parse_json_text('\ufeff{"a": [1]}')
    assert parsed.value == {"a": [1]}
    assert parsed.issues == ()
    assert parsed.positions == {"": (1, 1), "/a": (1, 2), "/a/0": (1, 8)}


# --- positions --------------------------------------------------------------------------------

DOCUMENT = """{
  "version": "1",
  "tools": {
    "search": {"limits": [
        {"max": 30},
        7
      ]},
    "a/b~c": null
  },
  "list": [ [], "x" ]
}
"""


def test_positions_in_a_multi_line_document() -> None:
    parsed = parse_json_text(DOCUMENT)
    assert parsed.issues == ()
    assert parsed.positions == {
        "": (1, 1),
        "/version": (2, 3),
        "/tools": (3, 3),
        "/tools/search": (4, 5),
        "/tools/search/limits": (4, 16),
        "/tools/search/limits/0": (5, 9),
        "/tools/search/limits/0/max": (5, 10),
        "/tools/search/limits/1": (6, 9),
        "/tools/a~1b~0c": (8, 5),
        "/list": (10, 3),
        "/list/0": (10, 13),
        "/list/1": (10, 17),
    }


def test_crlf_counts_as_one_line_break() -> None:
    assert parse_json_text(DOCUMENT.replace("\n", "\r\n")).positions == (
        parse_json_text(DOCUMENT).positions
    )


def test_columns_count_code_points() -> None:
    parsed = parse_json_text('{"😀é": 1, "k": 2}')
    assert parsed.positions["/k"] == (1, 11)


@pytest.mark.parametrize(
    ("parent", "token", "expected"),
    [
        ("", "a", "/a"),
        ("", "", "/"),
        ("/x", "a/b", "/x/a~1b"),
        ("", "~1", "/~01"),
        ("", "~/", "/~0~1"),
        ("/list", 3, "/list/3"),
    ],
)
def test_pointer_join_escapes(parent: str, token: str | int, expected: str) -> None:
    assert pointer_join(parent, token) == expected


# --- duplicate keys ---------------------------------------------------------------------------


def test_duplicate_keys_are_reported_and_the_last_wins() -> None:
    text = (
        '{"rules": {"deny_if": {"x": [1]},\n'
        '           "deny_if": 2,\n'
        '           "deny_if": [3]},\n'
        ' "a/b": 1, "a/b": {"y": 2}}'
    )
    parsed = parse_json_text(text)
    assert parsed.value == json.loads(text)
    assert parsed.issues == (
        TextIssue(
            "/rules/deny_if",
            "Duplicate key 'deny_if' in this object (first at line 1, column 12); "
            "JSON keeps only the last one, so merge or rename them.",
            2,
            12,
        ),
        TextIssue(
            "/rules/deny_if",
            "Duplicate key 'deny_if' in this object (first at line 1, column 12); "
            "JSON keeps only the last one, so merge or rename them.",
            3,
            12,
        ),
        TextIssue(
            "/a~1b",
            "Duplicate key 'a/b' in this object (first at line 4, column 2); "
            "JSON keeps only the last one, so merge or rename them.",
            4,
            12,
        ),
    )
    # Positions describe the value that was kept, not the one that was dropped.
    assert parsed.positions["/rules/deny_if"] == (3, 12)
    assert "/rules/deny_if/x" not in parsed.positions
    assert parsed.positions["/a~1b/y"] == (4, 20)
    _check_positions(text, parsed)


def test_same_key_in_different_objects_is_not_a_duplicate() -> None:
    assert parse_json_text('{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}').issues == ()


def test_duplicate_reported_before_a_later_syntax_error() -> None:
    parsed = parse_json_text('{"a": 1, "a": 2,')
    assert [issue.message.split()[0] for issue in parsed.issues] == ["Duplicate", "Invalid"]
    assert parsed.value is None


# --- syntax errors ----------------------------------------------------------------------------

SYNTAX_ERRORS = [
    ("", "", 1, 1, "the text is empty"),
    (" \n\t ", "", 1, 1, "the text is empty"),
    (
        '{"a": 1 "b": 2}',
        "",
        1,
        9,
        "expected ',' or '}' after an object member but found '\"'; a comma is probably missing.",
    ),
    ("[1 2]", "", 1, 4, "expected ',' or ']' after an array element but found '2'"),
    ('{"a": [1}', "/a", 1, 9, "the bracket opened at line 1, column 7 must be closed with ']'"),
    (
        '{\n  "policy": "deny',
        "/policy",
        2,
        18,
        "the text ends inside a string that starts at line 2, column 13; close it with '\"'.",
    ),
    ('{"a": "ab\ncd"}', "/a", 1, 10, "string that starts at line 1, column 7 is not closed"),
    ('["a\tb"]', "/0", 1, 4, "control character U+0009 is not allowed inside a string"),
    ('{"a": "\\x"}', "/a", 1, 8, "'\\x' is not a valid escape"),
    ('["\\u12G4"]', "/0", 1, 3, "a \\u escape needs exactly four hex digits"),
    ('{"a": 1,}', "", 1, 9, "trailing comma before '}'"),
    ("[1, 2, ]", "/2", 1, 8, "trailing comma before ']'"),
    ('{"a" 1}', "/a", 1, 6, "expected ':' after the key 'a' but found '1'"),
    ("{'a': 1}", "", 1, 2, "need double quotes, not single quotes"),
    ('{"a": NaN}', "/a", 1, 7, "found 'NaN'; JSON has no NaN or Infinity"),
    ("[Infinity]", "/0", 1, 2, "JSON has no NaN or Infinity"),
    ("[-Infinity]", "/0", 1, 2, "found '-Infinity'"),
    ('{"a": True}', "/a", 1, 7, "JSON literals are lowercase"),
    (
        '{"a": }',
        "/a",
        1,
        7,
        "expected a value (object, array, string, number, true, false or null)",
    ),
    ('{"a": 1} // note', "", 1, 10, "JSON has no comments"),
    ('{"a": 1, /* x */ "b": 2}', "", 1, 10, "JSON has no comments"),
    ("[1] [2]", "", 1, 5, "after the end of the top-level value"),
    ('{"a": 01}', "/a", 1, 8, "the number '0' is followed by '1'"),
    ("[1.]", "/0", 1, 3, "the number '1' is followed by '.'"),
    ("[1e]", "/0", 1, 3, "the number '1' is followed by 'e'"),
    ("[-]", "/0", 1, 2, "expected a value"),
    ('{"a": [', "/a/0", 1, 8, "the text ends where a value was expected"),
    (
        '{"a": {"b": 1',
        "/a",
        1,
        14,
        "the text ends inside the object that starts at line 1, column 7",
    ),
    ("[[1]", "", 1, 5, "the text ends inside the array that starts at line 1, column 1"),
    ('{"a"', "", 1, 5, "the text ends inside the object"),
    ("{,}", "", 1, 2, "expected a member name in double quotes but found ','"),
    ("\ufeff\ufeff{}", "", 1, 1, "a byte order mark (U+FEFF)"),
    ("[1]\u00a0", "", 1, 4, "the invisible character U+00A0"),
    ("1" * 5000, "", 1, 1, "too many digits"),
]


@pytest.mark.parametrize(("text", "pointer", "line", "column", "fragment"), SYNTAX_ERRORS)
def test_syntax_errors(text: str, pointer: str, line: int, column: int, fragment: str) -> None:
    issue = _only(text)
    assert (issue.pointer, issue.line, issue.column) == (pointer, line, column)
    assert issue.message.startswith("Invalid JSON: ")
    assert fragment in issue.message
    assert issue.message.endswith(".")
    assert not _json_loads_accepts(text)


def test_deep_nesting_is_capped_without_recursion_error() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = parse_json_text(ok).value
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []
    for text in ["[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * 100_000, '{"a":' * 100_000]:
        issue = _only(text)
        assert f"nesting is deeper than {MAX_DEPTH} levels" in issue.message
        assert issue.column == MAX_DEPTH * (1 if text[0] == "[" else 5) + 1


# --- fuzzing ----------------------------------------------------------------------------------

JSONISH = st.sampled_from(list("{}[],:\"\\ \n\t\r0123456789-+.eEtrufalsnNIy/'*#\ufeffé😀\x00"))


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    text = json.dumps(draw(json_values), indent=draw(st.sampled_from([None, 1])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "repeat"]))
        if action == "delete":
            text = text[:at] + text[at + 1 :]
        elif action == "insert":
            text = text[:at] + draw(JSONISH) + text[at:]
        elif action == "replace":
            text = text[:at] + draw(JSONISH) + text[at + 1 :]
        else:
            text = text[:at] + text[at : at + draw(st.integers(1, 8))] + text[at:]
    return text


@FUZZ
@given(st.one_of(st.text(max_size=80), st.text(JSONISH, max_size=40), mutated_documents()))
def test_issue_iff_json_loads_rejects(text: str) -> None:
    parsed = parse_json_text(text)
    syntax = _syntax_issues(parsed)
    assert len(syntax) <= 1
    assert bool(syntax) == (not _json_loads_accepts(text))
    for issue in parsed.issues:
        assert issue.line >= 1
        assert issue.column >= 1
        assert issue.message.endswith(".")
    if syntax:
        assert parsed.value is None
        assert parsed.issues[-1] is syntax[0]
    else:
        assert repr(parsed.value) == repr(json.loads(text.removeprefix("\ufeff")))
        _check_positions(text, parsed)


# --- size (speed is measured by benchmarks/, never asserted here) -----------------------------


def test_ten_thousand_tools_parse() -> None:
    policy = {
        "version": "1",
        "default": "deny",
        "tools": {
            f"tool_{i:05d}": {"limits": [{"max": 30, "window": "minute"}]} for i in range(10_000)
        },
    }
    text = json.dumps(policy, indent=2)
    parsed = parse_json_text(text)
    assert parsed.value == policy
    assert parsed.positions["/tools/tool_09999/limits/0/window"] == (80_001, 11)
