"""Replayed plans: a `plan` whose inputs are all unchanged since the last one prints what
that one printed, without loading settings, the planner or the registry adapter.

A plan's answer depends on its inputs, and only those: the command line, the working
directory, the environment, the reconciler's own code, the settings file, today's date
(policy exceptions expire), the registry's state and the files at the ref or in the
working tree. The first six make the answer's key; the registry's state token and the
files' fingerprint (the commit a ref names, or the working tree's stat data, exactly as
the plan cache checks them) are compared before an answer is replayed. Any difference,
and the full command runs and records a new answer.

Only the plain and JSON forms are recorded (a terminal's rich output depends on its
width, and a person at a terminal does not notice the difference), only for the
embedded registry (an Azure ML registry has no cheap state token), and only when the
run wrote nothing to stderr. This module is imported before anything else of the command
line, so it imports only the standard library and the two lean adapters it checks with.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO

FORMAT = 1
# Shell variables that differ between two runs of the same command and mean nothing to it.
VOLATILE = frozenset({"_", "OLDPWD", "SHLVL", "PS1", "PS2", "COLUMNS", "LINES"})
VALUED = frozenset({"--ref", "--repo", "--path", "--registry"})  # options with a value
FLAGS = frozenset({"--json", "--no-color"})


class Words:
    """A `plan` command line that may be replayed: only these options, each once."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = tuple(words)
        self.values: dict[str, str] = {}
        self.ok = bool(words) and words[0] == "plan"
        rest = list(words[1:])
        while self.ok and rest:
            word = rest.pop(0)
            name, eq, value = word.partition("=")
            if name in FLAGS and not eq and name not in self.values:
                self.values[name] = ""
            elif name in VALUED and name not in self.values:
                if not eq:
                    if not rest or rest[0].startswith("-"):
                        self.ok = False
                        break
                    value = rest.pop(0)
                self.values[name] = value
            else:
                self.ok = False


def _code_identity() -> list[tuple[str, int, int]]:
    """The reconciler's own sources by stat data (an edited install answers anew)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found: list[tuple[str, int, int]] = []
    for directory, dirnames, filenames in os.walk(package):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".py", ".json")):
                info = os.stat(os.path.join(directory, name))
                found.append((os.path.join(directory, name), info.st_size, info.st_mtime_ns))
    found.sort()
    return found


def _repo_root(words: Words) -> str | None:
    repo = words.values.get("--repo")
    if repo is not None:
        return os.path.realpath(repo) if os.path.isdir(repo) else None
    from reconciler.adapters.git_fingerprint import git_output

    out = git_output(os.getcwd(), "rev-parse", "--show-toplevel")
    top = "" if out is None else out.decode("utf-8", "surrogateescape").strip()
    return top or None


class Answer:
    """The key of one replayable command line, and its recorded answer on disk."""

    def __init__(self, words: Words, root: str) -> None:
        from reconciler import __version__

        self.words = words
        self.root = root
        settings = os.path.join(root, "reconciler.toml")
        try:
            with open(settings, "rb") as handle:
                settings_bytes: bytes | None = handle.read()
        except OSError:
            settings_bytes = None
        inputs = (
            FORMAT,
            __version__,
            sys.executable,
            words.words,
            os.getcwd(),
            root,
            sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE),
            _code_identity(),
            settings_bytes,
            time.strftime("%Y-%m-%d"),
            time.strftime("%Y-%m-%d", time.gmtime()),
        )
        self.key = hashlib.sha256(repr(inputs).encode("utf-8", "surrogateescape")).hexdigest()
        place = hashlib.sha256(repr((words.words, os.getcwd())).encode()).hexdigest()[:16]
        self.path = os.path.join(root, ".reconciler", "cache", f"replay-{place}.marshal")

    @classmethod
    def of(cls, words: Sequence[str]) -> Answer | None:
        """The answer slot of this command line; None: it is never replayed."""
        parsed = Words(words)
        if not parsed.ok or sys.stdout.isatty() or "--no-cache" in words:
            return None
        root = _repo_root(parsed)
        return None if root is None else cls(parsed, root)

    def replay(self, out: TextIO) -> int | None:
        """Print the recorded answer and return its exit code, when every input is
        unchanged; None otherwise (nothing printed)."""
        from reconciler.adapters.sqlite_token import read_token

        try:
            with open(self.path, "rb") as handle:
                recorded = marshal.load(handle)
            form, key, database, token, ref, fingerprint, watch, code, output = recorded
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if form != FORMAT or key != self.key or read_token(database) != token:
            return None
        if self._fingerprint(ref, watch) != fingerprint:
            return None
        binary = getattr(out, "buffer", None)
        if binary is None:  # a text-only stream (an embedding program's)
            out.write(output.decode("utf-8", "surrogateescape"))
        else:
            out.flush()
            binary.write(output)
        out.flush()
        return int(code)

    def _fingerprint(self, ref: str | None, watch: list[str] | None) -> str | None:
        from reconciler.adapters.git_fingerprint import commit_of, worktree_fingerprint

        if ref is not None:
            commit = commit_of(self.root, ref)
            return None if commit is None else "commit:" + commit
        return None if watch is None else worktree_fingerprint(self.root, watch)

    def record(
        self,
        database: str,
        token: str,
        ref: str | None,
        fingerprint: str,
        watch: list[str] | None,
        code: int,
        output: str,
    ) -> None:
        """Keep this run's answer (written whole, then renamed: never half an answer)."""
        data = (FORMAT, self.key, database, token, ref, fingerprint, watch, code)
        blob = marshal.dumps((*data, output.encode("utf-8", "surrogateescape")))
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(blob)
            os.replace(temporary, self.path)
        except OSError:  # a cache that cannot be written is only slower
            import contextlib

            with contextlib.suppress(OSError):
                os.unlink(temporary)


class Watched:
    """stderr, noting whether anything was written to it (a warning is part of an
    answer that a replay would not repeat, so such a run is not recorded)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.written = False

    def write(self, text: str) -> int:
        if text:
            self.written = True
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
