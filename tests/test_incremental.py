"""What a long-running reconciler keeps between triggers (the working tree's listing,
resolved environments, per-environment plans) gives exactly what a fresh read gives,
after any sequence of edits."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from reconciler.adapters.gitsource import GitSource, WorkTreeSnapshot
from reconciler.adapters.sqlite_registry import SqliteRegistry
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

    def write(self, path: str, text: str) -> None:
        self.repo.write(path, text)
        self.clock.touch(self.repo.root, [path])

    def remove(self, path: str) -> None:
        full = self.repo.root / path
        if full.is_symlink() or full.is_file():
            full.unlink()
        self.clock.touch(self.repo.root, [os.path.dirname(path)])

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
        elif action == "symlink":
            link = self.repo.root / base / "linked.yml"
            if link.is_symlink():
                self.remove(f"{base}/linked.yml")
            else:
                link.symlink_to("environment.yml")
                self.clock.touch(self.repo.root, [base])
        elif action == "root-file":
            self.write(f"notes{rng.randint(0, 2)}*.txt", str(rng.random()))
        elif action == "remove-dir":
            shutil.rmtree(self.repo.root / base / rng.choice(["ctx", "."]))
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


def compare(kept: Engine, fresh: Engine, what: str) -> None:
    assert listing(kept) == listing(fresh), what
    ours, _ = read(kept, None)
    theirs, _ = read(fresh, None)
    assert ours.environments == theirs.environments, what
    assert ours.diagnostics == theirs.diagnostics, what
    assert (ours.references, ours.candidates) == (theirs.references, theirs.candidates), what
    state = kept.registry.read_state()
    assert make(kept, ours, state, None) == make(fresh, theirs, state, None), what


@pytest.mark.parametrize("seed", range(6))
def test_kept_state_equals_a_fresh_read_after_random_edits(repo: GitRepo, seed: int) -> None:
    rng = random.Random(seed)
    tree = Tree(repo, rng)
    tree.setup()
    kept, fresh = engines(repo, racy=0.0)
    compare(kept, fresh, "start")
    done = []
    assert isinstance(kept.source, GitSource) and isinstance(kept.source._kept, TreeIndex)
    for number in range(40):
        done.append(tree.step())
        if rng.random() < 0.3:
            done.append(tree.step())  # two edits before one look
        compare(kept, fresh, f"step {number}: {done}")
        if rng.random() < 0.3:
            with contextlib.suppress(ApplyRefused):  # a plan with errors: nothing applied
                kept.apply()  # the registry moves too (patched in memory)
            compare(kept, fresh, f"after apply at step {number}: {done}")
    assert kept.source._kept.full_loads < 30  # the kept listing was used, not only git's


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
