"""Directories the reconciler makes for its own state ignore themselves: after real
commands, `git status` is clean and `git add -A` commits none of it."""

from __future__ import annotations

from tests.conftest import Cli, GitRepo, image_env
from tests.processes import Running, wait_for


def untracked(repo: GitRepo) -> list[str]:
    return repo.git("status", "--porcelain", "--untracked-files=all").splitlines()


def seeded(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("seed")


def test_reconciler_state_never_shows_in_git_status(repo: GitRepo, cli: Cli) -> None:
    seeded(repo)
    assert cli("plan")[0] == 2
    assert cli("apply")[0] == 0
    assert cli("plan")[0] == 0  # the plan cache is written too
    code, out, err = cli("reconcile", "--once", "--report-dir", str(repo.root.parent / "r"))
    assert code == 0, err
    state = repo.root / ".reconciler"
    assert {p.name for p in state.iterdir()} >= {"cache", "inventory", "registry.db"}
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"
    assert untracked(repo) == []
    repo.git("add", "-A")
    assert repo.git("ls-files") == "environments/a.yml"


def test_state_made_before_the_registry_ignores_itself(repo: GitRepo, cli: Cli) -> None:
    """The caches and the inventory are written even when the registry lives elsewhere."""
    seeded(repo)
    code, out, err = cli("apply", "--registry", "sqlite:///state/registry.db")
    assert code == 0, err
    assert (repo.root / ".reconciler" / "inventory").is_dir()
    assert (repo.root / "state" / "registry.db").is_file()
    assert untracked(repo) == []


def test_an_existing_state_directory_without_the_file_gets_it(repo: GitRepo, cli: Cli) -> None:
    seeded(repo)
    (repo.root / ".reconciler" / "cache").mkdir(parents=True)  # as an older version left it
    (repo.root / ".reconciler" / "cache" / "old").write_text("x")
    assert cli("plan")[0] == 2
    assert untracked(repo) == []


def test_a_directory_of_the_user_is_left_alone(repo: GitRepo, cli: Cli) -> None:
    seeded(repo)
    repo.write("data/notes.txt", "mine\n")
    code, out, err = cli("apply", "--registry", "sqlite:///data/registry.db")
    assert code == 0, err
    assert not (repo.root / "data" / ".gitignore").exists()
    assert "?? data/notes.txt" in untracked(repo)


def test_the_emulator_directory_ignores_itself(repo: GitRepo) -> None:
    seeded(repo)
    running = Running("emulator", "--port", "0", cwd=repo.root)
    try:
        wait_for(lambda: any("CA bundle" in line for line in running.lines), 60, "the emulator")
    finally:
        running.kill()
    emulator_dir = repo.root / ".azureml-emulator"
    assert (emulator_dir / "tls").is_dir()
    assert (emulator_dir / ".gitignore").read_text().splitlines()[-1] == "*"
    assert untracked(repo) == []
