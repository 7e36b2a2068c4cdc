"""The command reference, read from `reconciler.cli.app.build_parser()`: whatever the parser
accepts is what the pages say, so a command or flag added later appears by itself."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import partial

from reconciler.cli.app import build_parser

USAGE_WIDTH = 88


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]  # option strings, or the metavar of a positional argument
    metavar: str | None
    help: str
    default: str | None
    choices: tuple[str, ...]
    required: bool
    repeatable: bool
    positional: bool

    @property
    def key(self) -> str:
        return ", ".join(self.names)

    @property
    def anchor(self) -> str:
        return "option-" + self.names[-1].lstrip("-").lower().replace("[", "").replace("]", "")


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    usage: str
    options: tuple[Option, ...]


def _root() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:  # type: ignore[type-arg]
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return parser, action
    raise RuntimeError("reconciler's parser has no sub-commands")


def _help_text(action: argparse.Action, prog: str) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {**vars(action), "prog": prog}
    params = {k: getattr(v, "__name__", v) for k, v in params.items()}
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return action.help % params


def _option(action: argparse.Action, prog: str) -> Option | None:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return None
    positional = not action.option_strings
    flag = action.nargs == 0
    metavar = None if flag else (action.metavar or action.dest.upper())
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    names = (metavar or action.dest,) if positional else tuple(action.option_strings)
    default = action.default
    shown_default = (
        None
        if flag or default is None or default == argparse.SUPPRESS or default == []
        else str(default)
    )
    return Option(
        names=names,
        metavar=None if positional else metavar,
        help=_help_text(action, prog),
        default=shown_default,
        choices=tuple(map(str, action.choices or ())),
        required=bool(action.required) or (positional and action.nargs not in ("?", "*")),
        repeatable=isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"),
        positional=positional,
    )


def commands() -> list[Command]:
    """Every sub-command, in the parser's order."""
    _, sub = _root()
    summaries = {a.dest: a.help or "" for a in sub._choices_actions}
    out = []
    for name, parser in sub.choices.items():
        parser.formatter_class = partial(argparse.HelpFormatter, width=USAGE_WIDTH)
        options = [_option(a, parser.prog) for a in parser._actions]
        out.append(
            Command(
                name=name,
                summary=summaries.get(name, ""),
                usage=parser.format_usage().removeprefix("usage: ").strip(),
                options=tuple(o for o in options if o is not None),
            )
        )
    return out


def common_options(cmds: list[Command]) -> tuple[Option, ...]:
    """The options every command accepts, with the same meaning: documented once."""
    if not cmds:
        return ()
    first, *rest = cmds
    return tuple(o for o in first.options if not o.positional and all(o in c.options for c in rest))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _option_row(o: Option) -> str:
    name = " ".join(o.names) if o.positional else ", ".join(o.names)
    shown = f"`{name}`" if o.metavar is None else f"`{name} {o.metavar}`"
    notes = []
    if o.required and not o.positional:
        notes.append("required")
    if o.repeatable:
        notes.append("repeatable")
    if o.choices:
        notes.append("one of " + ", ".join(f"`{c}`" for c in o.choices))
    if o.default is not None:
        notes.append(f"default `{o.default}`")
    text = o.help[:1].upper() + o.help[1:] if o.help else ""
    if notes:
        text = (text + ". " if text else "") + "; ".join(notes).capitalize() + "."
    elif text and not text.endswith("."):
        text += "."
    return f'| <span id="{o.anchor}"></span>{shown} | {_cell(text)} |'


def options_markdown(cmd: Command, common: tuple[Option, ...], common_link: str) -> str:
    """Usage and the option tables of one command, as Markdown."""
    own = [o for o in cmd.options if o not in common]
    args = [o for o in own if o.positional]
    flags = [o for o in own if not o.positional]
    lines = ["## Usage", "", "```text", cmd.usage, "```", ""]
    if args:
        lines += ["### Arguments", "", "| argument | meaning |", "|---|---|"]
        lines += [_option_row(o) for o in args] + [""]
    lines += ["### Options", ""]
    if flags:
        lines += ["| option | meaning |", "|---|---|"]
        lines += [_option_row(o) for o in flags] + [""]
    shared = [o for o in cmd.options if o in common]
    if shared:
        names = ", ".join(f"`{o.names[-1]}`" for o in shared)
        lines += [f"And the [common options]({common_link}): {names}.", ""]
    elif not flags:
        lines += ["None.", ""]
    return "\n".join(lines)


def common_markdown(common: tuple[Option, ...]) -> str:
    if not common:
        return "No option is shared by every command.\n"
    lines = ["| option | meaning |", "|---|---|"]
    lines += [_option_row(o) for o in common]
    return "\n".join(lines) + "\n"


def index_markdown(cmds: list[Command], link: dict[str, str]) -> str:
    """The table of every command with its one-line summary."""
    lines = ["| command | what it does |", "|---|---|"]
    for c in cmds:
        lines.append(f"| [`{c.name}`]({link[c.name]}) | {_cell(c.summary)} |")
    return "\n".join(lines) + "\n"
