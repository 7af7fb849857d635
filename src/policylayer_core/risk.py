"""Risk categories for MCP tools, and the starter policy `policylayer suggest` prints.

Every tool of a `tools/list` result gets one category (Read, Write, Execute, Destructive,
Financial) and a severity (Low, Medium, High, Critical), deterministically, from:

* the annotations `readOnlyHint` and `destructiveHint` (decisive), `openWorldHint` and
  `idempotentHint` (they move the severity);
* words of the name (`qflow_task_delete` -> delete), of the values of an action-style
  enum in the input schema (`action: merge`), and of input property names (`command`);
* keywords of the description, in English, Chinese and Japanese.

The words are weighed in that order, and the riskier category wins wherever two sources
disagree; docs/cli.md writes the rules out. `suggest_policy` turns the classifications
into a policy with the rule that policy-format.md §5 recommends for each category.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Category",
    "Classification",
    "Severity",
    "classify",
    "read_tools",
    "suggest_policy",
    "tool_key",
]


class Category(enum.StrEnum):
    """What a tool does, in increasing order of how strict its recommended rule is."""

    READ = "Read"
    WRITE = "Write"
    EXECUTE = "Execute"
    FINANCIAL = "Financial"
    DESTRUCTIVE = "Destructive"


class Severity(enum.StrEnum):
    """How much harm a careless or hostile call could do."""

    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"


_ORDER = list(Category)
_SEVERITIES = list(Severity)

R, W, X, F, D = (
    Category.READ,
    Category.WRITE,
    Category.EXECUTE,
    Category.FINANCIAL,
    Category.DESTRUCTIVE,
)


def _each(words: str, category: Category) -> dict[str, Category]:
    return dict.fromkeys(words.split(), category)


# English words, for names, enum values and descriptions. "merge" is destructive because
# merging cannot be undone by a later call; "reset" is not, since in tools such as
# tutorials and test loops it only restarts their own state.
_WORDS: dict[str, Category] = {
    **_each(
        "get list search read show status find query fetch view describe count check verify "
        "validate inspect report tree lookup info stats preview explain analyze analyse load "
        "progress readiness visualize browse",
        R,
    ),
    **_each(
        "create update set add write edit put post insert upsert save modify patch rename move "
        "init initialize apply sync import upload send publish generate expand switch compress "
        "propose assign commit append register configure config enable disable attach copy "
        "complete resolve approve reject comment answer ask mark flush reset rewrite fix "
        "isolate advance",
        W,
    ),
    **_each(
        "run exec execute start stop pause resume deploy launch invoke spawn shell eval "
        "trigger restart reboot kill install build autopilot loop",
        X,
    ),
    **_each(
        "pay payment payments charge refund transfer invoice payout withdraw purchase billing "
        "checkout buy deposit",
        F,
    ),
    **_each("delete remove drop purge destroy erase wipe truncate uninstall rm del merge", D),
}
# Chinese and Japanese keywords, found as substrings. 合并 ("merge") is left out on
# purpose: servers such as qflow write "合并…工具" for "a combined tool". 卸载 is left out
# because it also means "unload" (qflow_context_compress unloads context modules).
_CJK: dict[str, Category] = {
    **_each("获取 列出 查询 搜索 查看 读取 显示 取得 一覧 検索 表示 参照 読み込", R),
    **_each(
        "创建 更新 设置 写入 添加 修改 保存 新建 编辑 生成 初始化 同步 切换 提交 重命名 "
        "作成 設定 追加 書き込 変更 編集 登録",
        W,
    ),
    **_each("执行 运行 启动 部署 安装 実行 起動 デプロイ インストール", X),
    **_each("支付 付款 转账 退款 扣款 充值 收款 打款 发票 支払 決済 送金 返金 請求 振込 課金", F),
    **_each("删除 移除 清空 销毁 清除 擦除 削除 消去 破棄 抹消", D),
}
_BULK = frozenset({"batch", "bulk", "mass", "批量", "一括"})
_ACTION_KEYS = frozenset({"action", "operation", "op", "command", "cmd", "verb"})
_COMMANDS = frozenset({"command", "cmd", "script", "shell"})
_RISKY = frozenset({Category.DESTRUCTIVE, Category.FINANCIAL})
_WORD_RE = re.compile(r"[A-Za-z]+")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True, slots=True)
class Classification:
    """One tool's category and severity, the evidence for them, and its risky action values.

    `risky_values` are the values of the action-style enum `action_property` that are
    Destructive or Financial while others are not; `rest` is then the category of the
    tool's other actions, which `--args-rules` applies to calls with a safe value.
    """

    name: str
    category: Category
    severity: Severity
    reasons: tuple[str, ...]
    action_property: str | None = None
    risky_values: tuple[str, ...] = ()
    rest: Category | None = None


def _tokens(text: str) -> list[str]:
    """Words of an identifier: `qflow_task_setStatus` -> qflow, task, set, status."""
    return [m.lower() for part in re.split(r"[^A-Za-z0-9]+", text) for m in _CAMEL.findall(part)]


def _english(word: str) -> Category | None:
    """The category of an English word of a description, or of its -s, -es or -ing form.

    Not -ed: "deleted items" describes a state, not what the tool does. Abbreviations
    such as "rm" count in names only ("del" is also a word of other languages).
    """
    stems = [word]
    for suffix, again in (("s", ""), ("es", ""), ("ing", ""), ("ing", "e")):
        if word.endswith(suffix):
            stems.append(word[: -len(suffix)] + again)
    for stem in stems:
        if len(stem) > 2 and stem != "del" and stem in _WORDS:
            return _WORDS[stem]
    return None


def _description_words(text: str) -> list[tuple[str, Category]]:
    found = [(k, c) for k, c in _CJK.items() if k in text]
    for match in _WORD_RE.finditer(text):
        word = match.group()
        if len(word) > 1 and word.isupper():
            continue  # RENAMED, REMOVED: identifiers named by the text, not its verbs
        category = _english(word.lower())
        if category is not None:
            found.append((word.lower(), category))
    return found


def _action_enum(schema: Any) -> tuple[str | None, list[str], bool]:
    """The first action-style enum property: its name, string values and whether required."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return None, [], False
    for key, spec in props.items():
        words = _tokens(key)
        if not words or words[-1] not in _ACTION_KEYS or not isinstance(spec, dict):
            continue
        values = [v for v in spec.get("enum") or [] if isinstance(v, str)]
        if values:
            required = schema.get("required")
            return key, values, isinstance(required, list) and key in required
    return None, [], False


def _value_category(value: str) -> Category:
    """An action value's category; one that no word names may change something: Write."""
    return _riskiest(c for w in _tokens(value) if (c := _WORDS.get(w)) is not None) or W


def _riskiest(found: Iterable[Category]) -> Category | None:
    return max(found, key=_ORDER.index, default=None)


Found = list[tuple[str, Category]]  # (the word, the category it points to)


def _command_props(props: Any) -> Found:
    """Free-text properties named like a command (`testCommand`): the tool runs what it gets."""
    if not isinstance(props, dict):
        return []
    return [
        (key, X)
        for key, spec in props.items()
        if set(_tokens(key)) & _COMMANDS and not (isinstance(spec, dict) and "enum" in spec)
    ]


def _evidence(name: Found, values: Found, props: Found, text: Found) -> list[str]:
    labels = ("name words", "action values", "properties that take a command", "description words")
    return [
        f"{label} " + ", ".join(f"'{w}' ({c})" for w, c in found)
        for label, found in zip(labels, (name, values, props, text), strict=True)
        if found
    ]


def _weigh(
    ann: Mapping[str, Any], name: Found, values: Found, props: Found, text: Found
) -> tuple[Category, list[str]]:
    """The category and the evidence that decided it (docs/cli.md writes the rules out)."""
    if ann.get("readOnlyHint") is True:
        override = [(w, c) for w, c in name + values if c in _RISKY]
        reasons = ["annotation readOnlyHint: true (the server says it only reads)"]
        if override:
            said = ", ".join(f"'{w}' ({c})" for w, c in override)
            reasons.append(f"but the name or action values say {said}: the riskier wins")
        return _riskiest(c for _, c in override) or R, reasons
    risky_text = [(w, c) for w, c in text if c in _RISKY]
    if ann.get("destructiveHint") is True:
        return D, ["annotation destructiveHint: true", *_evidence(name, values, props, risky_text)]
    strong = name + values + props + risky_text
    if any(c is not R for _, c in strong):
        return _riskiest(c for _, c in strong) or W, _evidence(name, values, props, risky_text)
    if strong or text:
        # Only now does the whole description count: a name such as "get_data" says Read,
        # and "... and updates the cache" in its description must still raise it to Write.
        return _riskiest(c for _, c in strong + text) or W, _evidence(name, values, props, text)
    return W, ["nothing in the name, schema or description says what it does; assumed to write"]


def classify(tool: Mapping[str, Any]) -> Classification:
    """Classify one tool of a `tools/list` result (a dict with name, description, ...)."""
    name = str(tool.get("name", ""))
    raw = tool.get("annotations")
    ann: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    schema = tool.get("inputSchema")
    description = tool.get("description")
    description = description if isinstance(description, str) else ""
    prop, all_values, _ = _action_enum(schema)
    by_name = [(w, c) for w in _tokens(name) if (c := _WORDS.get(w)) is not None]
    by_value = [(v, _value_category(v)) for v in all_values]
    by_prop = _command_props(schema.get("properties") if isinstance(schema, dict) else None)
    by_text = _description_words(description)
    if ann.get("destructiveHint") is False:
        # The server says its updates are only additive: words of the description such as
        # "removes" describe details, not the tool. Names and enum values still count.
        by_text = [(w, c) for w, c in by_text if c is not D]
    category, reasons = _weigh(ann, by_name, by_value, by_prop, by_text)

    risky_values = tuple(v for v, c in by_value if c in _RISKY)
    rest: Category | None = None
    partial = (
        category in _RISKY
        and 0 < len(risky_values) < len(all_values)
        and ann.get("destructiveHint") is not True
        and ann.get("readOnlyHint") is not True
        and not any(c in _RISKY for _, c in by_name)
        # a risk that the description names and no action value explains is the whole tool's
        and {c for _, c in by_text if c in _RISKY} <= {c for _, c in by_value}
    )
    if partial:
        safe = [c for _, c in by_value if c not in _RISKY] + [c for _, c in by_name + by_prop]
        rest = _riskiest(safe) or W
    severity, notes = _severity(
        category, ann, f"{name} {description}", command=bool(by_prop), partial=partial
    )
    if notes:
        reasons.append(f"severity {severity}: {', '.join(notes)}")
    return Classification(
        name,
        category,
        severity,
        tuple(reasons),
        prop if partial else None,
        risky_values if partial else (),
        rest,
    )


def _severity(
    category: Category, ann: Mapping[str, Any], text: str, *, command: bool, partial: bool
) -> tuple[Severity, list[str]]:
    """The category's base severity, moved by what the tool reaches and how much it does."""
    notes: list[str] = []
    level = {R: 0, W: 1, X: 2, F: 3, D: 3}[category]
    if category is W and (set(_tokens(text)) & _BULK or any(b in text for b in _BULK)):
        level += 1
        notes.append("it works in bulk")
    if category is X and command:
        level += 1
        notes.append("it takes a command to run")
    if category is D and partial:
        level -= 1
        notes.append("only some of its actions destroy")
    if ann.get("openWorldHint") is True:
        level += 1
        notes.append("openWorldHint: true (it reaches outside systems)")
    if ann.get("idempotentHint") is True and category is W:
        level -= 1
        notes.append("idempotentHint: true (repeating a call changes nothing more)")
    return _SEVERITIES[max(0, min(level, 3))], notes


# The keys of an MCP `Tool` and of its annotations, as the protocol spells them (camelCase),
# and as Python SDKs' `model_dump()` writes them without `by_alias=True` (snake_case).
_TOOL_KEYS = {
    "name": "name",
    "title": "title",
    "description": "description",
    "inputSchema": "inputSchema",
    "input_schema": "inputSchema",
    "outputSchema": "outputSchema",
    "output_schema": "outputSchema",
    "annotations": "annotations",
    "icons": "icons",
    "execution": "execution",
    "_meta": "_meta",
    "meta": "_meta",
}
_ANNOTATION_KEYS = {
    "title": "title",
    "readOnlyHint": "readOnlyHint",
    "read_only_hint": "readOnlyHint",
    "destructiveHint": "destructiveHint",
    "destructive_hint": "destructiveHint",
    "idempotentHint": "idempotentHint",
    "idempotent_hint": "idempotentHint",
    "openWorldHint": "openWorldHint",
    "open_world_hint": "openWorldHint",
}


def _spelled(
    raw: Mapping[str, Any], known: Mapping[str, str], where: str, warnings: list[str]
) -> dict[str, Any]:
    """`raw` with its keys in the protocol's spelling; a sentence in `warnings` per unknown key."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = known.get(key) if isinstance(key, str) else None
        if name is None:
            spellings = {k.lower(): v for k, v in known.items()}
            close = difflib.get_close_matches(str(key).lower(), list(spellings), n=1)
            hint = f" Did you mean '{spellings[close[0]]}'?" if close else ""
            warnings.append(
                f"{where}: the key {str(key)!r} is not one that suggest knows, so it is "
                f"ignored.{hint}"
            )
        elif value is not None or name not in out:
            # model_dump() writes None for every unset field; a set spelling wins
            out[name] = value
    return out


def read_tools(document: Any, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """The tools of a `tools/list` result: `{"tools": [...]}`, a JSON-RPC response whose
    `result` holds that, or a bare list. Raise ValueError with a sentence otherwise.

    Each tool comes back with the protocol's key spelling (`inputSchema`, `destructiveHint`),
    whether the file spells them so or as a Python SDK's `model_dump()` does (`input_schema`,
    `destructive_hint`). Keys it does not know are dropped, each with a sentence appended to
    `warnings`.
    """
    said: list[str] = [] if warnings is None else warnings
    if isinstance(document, dict) and isinstance(document.get("result"), dict):
        document = document["result"]
    if isinstance(document, dict) and "tools" in document:
        document = document["tools"]
    if not isinstance(document, list):
        raise ValueError(
            'it holds neither a tools/list result ({"tools": [...]}) nor a list of tools; '
            "save the server's tools/list response as JSON and pass that file"
        )
    tools: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(document):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"the tool at index {i} has no name; every tool needs a string 'name'")
        if name in seen:
            continue
        seen.add(name)
        tool = _spelled(raw, _TOOL_KEYS, f"The tool {name!r}", said)
        annotations = tool.get("annotations")
        if isinstance(annotations, dict):
            where = f"The annotations of the tool {name!r}"
            tool["annotations"] = _spelled(annotations, _ANNOTATION_KEYS, where, said)
        tools.append(tool)
    return tools


def tool_key(name: str) -> str:
    """The `tools` key that matches exactly this tool name, whatever characters it holds."""
    key = re.sub(r"([*?\[])", r"[\1]", name)
    # Keys beginning with "x-" are comments, so such a tool is reached by a glob.
    return "x[-]" + key[2:] if key.startswith("x-") else key


def _entry(c: Classification, schema: Any, args_rules: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "x-category": str(c.category),
        "x-severity": str(c.severity),
        "x-reason": "; ".join(c.reasons) + ".",
    }
    category = c.category
    if args_rules and c.rest is not None and c.action_property is not None:
        category = c.rest
        entry.update(_args_rules(c, schema))
    if category is D:
        entry["hide"] = True  # taken out by suggest_policy
    elif category is F:
        entry["action"] = "approve"
        entry["on_deny"] = f"'{c.name}' moves money; a person must approve every call."
    elif category in (W, X):
        per_minute = 30 if category is W else 10
        entry["limits"] = [
            {"counter": c.name, "window": "minute", "max": per_minute, "scope": "grant"}
        ]
    return entry


def _args_rules(c: Classification, schema: Any) -> dict[str, Any]:
    """Approval for the risky values of the action enum only; the enum becomes the schema,
    so a value the server does not list (a different spelling) is denied, not let through."""
    assert c.action_property is not None and c.rest is not None
    prop, risky = c.action_property, list(c.risky_values)
    _, _, required = _action_enum(schema)
    values = schema["properties"][prop]["enum"]  # as the server wrote it, not just the strings
    kind = str(c.category).lower()
    rules: list[dict[str, Any]] = [
        {
            "name": f"{kind}-{prop}",
            "conditions": [{"path": f"args.{prop}", "op": "in", "value": risky}],
            "on_deny": f"'{c.name}' with {prop} {' or '.join(risky)} is {kind}; "
            "a person must approve the call.",
        }
    ]
    arg_schema: dict[str, Any] = {"type": "object", "properties": {prop: {"enum": values}}}
    if required:
        arg_schema["required"] = [prop]
    else:
        rules.append(
            {
                "name": f"missing-{prop}",
                "conditions": [{"path": f"args.{prop}", "op": "exists", "value": False}],
                "on_deny": f"'{c.name}' without '{prop}' runs its default action, which may be "
                f"{kind}; a person must approve the call.",
            }
        )
    note = (
        f"Calls whose '{prop}' is {', '.join(risky)} need approval; the other actions follow "
        f"the {c.rest} rule."
    )
    return {"x-args-rule": note, "schema": arg_schema, "approve_if": rules}


def suggest_policy(
    tools: list[dict[str, Any]], *, args_rules: bool = False, server: str | None = None
) -> tuple[dict[str, Any], list[Classification]]:
    """A starter policy for `tools` (see `read_tools`) and the classification of each tool.

    With `args_rules`, a tool that is Destructive or Financial only through some values of
    an action-style enum stays visible: those values need approval, the other values follow
    the rule of their own category, and the enum is kept as the entry's argument schema.
    """
    found = [classify(tool) for tool in tools]
    hide: list[str] = []
    hidden: dict[str, Any] = {}
    entries: dict[str, Any] = {}
    for tool, c in zip(tools, found, strict=True):
        entry = _entry(c, tool.get("inputSchema"), args_rules)
        if entry.pop("hide", False):
            # Only the hide entry: a `tools` entry behind it could never be reached, so the
            # starter policy could never be covered 100% by `policylayer test`. What suggest
            # found stays beside it, as data the engine ignores.
            hide.append(tool_key(c.name))
            hidden[c.name] = entry
        else:
            entries[tool_key(c.name)] = entry
    label = f"the {server} server's" if server else "these"
    policy: dict[str, Any] = {
        "version": "1",
        "description": f"A starter policy for {label} {len(tools)} tools, suggested by "
        "`policylayer suggest` from their names, descriptions, schemas and annotations. "
        "Review every entry before you rely on it.",
        "default": "deny",
    }
    if hide:
        policy["hide"] = hide
    policy["tools"] = entries
    if hidden:
        policy["x-hidden"] = hidden
    return policy, found
