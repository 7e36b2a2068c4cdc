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

import marshal
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO

FORMAT = 2
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
        self.words = words
        self.root = root
        self._key: str | None = None
        self._path: str | None = None

    @property
    def path(self) -> str:
        """The answer's file: one per command line and working directory."""
        if self._path is None:
            import hashlib  # here: a replay imports it once git is running

            place = repr((self.words.words, os.getcwd())).encode("utf-8", "surrogateescape")
            name = f"replay-{hashlib.sha256(place).hexdigest()[:16]}.marshal"
            self._path = os.path.join(self.root, ".reconciler", "cache", name)
        return self._path

    @property
    def key(self) -> str:
        """A digest of every input but the registry's state and the files."""
        if self._key is None:
            import hashlib

            from reconciler import __version__

            settings = os.path.join(self.root, "reconciler.toml")
            try:
                with open(settings, "rb") as handle:
                    settings_bytes: bytes | None = handle.read()
            except OSError:
                settings_bytes = None
            inputs = (
                FORMAT,
                __version__,
                sys.executable,
                self.words.words,
                os.getcwd(),
                self.root,
                sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE),
                _code_identity(),
                settings_bytes,
                time.strftime("%Y-%m-%d"),
                time.strftime("%Y-%m-%d", time.gmtime()),
            )
            text = repr(inputs).encode("utf-8", "surrogateescape")
            self._key = hashlib.sha256(text).hexdigest()
        return self._key

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
        unchanged; None otherwise (nothing printed). Either way the key is then fixed:
        taken before the command runs, so an answer is never recorded under inputs that
        changed while it ran."""
        try:
            return self._replay(out)
        finally:
            _ = self.key

    def _replay(self, out: TextIO) -> int | None:
        # The files' check starts first, before even looking for an answer: git works on
        # the other core while this process reads the answer, works out its key and
        # checks the registry's state.
        from reconciler.adapters import git_fingerprint

        ref = self.words.values.get("--ref")
        check: git_fingerprint.CommitCheck | git_fingerprint.WorktreeCheck = (
            git_fingerprint.WorktreeCheck(self.root)
            if ref is None
            else git_fingerprint.CommitCheck(self.root, ref)
        )
        try:
            output, code, fingerprint = self._recorded(ref)
            if isinstance(check, git_fingerprint.CommitCheck):
                commit = check.commit()
                now = None if commit is None else "commit:" + commit
            else:
                now = check.fingerprint(fingerprint[1])
        except _Stale:
            check.cancel()
            return None
        if now is None or now != fingerprint[0]:
            return None
        binary = getattr(out, "buffer", None)
        if binary is None:  # a text-only stream (an embedding program's)
            out.write(output.decode("utf-8", "surrogateescape"))
        else:
            out.flush()
            binary.write(output)
        out.flush()
        return int(code)

    def _recorded(self, ref: str | None) -> tuple[bytes, int, tuple[str, list[str]]]:
        """The recorded output, exit code and files' fingerprint (with its watch list),
        when the key and the registry's token still match; _Stale otherwise."""
        from reconciler.adapters import sqlite_token

        try:
            with open(self.path, "rb") as handle:  # none yet: FileNotFoundError
                # loads of the whole, not load: load reads a file in tiny pieces.
                recorded = marshal.loads(handle.read())
            form, key, database, token, stamp, recorded_ref, fingerprint, watch, code, output = (
                recorded
            )
        except (OSError, EOFError, ValueError, TypeError):
            raise _Stale from None
        if form != FORMAT or key != self.key or recorded_ref != ref:
            raise _Stale
        if ref is None and watch is None:
            raise _Stale
        # The stamp spares loading SQLite when no write touched the registry's files.
        unchanged = stamp is not None and sqlite_token.stamp(database) == stamp
        if not unchanged and sqlite_token.read_token(database) != token:
            raise _Stale
        return output, code, (fingerprint, watch)

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
        from reconciler.adapters import sqlite_token

        # The stamp is taken first, then the token read again: a stamp kept is one the
        # answer's token held after, and a registry written since the plan read it makes
        # no answer at all.
        stamp = sqlite_token.stamp(database)
        if sqlite_token.read_token(database) != token:
            return
        data = (FORMAT, self.key, database, token, stamp, ref, fingerprint, watch, code)
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


class _Stale(Exception):
    """The recorded answer no longer holds."""


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
