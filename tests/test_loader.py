"""load_policy: every source kind, and every load error with its pointer and line:column."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES, policy
from policylayer_core import LoadedPolicy, PolicyError, PolicyIssue, load_policy


def issues_of(source: Any) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as caught:
        load_policy(source)
    assert caught.value.issues, "a PolicyError always carries issues"
    return caught.value.issues


def only_issue(source: Any) -> PolicyIssue:
    found = issues_of(source)
    assert len(found) == 1, found
    return found[0]


# -- sources ------------------------------------------------------------------------


def test_loads_from_dict_text_str_path_and_path(tmp_path: Path) -> None:
    doc = policy({"a": {}})
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(doc), "utf-8")
    loaded = [
        load_policy(doc),
        load_policy(json.dumps(doc)),
        load_policy(str(file)),
        load_policy(file),
    ]
    assert {p.digest for p in loaded} == {loaded[0].digest}
    assert load_policy(loaded[0]) is loaded[0]
    assert loaded[2].source == str(file)


def test_text_is_recognised_by_its_first_non_blank_character() -> None:
    assert isinstance(load_policy('  \n {"version": "1", "default": "allow"}'), LoadedPolicy)
    issue = only_issue("no-such-policy.json")
    assert "does not exist" in issue.message and issue.pointer == ""


def test_unsupported_source_type() -> None:
    issue = only_issue(42)
    assert "takes a path, JSON text or a dict" in issue.message


def test_digest_ignores_formatting_but_not_content() -> None:
    a = load_policy('{"version": "1", "default": "deny"}')
    b = load_policy('{\n  "default": "deny",\n  "version": "1"\n}')
    c = load_policy('{"version": "1", "default": "allow"}')
    assert a.digest == b.digest != c.digest


# -- the documents the format promises to load ---------------------------------------

SPEC_EXAMPLE = {
    "version": "1",
    "default": "deny",
    "hide": ["qflow_task_delete"],
    "all_tools": {
        "limits": [{"counter": "calls", "window": "minute", "max": 120, "scope": "grant"}]
    },
    "tools": {
        "qflow_task_next": {},
        "qflow_task_batch": {
            "schema": {
                "type": "object",
                "properties": {"action": {"enum": ["create", "update", "status", "rewrite"]}},
                "required": ["action"],
            },
            "deny_if": [
                {
                    "conditions": [{"path": "args.action", "op": "eq", "value": "rewrite"}],
                    "on_deny": "Rewrites are not allowed.",
                }
            ],
            "approve_if": [
                {
                    "conditions": [{"path": "args.tasks", "op": "len_gt", "value": 20}],
                    "on_deny": "Large batches need a human.",
                }
            ],
            "limits": [
                {
                    "counter": "qflow_task_batch_rate",
                    "window": "minute",
                    "max": 30,
                    "scope": "grant",
                    "cost": "args.tasks",
                }
            ],
        },
        "qflow_spec_*": {"action": "approve"},
    },
}

BUNDLE_EXAMPLE = {
    "version": "1",
    "policies": {
        "readonly": {"version": "1", "default": "deny", "tools": {"qflow_task_list": {}}},
        "full": {"version": "1", "default": "allow"},
    },
    "grants": {"alice-laptop": "full", "ci-*": "readonly"},
}

# What the hosted PolicyLayer gateway writes: version, default, hide, all_tools, tools
# with require / deny_if (empty conditions for "always") / limits / on_deny.
GATEWAY_POLICY = {
    "version": "1",
    "default": "allow",
    "hide": ["qflow_task_delete", "qflow_workspace"],
    "all_tools": {
        "require": [{"path": "identity", "op": "exists"}],
        "deny_if": [
            {"conditions": [{"path": "args.projectRoot", "op": "starts_with", "value": "/etc"}]}
        ],
        "limits": [{"counter": "all", "window": "hour", "max": 1000}],
    },
    "tools": {
        "qflow_task_create": {"limits": [{"window": "minute", "max": 30}], "on_deny": "Slow down."},
        "qflow_spec_apply": {
            "deny_if": [{"conditions": [], "on_deny": "Requires human approval."}],
        },
        "qflow_task_set_status": {
            "require": [
                {"conditions": [{"path": "args.status", "op": "in", "value": ["active", "done"]}]}
            ],
        },
    },
}


@pytest.mark.parametrize(
    "doc", [SPEC_EXAMPLE, BUNDLE_EXAMPLE, GATEWAY_POLICY], ids=["spec", "bundle", "gateway"]
)
def test_format_examples_load(doc: dict[str, Any]) -> None:
    loaded = load_policy(json.dumps(doc))
    assert loaded.raw == doc


def test_shipped_example_policies_load() -> None:
    for path in sorted(EXAMPLES.glob("*policy.json")):  # not the *.policytest.json cases
        load_policy(path)


def test_extension_keys_are_ignored_at_every_level() -> None:
    doc = policy(
        {
            "t": {
                "x-owner": "ops",
                "deny_if": [
                    {"x-why": 1, "conditions": [{"x-c": 2, "path": "args.a", "op": "exists"}]}
                ],
                "limits": [{"max": 1, "window": "second", "x-l": True}],
            }
        },
        **{"x-comment": "hello", "all_tools": {"x-a": [], "limits": []}},
    )
    load_policy(doc)


def test_x_keys_inside_values_and_schemas_are_data() -> None:
    doc = policy(
        {
            "t": {
                "schema": {"type": "object", "x-vendor": 1},
                "deny_if": [{"conditions": [{"path": "args.a", "op": "eq", "value": {"x-k": 1}}]}],
            }
        }
    )
    loaded = load_policy(doc)
    assert loaded.policies[""].tools["t"].deny_if[0].conditions[0].value == {"x-k": 1}


# -- load errors --------------------------------------------------------------------


def test_invalid_json_has_line_and_column() -> None:
    issue = only_issue('{\n  "version": "1",\n  "default": "deny"\n  "tools": {}\n}')
    assert (issue.line, issue.column) == (4, 3)
    assert issue.message.startswith("Invalid JSON")


def test_duplicate_keys_are_errors_at_their_pointer_and_line() -> None:
    text = '{\n  "version": "1",\n  "default": "deny",\n  "default": "allow"\n}'
    issue = only_issue(text)
    assert issue.pointer == "/default"
    assert (issue.line, issue.column) == (4, 3)
    assert "Duplicate key 'default'" in issue.message


def test_unknown_key_with_did_you_mean_hint() -> None:
    text = '{"version": "1", "default": "deny",\n "tools": {"t": {"deny-if": []}}}'
    issue = only_issue(text)
    assert issue.pointer == "/tools/t/deny-if"
    assert (issue.line, issue.column) == (2, 18)
    assert "Unknown key 'deny-if' in a tool entry" in issue.message
    assert "Did you mean 'deny_if'?" in issue.message


@pytest.mark.parametrize(
    ("doc", "pointer", "fragment"),
    [
        ({"version": "2", "default": "deny"}, "/version", "must be '1'"),
        ({"version": 1, "default": "deny"}, "/version", "must be '1'"),
        ({"version": "1"}, "", "required key 'default' is missing"),
        ({"version": "1", "default": "maybe"}, "/default", "'allow' or 'deny'"),
        (policy(hide="qflow_*"), "/hide", "valid list"),
        (policy(mode="loud"), "/mode", "'enforce' or 'shadow'"),
        (policy({"t": {"action": "ask"}}), "/tools/t/action", "'allow', 'deny' or 'approve'"),
        (policy({"t": []}), "/tools/t", "JSON object"),
        (policy({"t": {"conditions": []}}), "/tools/t/conditions", "Unknown key 'conditions'"),
        (
            policy(all_tools={"action": "deny"}),
            "/all_tools/action",
            "Unknown key 'action' in all_tools",
        ),
        (
            policy(all_tools={"schema": {}}),
            "/all_tools/schema",
            "Unknown key 'schema' in all_tools",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [
                            {"conditions": [{"path": "args.a", "op": "bigger", "value": 1}]}
                        ]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/op",
            "'eq'",
        ),
        (
            policy({"t": {"deny_if": [{"conditions": [{"path": "args.a", "op": "gt"}]}]}}),
            "/tools/t/deny_if/0/conditions/0",
            "has no 'value'",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [{"conditions": [{"path": "args.a", "op": "gt", "value": "10"}]}]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "compares numbers",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [{"conditions": [{"path": "args.a", "op": "gt", "value": True}]}]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "compares numbers",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [{"conditions": [{"path": "args.a", "op": "in", "value": "ab"}]}]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "needs an array",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [
                            {
                                "conditions": [
                                    {"path": "args.a", "op": "regex", "value": "(unclosed"}
                                ]
                            }
                        ]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "does not compile",
        ),
        (
            policy(
                {"t": {"deny_if": [{"conditions": [{"path": "args.a", "op": "glob", "value": 3}]}]}}
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "needs a string",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [
                            {"conditions": [{"path": "args.a", "op": "len_gt", "value": -1}]}
                        ]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "non-negative integer",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [
                            {"conditions": [{"path": "args.a", "op": "len_gt", "value": 1.5}]}
                        ]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "non-negative integer",
        ),
        (
            policy(
                {
                    "t": {
                        "deny_if": [
                            {"conditions": [{"path": "args.a", "op": "exists", "value": "yes"}]}
                        ]
                    }
                }
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            "true or false",
        ),
        (
            policy({"t": {"deny_if": [{"conditions": [{"path": "argz.a", "op": "exists"}]}]}}),
            "/tools/t/deny_if/0/conditions/0/path",
            "must start with 'args'",
        ),
        (
            policy({"t": {"deny_if": [{"conditions": [{"path": "args..a", "op": "exists"}]}]}}),
            "/tools/t/deny_if/0/conditions/0/path",
            "empty step",
        ),
        (
            policy(
                {"t": {"deny_if": [{"conditions": [{"path": "identity.name", "op": "exists"}]}]}}
            ),
            "/tools/t/deny_if/0/conditions/0/path",
            "only 'args' has steps",
        ),
        (
            policy({"t": {"require": [{"path": "args.a", "op": "eq"}]}}),
            "/tools/t/require/0",
            "has no 'value'",
        ),
        (
            policy({"t": {"limits": [{"window": "minute"}]}}),
            "/tools/t/limits/0",
            "required key 'max'",
        ),
        (
            policy({"t": {"limits": [{"max": 0, "window": "minute"}]}}),
            "/tools/t/limits/0/max",
            "greater than 0",
        ),
        (
            policy({"t": {"limits": [{"max": 1.5, "window": "minute"}]}}),
            "/tools/t/limits/0/max",
            "integer",
        ),
        (
            policy({"t": {"limits": [{"max": "30", "window": "minute"}]}}),
            "/tools/t/limits/0/max",
            "integer",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "week"}]}}),
            "/tools/t/limits/0/window",
            "positive number",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": 0}]}}),
            "/tools/t/limits/0/window",
            "positive number",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "minute", "scope": "team"}]}}),
            "/tools/t/limits/0/scope",
            "'grant', 'identity', 'session' or 'global'",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "minute", "burst": 0}]}}),
            "/tools/t/limits/0/burst",
            "greater than 0",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "minute", "cost": 0}]}}),
            "/tools/t/limits/0/cost",
            "positive integer",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "minute", "cost": "tasks"}]}}),
            "/tools/t/limits/0/cost",
            "must start with 'args'",
        ),
        (
            policy({"t": {"limits": [{"max": 1, "window": "minute", "cost": "args.tasks.*"}]}}),
            "/tools/t/limits/0/cost",
            "no '*'",
        ),
        (policy({"t": {"schema": "object"}}), "/tools/t/schema", "JSON Schema object"),
        (
            policy({"t": {"schema": {"type": "strng"}}}),
            "/tools/t/schema/type",
            "not a valid JSON Schema",
        ),
        (
            policy({"t": {"schema": {"properties": {"a": {"minimum": "1"}}}}}),
            "/tools/t/schema/properties/a/minimum",
            "not a valid JSON Schema",
        ),
        (
            policy({"t": {"schema": {"$schema": "http://json-schema.org/draft-04/schema#"}}}),
            "/tools/t/schema/$schema",
            "draft 2020-12",
        ),
        (
            {
                "version": "1",
                "policies": {"p": {"version": "1", "default": "deny"}},
                "grants": {"bob": "q"},
            },
            "/grants/bob",
            "names the policy 'q'",
        ),
        (
            {
                "version": "1",
                "policies": {
                    "p": {"version": "1", "default": "deny", "tools": {"t": {"actions": 1}}}
                },
            },
            "/policies/p/tools/t/actions",
            "Did you mean 'action'?",
        ),
    ],
)
def test_load_error_pointer_and_message(doc: dict[str, Any], pointer: str, fragment: str) -> None:
    issues = issues_of(doc)
    assert [i.pointer for i in issues] == [pointer], issues
    assert fragment in issues[0].message, issues[0].message
    assert issues[0].message.rstrip().endswith((".", "?")), "messages are complete sentences"


def test_counter_conflicts_are_errors_at_the_later_limit() -> None:
    doc = policy(
        {
            "a": {"limits": [{"counter": "w", "window": "minute", "max": 30}]},
            "b": {"limits": [{"counter": "w", "window": "minute", "max": 60}]},
            "c": {"limits": [{"counter": "w", "window": "minute", "max": 30, "scope": "global"}]},
            "d": {
                "limits": [
                    {"counter": "w", "window": 60, "max": 30, "scope": "identity", "burst": 30}
                ]
            },
        }
    )
    issues = issues_of(doc)
    assert [i.pointer for i in issues] == ["/tools/b/limits/0/counter", "/tools/c/limits/0/counter"]
    assert "defined differently at /tools/a/limits/0" in issues[0].message


def test_same_counter_in_two_policies_of_a_bundle_is_no_conflict() -> None:
    lim = {"counter": "w", "window": "minute"}
    load_policy(
        {
            "version": "1",
            "policies": {
                "a": {
                    "version": "1",
                    "default": "deny",
                    "tools": {"t": {"limits": [{**lim, "max": 1}]}},
                },
                "b": {
                    "version": "1",
                    "default": "deny",
                    "tools": {"t": {"limits": [{**lim, "max": 2}]}},
                },
            },
        }
    )


def test_every_problem_is_collected_and_sorted_by_position() -> None:
    text = (
        '{"version": "1",\n'
        ' "default": "sometimes",\n'
        ' "tools": {"a": {"deny_if": [{"conditions": [{"path": "args.x", "op": "gt", "value": "1"}]}]},\n'  # noqa: E501
        '           "b": {"limits": [{"max": 0, "window": "minute"}], "actoin": "deny"}}}'
    )
    issues = issues_of(text)
    assert [(i.line, i.pointer) for i in issues] == [
        (2, "/default"),
        (3, "/tools/a/deny_if/0/conditions/0/value"),
        (4, "/tools/b/limits/0/max"),
        (4, "/tools/b/actoin"),
    ]
    rendered = str(PolicyError(issues, source="policy.json"))
    assert rendered.splitlines()[0] == "The policy policy.json has 4 problems:"
    assert re.search(r"policy\.json:2:2: /default: ", rendered)


def test_non_object_document() -> None:
    issue = only_issue({"version": "1", "default": "deny", "tools": {"t": {"limits": "many"}}})
    assert issue.pointer == "/tools/t/limits"


def test_a_document_that_is_not_an_object(tmp_path: Path) -> None:
    file = tmp_path / "list.json"
    file.write_text("[1, 2]", "utf-8")
    issue = only_issue(file)
    assert issue.pointer == "" and "must be a JSON object" in issue.message
    assert only_issue(tmp_path / "empty.json").message.endswith("does not exist.")


def test_values_that_are_not_json_in_a_dict_source() -> None:
    issues = issues_of(
        policy(
            {
                "t": {
                    "deny_if": [
                        {"conditions": [{"path": "args.a", "op": "gt", "value": float("nan")}]}
                    ]
                }
            }
        )
    )
    assert issues[0].pointer == "/tools/t/deny_if/0/conditions/0/value"


def test_x_keys_in_name_maps_are_ignored_too() -> None:
    loaded = load_policy(policy({"x-note": "reads are free", "t": {}}))
    assert list(loaded.policies[""].tools) == ["t"]
    bundle = load_policy(
        {
            "version": "1",
            "policies": {"p": {"version": "1", "default": "deny"}, "x-draft": "not a policy"},
            "grants": {"x-comment": 1, "*": "p"},
        }
    )
    assert list(bundle.policies) == ["p"] and bundle.grants == {"*": "p"}


def test_a_top_level_schema_key_is_allowed_for_editors() -> None:
    doc = {"$schema": "https://example.com/policy.schema.json", "version": "1", "default": "deny"}
    load_policy(doc)
    bundle = {"$schema": "./policy.schema.json", "version": "1", "policies": {}}
    load_policy(bundle)
    with pytest.raises(PolicyError):
        load_policy({"$schema": 1, "version": "1", "default": "deny"})


# -- schemas the engine could not check calls against (found by fuzzing) -------------------


def _schema(schema: Any) -> dict[str, Any]:
    return policy({"t": {"schema": schema}})


@pytest.mark.parametrize(
    ("schema", "pointer", "fragment"),
    [
        (
            {"properties": {"a": {"$ref": "#/$defs/missing"}}},
            "/properties/a/$ref",
            "The $ref '#/$defs/missing' points at nothing in this schema",
        ),
        ({"$ref": "#/$defs/a/0", "$defs": {"a": {}}}, "/$ref", "points at nothing"),
        ({"$ref": "#nowhere"}, "/$ref", "points at nothing"),
        ({"$ref": "#/required", "required": ["a"]}, "/$ref", "points at an array, not at"),
        (
            {"$ref": "file:///etc/policylayer-schema.json"},
            "/$ref",
            "refers to another document, which the engine never reads",
        ),
        ({"$ref": "https://example.com/s.json"}, "/$ref", "another document"),
        ({"$ref": "other.json#/a"}, "/$ref", "another document"),
        # Resolvable by jsonschema without a download, but another document all the same.
        ({"$ref": "https://json-schema.org/draft/2020-12/schema"}, "/$ref", "another document"),
        (
            {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "x"}}},
            "/$defs/b/$ref",
            "another document",
        ),
        ({"$dynamicRef": "#nowhere"}, "/$dynamicRef", "The $dynamicRef '#nowhere' points"),
        # A reference into data is applied as a schema: it must be one.
        ({"$ref": "#/enum/0", "enum": [{"type": 5}]}, "/$ref", "not a valid schema"),
        (
            {"$ref": "#/enum/0", "enum": [{"$ref": "http://example.com/"}]},
            "/enum/0/$ref",
            "another document",
        ),
        (
            {"properties": {"a": {"type": "string", "pattern": "("}}},
            "/properties/a/pattern",
            "The regular expression '(' does not compile: missing ), unterminated subpattern",
        ),
        (
            {"properties": {"a/b": {"pattern": "a{4294967296}"}}},
            "/properties/a~1b/pattern",
            "the repetition number is too large",
        ),
        ({"patternProperties": {"x": {}, "[": {}}}, "/patternProperties/[", "'[' does not"),
        (
            {"$defs": {"d": {"patternProperties": {"(": {}}}}},
            "/$defs/d/patternProperties/(",
            "does not compile",
        ),
        (
            {"patternProperties": {"a": {}, "(?i)b": {}}, "additionalProperties": False},
            "/patternProperties",
            "do not compile as one regular expression 'a|(?i)b' when joined with '|'",
        ),
    ],
)
def test_schemas_the_engine_cannot_use_are_load_errors(
    schema: dict[str, Any], pointer: str, fragment: str
) -> None:
    issue = only_issue(_schema(schema))
    assert issue.pointer == "/tools/t/schema" + pointer
    assert fragment in issue.message, issue.message
    assert issue.message.endswith("."), "messages are complete sentences"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}},
        {"properties": {"next": {"$ref": "#"}}},
        {"$ref": "#/$defs/a%20b", "$defs": {"a b": {"type": "string"}}},
        {"$ref": "#here", "$defs": {"a": {"$anchor": "here"}}},
        {"$dynamicRef": "#meta", "$defs": {"m": {"$dynamicAnchor": "meta"}}},
        # An embedded resource is in the same document, whatever its URI.
        {"$id": "https://example.com/root", "$ref": "item", "$defs": {"i": {"$id": "item"}}},
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"a": {"$ref": "#/definitions/a"}},
            "definitions": {"a": {"pattern": "^[a-z]+$"}},
        },
        {"patternProperties": {"a": {}, "(?i)b": {}}},  # not joined without additionalProperties
        # Not schemas: a property named "pattern" and an enum member are data.
        {"properties": {"pattern": {"type": "string"}}, "enum": [{"pattern": "("}]},
        {"x-vendor": {"$ref": "https://example.com/"}},
    ],
)
def test_schemas_with_same_document_references_and_good_patterns_load(
    schema: dict[str, Any],
) -> None:
    load_policy(_schema(schema))


def test_patterns_that_python_warns_about_load_under_warnings_as_errors() -> None:
    # pytest runs with filterwarnings=error: re's FutureWarning ("Possible nested set")
    # for "[[a]" must neither escape load_policy nor become a PolicyError.
    doc = policy(
        {
            "t": {
                "schema": {"properties": {"a": {"pattern": "[[a]"}}},
                "deny_if": [{"conditions": [{"path": "args.b", "op": "regex", "value": "[[b]"}]}],
            }
        }
    )
    load_policy(doc)


@pytest.mark.parametrize(
    "limit",
    [
        {"max": 1, "window": 1e308, "burst": 2},
        {"max": 1, "window": 1.7976931348623157e308},
        {"max": 1, "window": "day", "burst": 10**306},
    ],
)
def test_a_limit_whose_bucket_overflows_a_float_is_a_load_error(limit: dict[str, Any]) -> None:
    issue = only_issue(policy({"t": {"limits": [limit]}}))
    assert issue.pointer == "/tools/t/limits/0"
    assert "times its burst" in issue.message
    assert "is more seconds than a float can hold" in issue.message
    assert issue.message.endswith("use a shorter window, a smaller burst or a larger max.")


def test_a_limit_just_below_the_overflow_loads() -> None:
    load_policy(policy({"t": {"limits": [{"max": 1, "window": 8e307, "burst": 2}]}}))


def test_a_window_too_small_to_count_in_is_a_load_error() -> None:
    doc = {
        "version": "1",
        "default": "deny",
        "tools": {"t": {"limits": [{"window": 5e-324, "max": 1000}]}},
    }
    with pytest.raises(PolicyError) as caught:
        load_policy(doc)
    (issue,) = caught.value.issues
    assert issue.pointer == "/tools/t/limits/0"
    assert "rounds to zero seconds a token" in issue.message


@pytest.mark.parametrize(
    ("where", "value", "hint"),
    [
        ("op", "gtt", "gt"),
        ("op", "greater_than", "gt"),
        ("op", "startswith", "starts_with"),
        ("op", "EQ", "eq"),
        ("window", "minutes", "minute"),
        ("window", "hourly", "hour"),
        ("scope", "user", "identity"),
        ("scope", "globl", "global"),
        ("default", "Deny", "deny"),
        ("action", "block", "deny"),
        ("mode", "dry-run", "shadow"),
    ],
)
def test_a_misspelt_value_gets_a_did_you_mean(where: str, value: str, hint: str) -> None:
    condition = {"path": "args.a", "op": value if where == "op" else "eq", "value": 1}
    limit = {"max": 1, "window": value if where == "window" else "minute"}
    if where == "scope":
        limit["scope"] = value
    entry: dict[str, Any] = {"deny_if": [{"conditions": [condition]}], "limits": [limit]}
    if where == "action":
        entry["action"] = value
    doc: dict[str, Any] = {"version": "1", "default": "deny", "tools": {"t": entry}}
    if where == "default":
        doc["default"] = value
    if where == "mode":
        doc["mode"] = value
    with pytest.raises(PolicyError) as raised:
        load_policy(doc)
    (issue,) = raised.value.issues
    assert issue.message.endswith(f"but it is \"{value}\". Did you mean '{hint}'?")


def test_no_did_you_mean_when_nothing_is_close() -> None:
    doc = {"version": "1", "default": "deny", "tools": {"t": {"action": "xyzzy"}}}
    with pytest.raises(PolicyError) as raised:
        load_policy(doc)
    assert raised.value.issues[0].message.endswith('but it is "xyzzy".')


@pytest.mark.parametrize("source", ["", "   ", "\n"])
def test_an_empty_string_is_neither_text_nor_a_path(source: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(source)
    message = raised.value.issues[0].message
    assert message.startswith("load_policy was given an empty string")
    assert "directory" not in message


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path)
    assert raised.value.issues[0].message == (
        f"The policy path {str(tmp_path)!r} is a directory; pass the policy file inside it."
    )
