"""`reconciler watch` as a real process on a real git repository and SQLite registry."""

from __future__ import annotations

import signal
import threading
import time

from reconciler.adapters.locking import file_lock
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.cli.app import build_parser
from reconciler.cli.commands import watch_target
from reconciler.core.spec.model import RegisteredVersion
from reconciler.watch.control import Stopper
from reconciler.watch.files import FileWatch, WatchTarget
from tests.conftest import CONDA, GitRepo, image_env
from tests.processes import Running, wait_for


def seed(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a", description="first"))
    repo.commit("seed")


def watch(repo: GitRepo, started: list[Running], *extra: str) -> Running:
    process = Running("watch", "--repo", str(repo.root), *extra, cwd=repo.root)
    started.append(process)
    process.wait_line("reconcile 1 (start)")
    return process


def version(repo: GitRepo, name: str, number: str = "1") -> RegisteredVersion | None:
    registry = SqliteRegistry(repo.registry_db)
    try:
        return registry.get_version(name, number)
    finally:
        registry.close()


def token(repo: GitRepo) -> str | None:
    registry = SqliteRegistry(repo.registry_db)
    try:
        return registry.state_token()
    finally:
        registry.close()


def lock_is_free(repo: GitRepo) -> bool:
    with file_lock(repo.registry_db.with_name("registry.db.lock"), 0, "registry"):
        return True


def assert_clean_exit(process: Running, code: int) -> None:
    assert code == 0, process.output()
    assert process.lines[-1] == "stopped", process.output()
    assert not any("Traceback" in line for line in process.errors), process.output()


def test_watch_applies_an_edit_and_stops_on_sigint(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    process = watch(repo, started, "--debounce", "50")
    assert "applied 1 (a:1 create)" in process.reconciles()[0]
    assert (found := version(repo, "a")) is not None and found.description == "first"

    written = time.monotonic()
    repo.write("environments/a.yml", image_env("a", description="second"))
    wait_for(
        lambda: (v := version(repo, "a")) is not None and v.description == "second",
        what="the edit in the registry",
    )
    assert time.monotonic() - written < 5
    line = process.wait_line("reconcile 2 (1 file event): applied 1 (a:1 update_metadata)")
    assert line.endswith(" ms")

    repo.write("environments/b.yml", image_env("b", image="busybox:1.37"))
    process.wait_line("reconcile 3", "applied 1 (b:1 create)")
    assert_clean_exit(process, process.stop(signal.SIGINT))
    assert len(process.reconciles()) == 3
    assert lock_is_free(repo)


def test_watch_stops_on_sigterm(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    process = watch(repo, started)
    assert_clean_exit(process, process.stop(signal.SIGTERM))
    assert lock_is_free(repo)


def test_sigterm_during_a_burst_still_exits_cleanly(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    process = watch(repo, started, "--debounce", "20")
    for i in range(5):
        repo.write(f"environments/e{i}.yml", image_env(f"e{i}"))
        time.sleep(0.03)
    assert_clean_exit(process, process.stop(signal.SIGTERM))
    assert lock_is_free(repo)
    registry = SqliteRegistry(repo.registry_db)
    try:  # whatever was applied before the stop was applied whole: each create is complete
        for container in registry.read_state().containers.values():
            assert [v.version for v in container.versions] == ["1"]
    finally:
        registry.close()


def test_a_burst_of_edits_is_one_reconcile(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    process = watch(repo, started, "--debounce", "400")
    for i in range(12):  # 12 writes to 6 files, 20 ms apart: well inside the debounce
        repo.write(f"environments/burst{i % 6}.yml", image_env(f"burst{i % 6}", description=str(i)))
        time.sleep(0.02)
    wait_for(
        lambda: all(
            (v := version(repo, f"burst{k}")) is not None and v.description == str(k + 6)
            for k in range(6)
        ),
        what="the last write of every file in the registry",
    )
    line = process.wait_line("reconcile 2", "applied 6")
    assert "file events" in line
    time.sleep(0.6)  # more than the debounce: a late second reconcile would show by now
    assert len(process.reconciles()) == 2, process.output()
    assert_clean_exit(process, process.stop())


def test_an_invalid_file_is_reported_and_the_registry_left_as_is(
    repo: GitRepo, started: list[Running]
) -> None:
    seed(repo)
    process = watch(repo, started, "--debounce", "50")
    before = token(repo)
    repo.write("environments/a.yml", "name: a\nimage: busybox:1.36\ndescription: [unclosed\n")
    line = process.wait_line("reconcile 2", "invalid: 1 error(s), registry left as is")
    assert "environments/a.yml:4 invalid YAML" in line
    assert token(repo) == before

    repo.write("environments/a.yml", image_env("a", description="fixed"))
    process.wait_line("reconcile 3", "applied 1 (a:1 update_metadata)")
    assert (found := version(repo, "a")) is not None and found.description == "fixed"
    assert_clean_exit(process, process.stop())


def test_a_locked_registry_is_retried_with_backoff(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    process = watch(repo, started, "--debounce", "50", "--lock-timeout", "0.2")
    lock = repo.registry_db.with_name("registry.db.lock")
    with file_lock(lock, 5, "registry"):  # another reconciler holds the registry
        repo.write("environments/a.yml", image_env("a", description="while locked"))
        line = process.wait_line("reconcile 2", "error:", "locked by another reconciler")
        assert "retry in" in line
        process.wait_line("reconcile 3 (retry)", "error:", timeout=5)
    line = process.wait_line("(retry): applied 1 (a:1 update_metadata)", timeout=10)
    assert (found := version(repo, "a")) is not None and found.description == "while locked"
    assert_clean_exit(process, process.stop())


def test_events_in_the_state_and_report_directories_do_not_trigger(
    repo: GitRepo, started: list[Running]
) -> None:
    seed(repo)
    repo.write("reconciler.toml", '[reconciler]\npath = "."\nreport_dir = "reports"\n')
    repo.write("environments/a.yml", image_env("a"))
    process = watch(repo, started, "--debounce", "50")
    repo.write("reports/drift-report.json", "{}\n")
    repo.write(".reconciler/notes.txt", "x\n")
    (repo.root / ".git" / "touched").write_text("x\n")
    repo.write("environments/c.yml", image_env("c"))
    line = process.wait_line("reconcile 2", "applied 1 (c:1 create)")
    assert "(1 file event)" in line, process.output()
    assert_clean_exit(process, process.stop())


def test_a_settings_change_reloads_them(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    repo.write("reconciler.toml", '[reconciler]\npath = "environments"\n')
    repo.write("other/z.yml", image_env("z"))
    process = watch(repo, started, "--debounce", "50")
    assert version(repo, "z") is None
    repo.write("reconciler.toml", '[reconciler]\npath = "other"\nno_such_setting = 1\n')
    wait_for(
        lambda: any("settings not reloaded" in line for line in process.lines),
        what="the broken settings reported",
    )
    repo.write("reconciler.toml", '[reconciler]\npath = "other"\n')
    process.wait_line("(settings changed)", "z:1 create")
    assert_clean_exit(process, process.stop())


def test_a_change_the_events_missed_is_found_by_the_periodic_full_check(
    repo: GitRepo, started: list[Running]
) -> None:
    """Events only hint at what to read again: a change no event names (here a conda file
    outside the watched directory) is applied by the next full check, and full checks
    that find nothing print nothing."""
    repo.write("reconciler.toml", "[reconciler]\nwatch_full_check = 1\n")
    repo.write("shared/conda.yml", CONDA)
    repo.write("environments/a.yml", image_env("a", conda_file="../shared/conda.yml"))
    repo.commit("seed")
    process = watch(repo, started, "--debounce", "50")
    assert "applied 1 (a:1 create)" in process.reconciles()[0]
    time.sleep(2.5)  # two full checks or more, in sync: quiet
    assert len(process.reconciles()) == 1, process.output()

    repo.write("shared/conda.yml", CONDA.replace("numpy==1.26.4", "numpy==2.0.0"))
    process.wait_line("reconcile 2 (full check): applied 1 (a:2 new_version)", timeout=10)
    assert version(repo, "a", "2") is not None

    repo.write(
        "environments/a.yml", image_env("a", conda_file="../shared/conda.yml", description="x")
    )
    process.wait_line("reconcile 3 (1 file event)", "update_metadata")  # events still hint
    assert_clean_exit(process, process.stop(signal.SIGINT))


def test_a_settings_edit_made_while_they_are_reloaded_is_not_missed(repo: GitRepo) -> None:
    """No watcher runs while the settings are read again: an edit made then has no event.
    The next watcher compares the file with what was read, once it is up. Here the fixed
    settings are written during the failed reload itself, which no event can report."""
    seed(repo)
    repo.write("reconciler.toml", '[reconciler]\npath = "environments"\n')
    repo.write("other/z.yml", image_env("z"))
    args = build_parser().parse_args(["watch", "--repo", str(repo.root), "--debounce", "50"])
    reloads: list[str] = []

    def setup() -> WatchTarget:
        try:
            return watch_target(args)
        finally:
            reloads.append("read")
            if len(reloads) == 2:  # the broken settings have just been read
                repo.write("reconciler.toml", '[reconciler]\npath = "other"\n')

    lines: list[str] = []
    stopper = Stopper()
    loop = threading.Thread(target=FileWatch(setup, stopper, lines.append, 50).run)
    loop.start()
    try:
        wait_for(lambda: any("reconcile 1 (start)" in line for line in lines), what="start")
        repo.write("reconciler.toml", '[reconciler]\npath = "other"\nno_such_setting = 1\n')
        wait_for(
            lambda: any("(settings changed)" in line and "z:1 create" in line for line in lines),
            what="the settings edited during the reload applied",
        )
    finally:
        stopper.stop()
        loop.join(10)
    assert not loop.is_alive()
    assert any("settings not reloaded" in line for line in lines), lines
    assert (found := version(repo, "z")) is not None and found.version == "1"
