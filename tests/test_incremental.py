"""What a long-running reconciler keeps between triggers (the working tree's listing,
resolved environments, per-environment plans) gives exactly what a fresh read gives,
after any sequence of edits: checked by stat data, or told the changed paths by file
events (as `watch` tells it)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from reconciler.adapters.gitsource import GitSource
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.adapters.worktree import WorkTreeSnapshot
from reconciler.adapters.worktree_index import TreeIndex
from reconciler.core.desired.selection import Selection
from reconciler.core.plan.options import PlanOptions
from reconciler.engine import ApplyRefused, Engine
from reconciler.engine.plan import make
from reconciler.engine.read import read
from reconciler.ports import NoCache
from reconciler.watch.memory import keep_in_memory
from tests.conftest import CONDA, GitRepo

ENVS = "environments"


class Clock:
    """Stat data as if each step happened a second after the previous one (a real clock
    may give two quick writes the same timestamp; the index then re-reads them, see
    RACY_SECONDS, which these tests turn off to exercise the kept path)."""

    def __init__(self) -> None:
        self.now = time.time() - 100_000

    def touch(self, root: Path, paths: list[str]) -> None:
        self.now += 1
        for rel in paths:
            while True:
                full = root / rel if rel else root
                if full.exists() and not full.is_symlink():
                    os.utime(full, (self.now, self.now))
                if not rel:
                    break
                rel = os.path.dirname(rel)


def environment(name: str, rng: random.Random) -> str:
    kind = rng.choice(["image", "conda", "shared", "build", "pinned"])
    text = f"name: {name}\ndescription: {rng.choice(['a', 'bb', 'ccc'])}\n"
    if kind == "image":
        return text + f"image: busybox:1.{rng.randint(30, 36)}\n"
    if kind == "conda":
        return text + "image: busybox:1.36\nconda_file: conda.yml\n"
    if kind == "shared":
        return text + "image: busybox:1.36\nconda_file: ../../shared/conda.yml\n"
    if kind == "pinned":
        return text + f"version: '{rng.randint(1, 3)}'\nimage: busybox:1.36\n"
    return text + "build:\n  path: ctx\n"


class Tree:
    """Random edits of a repository of environments."""

    def __init__(self, repo: GitRepo, rng: random.Random) -> None:
        self.repo = repo
        self.rng = rng
        self.clock = Clock()
        self.names = [f"e{i}" for i in range(12)]
        # What file events would name since the last look: each path written, removed or
        # renamed, and each directory made or removed (git's own files are not watched).
        self.events: set[str] = set()

    def take_events(self) -> frozenset[str]:
        events, self.events = frozenset(self.events), set()
        return events

    def _made(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent and not (self.repo.root / parent).exists():
            self.events.add(parent)
            parent = os.path.dirname(parent)
        self.events.add(path)

    def write(self, path: str, text: str) -> None:
        self._made(path)
        self.repo.write(path, text)
        self.clock.touch(self.repo.root, [path])

    def remove(self, path: str) -> None:
        full = self.repo.root / path
        if full.is_symlink() or full.is_file():
            full.unlink()
            self.events.add(path)
        self.clock.touch(self.repo.root, [os.path.dirname(path)])

    def rename(self, old: str, new: str) -> None:
        if not (self.repo.root / old).exists():
            return
        self._made(new)
        self.events.add(old)
        (self.repo.root / new).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.repo.root / old, self.repo.root / new)
        self.clock.touch(self.repo.root, [new, os.path.dirname(old)])

    def setup(self) -> None:
        self.write("shared/conda.yml", CONDA)
        for name in self.names[:8]:
            self.add(name)
        self.repo.commit("start")

    def add(self, name: str) -> None:
        base = f"{ENVS}/{name}"
        self.write(f"{base}/conda.yml", CONDA.replace("3.11", f"3.1{self.rng.randint(0, 2)}"))
        self.write(f"{base}/ctx/Dockerfile", f"FROM busybox:1.{self.rng.randint(30, 36)}\n")
        self.write(f"{base}/ctx/app.py", "print(1)\n")
        self.write(f"{base}/environment.yml", environment(name, self.rng))

    def step(self) -> str:
        rng = self.rng
        name = rng.choice(self.names)
        base = f"{ENVS}/{name}"
        present = (self.repo.root / base / "environment.yml").exists()
        action = rng.choice(
            [
                "rewrite",
                "rewrite",
                "conda",
                "shared",
                "context-add",
                "context-edit",
                "context-remove",
                "dockerfile",
                "invalid",
                "remove",
                "add",
                "duplicate",
                "untracked-yaml",
                "ignore",
                "chmod",
                "symlink",
                "commit",
                "stage",
                "root-file",
                "remove-dir",
                "rename-env",
                "rename-conda",
                "rename-context",
                "rename-dir",
            ]
        )
        if action == "add" or not present:
            self.add(name)
        elif action == "rewrite":
            self.write(f"{base}/environment.yml", environment(name, rng))
        elif action == "conda":
            self.write(f"{base}/conda.yml", CONDA.replace("numpy", rng.choice(["numpy", "pandas"])))
        elif action == "shared":
            self.write("shared/conda.yml", CONDA + f"  - pip{rng.randint(0, 9)}\n")
        elif action == "context-add":
            self.write(f"{base}/ctx/sub/data{rng.randint(0, 3)}.txt", str(rng.random()))
        elif action == "context-edit":
            self.write(f"{base}/ctx/app.py", f"print({rng.randint(0, 99)})\n")
        elif action == "context-remove":
            self.remove(f"{base}/ctx/app.py")
        elif action == "dockerfile":
            if rng.random() < 0.3:
                self.remove(f"{base}/ctx/Dockerfile")
            else:
                self.write(f"{base}/ctx/Dockerfile", f"FROM busybox:1.{rng.randint(30, 36)}\n")
        elif action == "invalid":
            self.write(f"{base}/environment.yml", "name: [unclosed\n")
        elif action == "remove":
            self.remove(f"{base}/environment.yml")
        elif action == "duplicate":
            self.write(f"{base}/copy.yml", f"name: {rng.choice(self.names)}\nimage: x:1\n")
        elif action == "untracked-yaml":
            self.write(f"{ENVS}/loose{rng.randint(0, 2)}.yaml", "channels: [x]\ndependencies: []\n")
        elif action == "ignore":
            self.write(".gitignore", rng.choice(["*.yaml\n", "copy.yml\n", ""]))
        elif action == "chmod":
            path = self.repo.root / base / "ctx" / "Dockerfile"
            if path.exists():
                path.chmod(0o755 if rng.random() < 0.5 else 0o644)
                self.events.add(f"{base}/ctx/Dockerfile")
        elif action == "symlink":
            link = self.repo.root / base / "linked.yml"
            if link.is_symlink():
                self.remove(f"{base}/linked.yml")
            else:
                link.symlink_to("environment.yml")
                self.events.add(f"{base}/linked.yml")
                self.clock.touch(self.repo.root, [base])
        elif action == "rename-env":  # away and back, or to a second name
            if rng.random() < 0.5:
                self.rename(f"{base}/environment.yml", f"{base}/renamed.yml")
            else:
                self.rename(f"{base}/renamed.yml", f"{base}/environment.yml")
        elif action == "rename-conda":  # the environment's conda file goes missing, or back
            if rng.random() < 0.5:
                self.rename(f"{base}/conda.yml", f"{base}/conda-old.yml")
            else:
                self.rename(f"{base}/conda-old.yml", f"{base}/conda.yml")
        elif action == "rename-context":
            self.rename(f"{base}/ctx/app.py", f"{base}/ctx/sub/app{rng.randint(0, 1)}.py")
        elif action == "rename-dir":
            self.rename(f"{base}/ctx", f"{base}/ctx-{rng.randint(0, 1)}")
        elif action == "root-file":
            self.write(f"notes{rng.randint(0, 2)}*.txt", str(rng.random()))
        elif action == "remove-dir":
            gone = self.repo.root / base / rng.choice(["ctx", "."])
            if gone.exists():
                top = os.path.normpath(os.path.relpath(gone, self.repo.root))
                self.events.add(top)
                self.events.update(
                    os.path.relpath(p, self.repo.root) for p in gone.rglob("*") if p.is_file()
                )
                shutil.rmtree(gone)
            self.clock.touch(self.repo.root, [ENVS])
        elif action == "commit":
            self.repo.commit(f"step {rng.random()}")
        elif action == "stage":
            self.repo.git("add", "-A", ENVS)
        return f"{action} {name}"


def engines(repo: GitRepo, racy: float) -> tuple[Engine, Engine]:
    """The long-running engine (everything kept in memory) and a fresh one."""
    selection = Selection(ENVS)
    options = PlanOptions(owner="o")
    db = repo.root / ".reconciler" / "registry.db"
    db.parent.mkdir(exist_ok=True)
    (db.parent / ".gitignore").write_text("*\n")  # as the command line makes it
    kept = keep_in_memory(
        Engine(GitSource(repo.root), SqliteRegistry(db), selection, options, NoCache())
    )
    assert isinstance(kept.source, GitSource)
    kept.source._kept = TreeIndex(repo.root, racy_seconds=racy)
    fresh = Engine(GitSource(repo.root), SqliteRegistry(db), selection, options, NoCache())
    return kept, fresh


def listing(engine: Engine) -> list[tuple[str, str, str]]:
    snapshot = engine.source.snapshot(None)
    return [(e.path, e.blob_id, e.mode) for e in snapshot.files_under("")]


def compare(kept: Engine, fresh: Engine, what: str, events: frozenset[str] | None = None) -> None:
    """``events``: the kept engine is told the changed paths (None: it checks by stat)."""
    kept.source.hint(events)
    assert listing(kept) == listing(fresh), what
    kept.source.hint(None if events is None else frozenset())  # nothing changed since
    ours, _ = read(kept, None)
    theirs, _ = read(fresh, None)
    assert ours.environments == theirs.environments, what
    assert ours.diagnostics == theirs.diagnostics, what
    assert (ours.references, ours.candidates) == (theirs.references, theirs.candidates), what
    state = kept.registry.read_state()
    assert make(kept, ours, state, None) == make(fresh, theirs, state, None), what


@pytest.mark.parametrize("hinted", [False, True], ids=["stat", "events"])
@pytest.mark.parametrize("seed", range(6))
def test_kept_state_equals_a_fresh_read_after_random_edits(
    repo: GitRepo, seed: int, hinted: bool
) -> None:
    rng = random.Random(seed)
    tree = Tree(repo, rng)
    tree.setup()
    kept, fresh = engines(repo, racy=0.0)
    compare(kept, fresh, "start")
    tree.take_events()
    done = []
    assert isinstance(kept.source, GitSource) and isinstance(kept.source._kept, TreeIndex)
    for number in range(40):
        done.append(tree.step())
        if rng.random() < 0.3:
            done.append(tree.step())  # two edits before one look
        events = tree.take_events() if hinted else None
        compare(kept, fresh, f"step {number}: {done}", events)
        if rng.random() < 0.3:
            kept.source.hint(None if events is None else frozenset())
            with contextlib.suppress(ApplyRefused):  # a plan with errors: nothing applied
                kept.apply()  # the registry moves too (patched in memory)
            after: frozenset[str] | None = None if events is None else frozenset()
            compare(kept, fresh, f"after apply at step {number}: {done}", after)
    assert kept.source._kept.full_loads < 30  # the kept listing was used, not only git's
    memos = kept.cache.kept_memos()
    assert memos is not None
    # Many loads patched the last one (edits that leave the candidates and names as they
    # were), and every one of them was compared with a fresh read above.
    assert memos[0].patches > 15, memos[0].patches
    assert memos[1].patches > 15, memos[1].patches  # plans likewise
    if hinted:  # most looks read only the named files, without a stat check of the tree
        assert kept.source._kept.hinted_loads > 40, kept.source._kept.hinted_loads


def test_quick_edits_are_seen_with_the_real_clock(repo: GitRepo) -> None:
    """Without backdated stat data: files changed a moment ago are always read again."""
    repo.write(f"{ENVS}/a/environment.yml", "name: a\nimage: busybox:1.36\n")
    repo.commit()
    kept, fresh = engines(repo, racy=2.0)
    for number in range(10):
        # same size every time, often within one timestamp tick
        repo.write(f"{ENVS}/a/environment.yml", f"name: a\nimage: busybox:1.3{number}\n")
        compare(kept, fresh, f"edit {number}")


def test_an_unchanged_tree_is_not_listed_by_git_again(repo: GitRepo) -> None:
    repo.write(f"{ENVS}/a/environment.yml", "name: a\nimage: busybox:1.36\n")
    repo.commit()
    repo.age()  # sets every ctime to now: trusted only without the racy margin
    index = TreeIndex(repo.root, racy_seconds=0)
    first = index.snapshot()
    repo.write(f"{ENVS}/b/environment.yml", "name: b\nimage: busybox:1.36\n")  # untracked
    second = index.snapshot()
    assert index.full_loads == 1
    assert [e.path for e in second.files_under(ENVS)] == [
        f"{ENVS}/a/environment.yml",
        f"{ENVS}/b/environment.yml",
    ]
    assert [e.path for e in first.files_under(ENVS)] == [f"{ENVS}/a/environment.yml"]
    head = repo.commit()
    assert index.snapshot().commit == head and index.full_loads == 2
    expected = WorkTreeSnapshot(repo.root, head).files_under("")
    assert index.snapshot().files_under("") == expected
