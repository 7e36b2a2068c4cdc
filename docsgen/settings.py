"""The settings reference, read from the settings model: every key `reconciler.toml`
accepts (`reconciler.settings`), its type, default, environment variable and flags, and
the `[policy]` tables (`reconciler.core.governance.policy`). Each key's text is the attribute
docstring under its field, so the model and its documentation sit side by side."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from dataclasses import dataclass

from docsgen.commands import Command
from reconciler import settings as settings_module
from reconciler.core.governance import policy as policy_module


class UndocumentedSetting(Exception):
    """A key of the settings model has no docstring: the reference would be silent on it."""


@dataclass(frozen=True)
class Key:
    name: str
    kind: str
    default: str | None
    doc: str


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of a class (PEP 257 attribute docstrings)."""
    source = inspect.getsource(sys.modules[cls.__module__])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            out = {}
            for field, after in zip(node.body, node.body[1:], strict=False):
                if (
                    isinstance(field, ast.AnnAssign)
                    and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    out[field.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
            return out
    raise LookupError(f"class {cls.__name__} not found in {cls.__module__}")


_KINDS = {str: "string", int: "integer", float: "number", bool: "boolean", tuple: "list of strings"}


def _kind_of_annotation(annotation: str) -> str:
    for marker, kind in (
        ("tuple[str", "list of strings"),
        ("int", "integer"),
        ("float", "number"),
        ("bool", "boolean"),
        ("date", "date"),
        ("str", "string"),
    ):
        if marker in annotation:
            return kind
    return annotation


def _default(f: dataclasses.Field) -> str | None:  # type: ignore[type-arg]
    value = f.default
    if value is dataclasses.MISSING or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _documented(cls: type, names: list[str], where: str) -> list[Key]:
    docs = attribute_docs(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    missing = [n for n in names if n not in docs]
    if missing:
        raise UndocumentedSetting(
            f"{where}: {', '.join(f'`{n}`' for n in missing)} has no docstring; write one "
            f"under the field in {inspect.getsourcefile(cls)}"
        )
    keys = settings_module._KEYS
    out = []
    for name in names:
        f = by_name[name]
        kind = _KINDS.get(keys[name], "string") if cls is settings_module.Settings else None
        out.append(Key(name, kind or _kind_of_annotation(str(f.type)), _default(f), docs[name]))
    return out


def settings_keys() -> list[Key]:
    """The `[reconciler]` keys, in the model's order."""
    settable = list(settings_module._KEYS)
    return _documented(settings_module.Settings, settable, "settings")


def policy_keys() -> list[Key]:
    return _documented(
        policy_module.Rules, [f.name for f in dataclasses.fields(policy_module.Rules)], "[policy]"
    )


def target_keys() -> list[Key]:
    """The keys of a `[targets.NAME]` table (reconciler.core.promotion.gate.Target)."""
    from reconciler.core.promotion.gate import Target

    names = [f.name for f in dataclasses.fields(Target)]
    return _documented(Target, [n for n in names if n != "name"], "[targets.NAME]")


def exception_keys() -> list[Key]:
    cls = policy_module.PolicyException
    return _documented(cls, [f.name for f in dataclasses.fields(cls)], "[[policy.exceptions]]")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def flags_for(name: str, cmds: list[Command]) -> list[str]:
    """The flags that set a key: an option whose destination is the key's name."""
    flags: list[str] = []
    for cmd in cmds:
        for option in cmd.options:
            flag = option.names[-1]
            sets_it = not option.positional and flag.lstrip("-").replace("-", "_") == name
            if sets_it and flag not in flags:
                flags.append(flag)
    return flags


def settings_markdown(cmds: list[Command]) -> str:
    lines = [
        "| key | type | default | environment variable | flag |",
        "|---|---|---|---|---|",
    ]
    keys = settings_keys()
    prefix = settings_module.ENV_PREFIX
    for key in keys:
        flags = ", ".join(f"`{f}`" for f in flags_for(key.name, cmds)) or "—"
        default = f"`{key.default}`" if key.default is not None else "—"
        lines.append(
            f"| [`{key.name}`](#{key.name.replace('_', '-')}) | {key.kind} | {_cell(default)} "
            f"| `{prefix}{key.name.upper()}` | {flags} |"
        )
    lines.append("")
    for key in keys:
        lines += [f"### `{key.name}` {{#{key.name.replace('_', '-')}}}", "", key.doc, ""]
    return "\n".join(lines)


def table_markdown(keys: list[Key]) -> str:
    lines = ["| key | type | meaning |", "|---|---|---|"]
    for key in keys:
        lines.append(f"| `{key.name}` | {key.kind} | {_cell(key.doc)} |")
    return "\n".join(lines) + "\n"
