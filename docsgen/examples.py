"""The examples of a Markdown page, in order, for a test to run: files to write (a fenced
block with a `title="PATH"`), shell sessions (a `console` block: `$ ` lines are commands,
the lines under one are its expected output), and the reason given for any block that is
not run (`<!-- not-run: REASON -->` on the line before it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
BACKGROUND = re.compile(r"<!--\s*background\s*-->\s*$")


@dataclass(frozen=True)
class FileExample:
    path: str
    text: str
    line: int


@dataclass(frozen=True)
class Command:
    command: str
    expected: str  # "" when the page shows no output
    line: int
    background: bool = False  # runs until stopped: started, then left running


@dataclass(frozen=True)
class Skipped:
    reason: str
    line: int


Example = FileExample | Command | Skipped


def _session(body: str, first_line: int, background: bool) -> list[Command]:
    out: list[Command] = []
    command: list[str] = []
    expected: list[str] = []
    start = first_line

    def flush() -> None:
        if command:
            out.append(Command("\n".join(command), "\n".join(expected), start, background))

    continued = False
    for offset, line in enumerate(body.splitlines()):
        if continued:
            command.append(line)
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            flush()
            command, expected, start = [line[2:]], [], first_line + offset
            continued = line.endswith("\\")
        else:
            expected.append(line)
    flush()
    return out


def examples(page: Path) -> list[Example]:
    text = page.read_text(encoding="utf-8")
    out: list[Example] = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        title = TITLE.search(match.group("attrs"))
        if skip:
            out.append(Skipped(skip.group("reason"), line))
        elif title:
            out.append(FileExample(title.group("title"), match.group("body"), line))
        elif match.group("lang") == "console":
            out += _session(match.group("body"), line + 1, bool(BACKGROUND.search(before)))
    return out
