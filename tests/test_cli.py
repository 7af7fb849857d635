"""The `policylayer` command line, run as `python -m policylayer_core` in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import DATA, EXAMPLES, policy
from policylayer_core import PolicyEngine, load_policy
from policylayer_core.cli import main, policy_schema

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
QFLOW_TOOLS = DATA / "qflow-tools.json"
EXAMPLE = EXAMPLES / "qflow-policy.json"
SHIPPED_SCHEMA = SRC / "policylayer_core" / "policy.schema.json"
ISSUE_LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<pointer>/\S*): (?P<msg>.+)$"
)

BROKEN = """{
  "version": "1",
  "default": "maybe",
  "tools": {
    "qflow_task_batch": {"deny-if": []},
    "qflow_task_list": {"limits": [{"max": 30, "window": "fortnight"}]}
  }
}
"""
WARNED = """{
  "version": "1",
  "default": "deny",
  "hide": ["qflow_task_delet"],
  "tools": {
    "qflow_task_get": {},
    "qflow_task_[g]et": {},
    "qflow_task_batch": {"limits": [{"max": 5, "window": "minute", "cost": 9}]}
  }
}
"""


def source_env() -> dict[str, str]:
    # The source tree comes first on the path, so the test runs this checkout's code.
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policylayer_core", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=source_env(),
        check=False,
        timeout=60,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


# -- check ---------------------------------------------------------------------------------


def test_check_a_clean_policy() -> None:
    done = run("check", "examples/qflow-policy.json", "--tools", "tests/data/qflow-tools.json")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "Checked 1 file: no problems found.\n",
        "",
    )


def test_check_a_broken_policy_lists_every_problem_by_position(tmp_path: Path) -> None:
    write(tmp_path, "broken.json", BROKEN)
    done = run("check", "broken.json", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "broken.json:3:3: /default: This value must be 'allow' or 'deny', but it is \"maybe\"."
    )
    assert lines[1].startswith(
        "broken.json:5:26: /tools/qflow_task_batch/deny-if: Unknown key 'deny-if' in a tool "
        "entry. Did you mean 'deny_if'?"
    )
    assert lines[2] == (
        "broken.json:6:48: /tools/qflow_task_list/limits/0/window: The window must be 'second', "
        "'minute', 'hour', 'day' or a positive number of seconds, but it is \"fortnight\"."
    )
    assert lines[3:] == ["Checked 1 file: 3 errors."]
    assert all(ISSUE_LINE.match(line) for line in lines[:3])


def test_check_warnings_and_strict(tmp_path: Path) -> None:
    write(tmp_path, "warned.json", WARNED)
    done = run("check", "warned.json", cwd=tmp_path)
    lines = done.stdout.splitlines()
    assert done.returncode == 0
    assert [line.split(": warning: ")[0] for line in lines[:-1]] == [
        "warned.json:7:5: /tools/qflow_task_[g]et",
        "warned.json:8:68: /tools/qflow_task_batch/limits/0/cost",
    ]
    assert lines[-1] == "Checked 1 file: 2 warnings."
    strict = run("check", "--strict", "warned.json", "--tools", str(QFLOW_TOOLS), cwd=tmp_path)
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[0] == (
        "warned.json:4:12: /hide/0: warning: The hide entry 'qflow_task_delet' matches none of "
        "the 50 tools the server lists. Check its spelling, or remove it."
    )
    assert strict.stdout.splitlines()[-1] == (
        "Checked 1 file: 3 warnings (--strict: warnings count as errors)."
    )


def test_check_json(tmp_path: Path) -> None:
    write(tmp_path, "broken.json", BROKEN)
    write(tmp_path, "warned.json", WARNED)
    done = run("check", "--json", "warned.json", "broken.json", cwd=tmp_path)
    assert done.returncode == 1
    found = json.loads(done.stdout)
    assert [(f["file"], f["line"], f["severity"], f["code"]) for f in found] == [
        ("warned.json", 7, "warning", "shadowed-key"),
        ("warned.json", 8, "warning", "cost-above-burst"),
        ("broken.json", 3, "error", "policy-error"),
        ("broken.json", 5, "error", "policy-error"),
        ("broken.json", 6, "error", "policy-error"),
    ]
    assert set(found[0]) == {"file", "line", "column", "pointer", "severity", "code", "message"}
    clean = run("check", "--json", "examples/qflow-policy.json")
    assert (clean.returncode, json.loads(clean.stdout)) == (0, [])


def test_check_several_files_and_a_missing_one(tmp_path: Path) -> None:
    done = run("check", str(EXAMPLE), "missing.json", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == (
        "missing.json: (document root): The policy file 'missing.json' does not exist.\n"
        "Checked 2 files: 1 error.\n"
    )


def test_check_usage_errors(tmp_path: Path) -> None:
    nothing = run("check")
    assert nothing.returncode == 2
    assert nothing.stderr.splitlines()[-1] == (
        "policylayer check: error: the following arguments are required: FILE"
    )
    write(tmp_path, "tools.json", '{"tools": 1}')
    bad_tools = run("check", str(EXAMPLE), "--tools", "tools.json", cwd=tmp_path)
    assert bad_tools.returncode == 2 and bad_tools.stdout == ""
    assert bad_tools.stderr.splitlines()[-1].startswith(
        "policylayer check: error: The tools file 'tools.json' cannot be used: it holds neither"
    )
    missing = run("check", str(EXAMPLE), "--tools", "nope.json", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == (
        "policylayer check: error: The tools file 'nope.json' cannot be read (No such file or "
        "directory); give the path of a JSON file."
    )
    assert run().returncode == 2


# -- explain -------------------------------------------------------------------------------

REWRITE = '{"projectRoot": "/srv/projects/demo", "action": "rewrite"}'


def test_explain_a_denial() -> None:
    done = run(
        "explain", "examples/qflow-policy.json", "--identity", "alice",
        "--tool", "qflow_task_batch", "--args", REWRITE,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "decision: deny (allowed: no)\n"
        "rule:     /tools/qflow_task_batch/deny_if/1 (examples/qflow-policy.json:42:9)\n"
        "reason:   Rewrites are not allowed.\n"
        "steps:\n"
        "  1. /tools/qflow_task_batch: matched exactly ('qflow_task_batch')\n"
        "  2. /tools/qflow_task_batch/schema: passed (the arguments match the schema)\n"
        "  3. /tools/qflow_task_batch/require/0: held (args.projectRoot starts_with "
        '"/srv/projects/")\n'
        "  4. /tools/qflow_task_batch/deny_if/0: did not hold ('no-parent-dirs': args.projectRoot "
        'regex "(^|/)\\\\.\\\\.(/|$)")\n'
        "  5. /tools/qflow_task_batch/deny_if/1: held: deny ('no-rewrites': args.action eq "
        '"rewrite")\n'
        "policy at /tools/qflow_task_batch/deny_if/1:\n"
        "  {\n"
        '    "name": "no-rewrites",\n'
        '    "conditions": [{"path": "args.action", "op": "eq", "value": "rewrite"}],\n'
        '    "on_deny": "Rewrites are not allowed."\n'
        "  }\n"
    )


def test_explain_args_file_stdin_approved_and_json(tmp_path: Path) -> None:
    args = {"projectRoot": "/srv/projects/demo", "action": "create", "tasks": [{"title": "t"}] * 21}
    write(tmp_path, "args.json", json.dumps(args))
    common = ("explain", str(EXAMPLE), "--identity", "bob", "--tool", "qflow_task_batch")
    asked = run(*common, "--args-file", "args.json", cwd=tmp_path)
    assert asked.stdout.splitlines()[:3] == [
        "decision: approval_required (allowed: no)",
        f"rule:     /tools/qflow_task_batch/approve_if/0 ({EXAMPLE}:45:9)",
        "reason:   Large batches need a human.",
    ]
    approved = run(*common, "--args-file", "-", "--approved", "--json", stdin=json.dumps(args))
    report = json.loads(approved.stdout)
    assert approved.returncode == 0
    assert {k: report[k] for k in ("effect", "allowed", "enforced", "rule", "retry_after")} == {
        "effect": "allow",
        "allowed": True,
        "enforced": True,
        "rule": "/tools/qflow_task_batch",
        "retry_after": None,
    }
    assert report["policy"]["limits"][0]["counter"] == "writes"
    assert (report["line"], report["column"]) == (18, 5)
    assert {
        "pointer": "/tools/qflow_task_batch",
        "outcome": "approval given",
        "detail": "approved=True",
    } in report["steps"]


def test_explain_shows_the_default_and_shadow_mode(tmp_path: Path) -> None:
    write(tmp_path, "p.json", json.dumps(policy({"a": {}}, mode="shadow")))
    done = run(
        "explain", "p.json", "--identity", "x", "--tool", "b", "--session", "s1", cwd=tmp_path
    )
    assert done.stdout.splitlines() == [
        "decision: deny (allowed: yes)",
        "rule:     /default (p.json:1:18)",
        "reason:   The tool 'b' is not allowed: the policy allows only the tools it lists.",
        "mode:     shadow (not enforced: the call goes through)",
        "steps:",
        "  1. /default: no tool entry matches; default is deny",
        "policy at /default:",
        '  "deny"',
    ]


def test_explain_errors(tmp_path: Path) -> None:
    base = ("explain", str(EXAMPLE), "--identity", "a", "--tool", "qflow_task_batch")
    bad = run(*base, "--args", '{"action": create}')
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.splitlines()[-1] == (
        "policylayer explain: error: --args is not valid JSON at column 12: expected a value "
        "(object, array, string, number, true, false or null) but found 'create'. Write the "
        """arguments as one JSON object in single quotes, such as --args '{"action": "create"}'."""
    )
    both = run(*base, "--args", "{}", "--args-file", "x.json")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    assert run("explain", str(EXAMPLE), "--tool", "t").returncode == 2  # --identity is required
    write(tmp_path, "broken.json", BROKEN)
    broken = run("explain", "broken.json", "--identity", "a", "--tool", "t", cwd=tmp_path)
    assert (broken.returncode, broken.stdout) == (1, "")
    assert broken.stderr.splitlines()[:2] == [
        "The policy broken.json has 3 problems:",
        "  broken.json:3:3: /default: This value must be 'allow' or 'deny', but it is \"maybe\".",
    ]


# -- schema --------------------------------------------------------------------------------


def policies_in_docs() -> list[tuple[str, Any]]:
    """Every example policy: examples/*policy*.json and the policy blocks of docs/*.md."""
    found = [
        (p.name, json.loads(p.read_text("utf-8"))) for p in sorted(EXAMPLES.glob("*policy.json"))
    ]
    for md in sorted((ROOT / "docs").glob("*.md")):
        text = md.read_text("utf-8")
        for block in re.finditer(
            r"(<!--\s*load-error\s*-->\s*)?```json\n(.*?)\n\s*```", text, re.S
        ):
            try:
                value = json.loads(block.group(2))
            except ValueError:
                continue
            if isinstance(value, dict) and value.get("version") == "1" and not block.group(1):
                found.append((f"{md.name}:{text[: block.start()].count(chr(10)) + 1}", value))
    return found


def test_schema_is_the_shipped_file(tmp_path: Path) -> None:
    done = run("schema")
    shipped = SHIPPED_SCHEMA.read_text("utf-8")
    assert (done.returncode, done.stdout) == (0, shipped), (
        "src/policylayer_core/policy.schema.json is out of date: "
        "run `python -m policylayer_core schema --output src/policylayer_core/policy.schema.json`"
    )
    written = run("schema", "--output", "out.json", cwd=tmp_path)
    assert written.stdout == "Wrote the JSON Schema of policy.json to out.json.\n"
    assert (tmp_path / "out.json").read_text("utf-8") == shipped
    packaged = resources.files("policylayer_core").joinpath("policy.schema.json")
    assert json.loads(packaged.read_text("utf-8")) == policy_schema()


def test_schema_is_a_valid_2020_12_schema() -> None:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    condition = schema["$defs"]["Condition"]
    assert "exists" in condition["properties"]["op"]["enum"]
    assert schema["$defs"]["ToolEntry"]["additionalProperties"] is False
    assert "^x-" in schema["$defs"]["Policy"]["properties"]["tools"]["patternProperties"]


@pytest.mark.parametrize(("where", "document"), policies_in_docs(), ids=lambda x: str(x)[:40])
def test_schema_accepts_every_example_policy(where: str, document: Any) -> None:
    load_policy(document)  # the loader agrees that it is a policy
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


def test_the_docs_have_enough_policies_to_check_the_schema() -> None:
    assert len(policies_in_docs()) >= 10


@pytest.mark.parametrize(
    "document",
    [
        {"default": "deny"},
        {"version": "1", "default": "maybe"},
        {"version": "1", "default": "deny", "tools": {"t": {"deny-if": []}}},
        {
            "version": "1",
            "default": "deny",
            "tools": {"t": {"limits": [{"max": 1, "window": "fortnight"}]}},
        },
        {
            "version": "1",
            "default": "deny",
            "tools": {"t": {"require": [{"path": "args.a", "op": "in", "value": 1}]}},
        },
        {
            "version": "1",
            "default": "deny",
            "tools": {"t": {"deny_if": [{"conditions": [{"path": "args.a", "op": "eq"}]}]}},
        },
        {
            "version": "1",
            "default": "deny",
            "tools": {"t": {"limits": [{"max": 1, "window": 1, "cost": "args.a.*"}]}},
        },
        {"version": "1", "default": "deny", "policies": {}},
    ],
)
def test_schema_rejects_broken_policies(document: dict[str, Any]) -> None:
    assert not jsonschema.Draft202012Validator(policy_schema()).is_valid(document)


def test_schema_allows_x_keys_everywhere() -> None:
    document = {
        "version": "1",
        "default": "deny",
        "x-owner": "ops",
        "tools": {
            "x-comment": "any value",
            "t": {"x-a": 1, "limits": [{"max": 1, "window": 60, "x-b": []}]},
        },
    }
    load_policy(document)
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


# -- suggest -------------------------------------------------------------------------------

SUMMARY = (
    "Classified 50 tools: 16 Read, 25 Write, 4 Execute, 0 Financial, 5 Destructive; 5 hidden. "
    "Review the policy before you use it.\n"
)


def test_suggest_for_qflow_passes_check(tmp_path: Path) -> None:
    done = run("suggest", str(QFLOW_TOOLS))
    assert (done.returncode, done.stderr) == (0, SUMMARY)
    suggested = json.loads(done.stdout)
    assert suggested["hide"] == [
        "qflow_task_delete",
        "qflow_task_deps",
        "qflow_tag_manage",
        "qflow_workspace",
        "qflow_plugin",
    ]
    assert suggested["x-hidden"]["qflow_task_delete"]["x-category"] == "Destructive"
    assert done.stdout.startswith('{\n  "version": "1",\n')
    write(tmp_path, "suggested.json", done.stdout)
    checked = run("check", "--strict", "suggested.json", "--tools", str(QFLOW_TOOLS), cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, "Checked 1 file: no problems found.\n")


def test_suggest_args_rules(tmp_path: Path) -> None:
    done = run("suggest", str(QFLOW_TOOLS), "--args-rules")
    assert done.stderr == SUMMARY.replace("5 hidden", "1 hidden")
    engine = PolicyEngine.from_dict(json.loads(done.stdout))
    assert (
        engine.decide("a", "qflow_tag_manage", {"action": "delete"}).effect == "approval_required"
    )
    assert engine.decide("a", "qflow_tag_manage", {"action": "list"}).effect == "allow"
    write(tmp_path, "suggested.json", done.stdout)
    assert run("check", "--strict", "suggested.json", cwd=tmp_path).returncode == 0


def test_suggest_explain_and_json() -> None:
    explained = run("suggest", str(QFLOW_TOOLS), "--explain")
    lines = explained.stdout.splitlines()
    assert explained.returncode == 0 and explained.stderr == ""
    at = lines.index("qflow_task_delete: Destructive, severity Critical")
    assert lines[at + 1 : at + 4] == [
        "  - annotation destructiveHint: true",
        "  - name words 'delete' (Destructive)",
        "  - description words '删除' (Destructive)",
    ]
    assert (
        "qflow_workspace: Destructive, severity High; --args-rules: approval for action merge"
        in lines
    )
    assert lines[-1] + "\n" == SUMMARY
    as_json = json.loads(run("suggest", str(QFLOW_TOOLS), "--json").stdout)
    assert len(as_json) == 50
    assert as_json[2] == {
        "name": "qflow_task_next",
        "category": "Read",
        "severity": "Low",
        "reasons": ["annotation readOnlyHint: true (the server says it only reads)"],
        "action_property": None,
        "risky_values": [],
        "other_actions": None,
    }


def test_suggest_accepts_a_bare_list(tmp_path: Path) -> None:
    write(tmp_path, "tools.json", json.dumps([{"name": "pay_invoice"}, {"name": "get_invoice"}]))
    done = run("suggest", "tools.json", cwd=tmp_path)
    assert done.returncode == 0
    suggested = json.loads(done.stdout)
    assert suggested["tools"]["pay_invoice"]["action"] == "approve"
    assert suggested["description"].startswith("A starter policy for these 2 tools")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "is not valid JSON at line 1, column 2: the text ends inside the object"),
        ('{"name": "x"}', "cannot be used: it holds neither a tools/list result"),
        ('[{"description": "x"}]', "cannot be used: the tool at index 0 has no name"),
    ],
)
def test_suggest_usage_errors(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path, "tools.json", text)
    done = run("suggest", "tools.json", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1].startswith(
        f"policylayer suggest: error: The tools file 'tools.json' {problem}"
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="the session is a bash session")
def test_the_session_in_the_docs_is_real(tmp_path: Path) -> None:
    """docs/cli.md shows a shell session; run its commands again and compare every line."""
    session = re.search(
        r"## A session\n.*?```console\n(.*?)```", (ROOT / "docs/cli.md").read_text("utf-8"), re.S
    )
    assert session is not None
    for source in (QFLOW_TOOLS, EXAMPLE):
        write(tmp_path, source.name, source.read_text("utf-8"))
    command = f"{sys.executable} -m policylayer_core"
    shown: list[str] = []
    for line in session.group(1).splitlines():
        if line.startswith("$ "):
            shown.append(line)
            done = subprocess.run(
                ["bash", "-c", line[2:].replace("policylayer", command, 1)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                cwd=tmp_path, env=source_env(), check=False, timeout=60,
            )  # fmt: skip
            shown += done.stdout.splitlines()
    assert "\n".join(shown) == session.group(1).rstrip("\n")


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "Checked 1 file: no problems found.\n"
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.startswith("policylayer ")


def _run_into(argv: list[str], encoding: str) -> tuple[int, str]:
    """Run `main` with stdout and stderr on one strict stream of `encoding`."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding=encoding)  # errors="strict", as a pipe or a log is
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(argv)
        out.flush()
    return status, raw.getvalue().decode(encoding)


# "\ud800" is a valid JSON escape but no character: pointers and messages then hold an
# unpaired surrogate, which no stream can encode.
SURROGATES = (
    '{"version": "1", "default": "deny", "tools": {'
    '"t": {"schema": {"properties": {"\\udcff": {"type": "\\udcff"}}}}}}'
)


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_check_reports_text_its_stream_cannot_encode(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(SURROGATES, "utf-8")
    status, text = _run_into(["check", str(path)], encoding)
    assert status == 1
    assert "/tools/t/schema/properties/\\udcff: " in text
    assert text.endswith("Checked 1 file: 2 errors.\n"), text


def test_check_json_escapes_such_text_as_json_does(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(SURROGATES, "utf-8")
    status, text = _run_into(["check", "--json", str(path)], "utf-8")
    assert status == 1
    pointers = {record["pointer"] for record in json.loads(text)}
    assert "/tools/t/schema/properties/\udcff/type" in pointers


def test_explain_prints_a_tool_name_its_stream_cannot_encode(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy({"工具\ud800": {"action": "deny"}})), "utf-8")
    status, text = _run_into(
        ["explain", str(path), "--identity", "a", "--tool", "工具\ud800"], "ascii"
    )
    assert status == 0
    assert "reason:   The tool '\\u5de5\\u5177\\ud800' is denied by the policy." in text
