"""End to end through the CLI: real git repositories, a real SQLite registry file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.model import RegisteredContainer, VersionWrite
from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env

DOCKERFILE = "FROM busybox:1.36\nCOPY requirements.txt /r.txt\n"


def seed(repo: GitRepo) -> None:
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.write("environments/pydata/env.yml", conda_env("pydata", tags="team: ds"))
    repo.write("environments/pydata/conda.yml", CONDA)
    repo.write(
        "environments/inline.yml",
        "name: inline\nversion: '3'\nimage: busybox:1.36\nconda_file:\n"
        "  dependencies: [python=3.10]\n",
    )
    repo.write(
        "environments/serving/env.yml",
        "name: serving\nbuild:\n  path: ctx\n",
    )
    repo.write("environments/serving/ctx/Dockerfile", DOCKERFILE)
    repo.write("environments/serving/ctx/requirements.txt", "flask==3.0.0\n")
    repo.commit("seed")


def registry(repo: GitRepo) -> SqliteRegistry:
    return SqliteRegistry(repo.registry_db)


def container(repo: GitRepo, name: str) -> RegisteredContainer:
    found = registry(repo).get_container(name)
    assert found is not None, name
    return found


def actions(document: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(c["action"], c["name"], c["version"]) for c in document["changes"]]


def test_first_apply_creates_every_environment(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    code, plan = cli.json("plan")
    assert code == 2
    assert sorted(actions(plan)) == [
        ("create", "base", "1"),
        ("create", "inline", "3"),
        ("create", "pydata", "1"),
        ("create", "serving", "1"),
    ]
    code, out, _ = cli("apply")
    assert code == 0, out
    assert "4 change(s) applied" in out
    head = repo.git("rev-parse", "HEAD")
    pydata = container(repo, "pydata").versions[0]
    assert pydata.managed
    assert pydata.source_path == "environments/pydata/env.yml"
    assert pydata.source_commit == head
    assert pydata.tags["team"] == "ds"
    assert (
        pydata.content is not None and pydata.content["conda"]["dependencies"][0] == "python=3.11"
    )
    code, plan = cli.json("plan")
    assert code == 0 and plan["changes"] == []
    assert len(plan["in_sync"]) == 4


def test_second_apply_writes_nothing(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply")[0] == 0
    before = registry(repo).state_token()
    code, out, _ = cli("apply")
    assert code == 0
    assert "Nothing to do" in out
    assert registry(repo).state_token() == before


def test_tags_only_change_updates_in_place(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/pydata/env.yml", conda_env("pydata", tags="team: ml\nowner: ana"))
    repo.commit("retag")
    code, plan = cli.json("plan")
    assert code == 2
    assert actions(plan) == [("update_metadata", "pydata", "1")]
    fields = {f["path"]: f for f in plan["changes"][0]["fields"]}
    assert fields["tags.team"]["before"] == "ds" and fields["tags.team"]["after"] == "ml"
    assert fields["tags.owner"]["kind"] == "added"
    assert cli("apply")[0] == 0
    versions = container(repo, "pydata").versions
    assert [v.version for v in versions] == ["1"]
    assert versions[0].tags["team"] == "ml" and versions[0].tags["owner"] == "ana"


def test_conda_change_makes_a_new_version(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/pydata/conda.yml", CONDA.replace("1.26.4", "2.0.1"))
    repo.commit("bump numpy")
    code, plan = cli.json("plan")
    assert actions(plan) == [("new_version", "pydata", "2")]
    change = plan["changes"][0]
    assert change["previous_version"] == "1"
    assert change["reason"] == "build-relevant content changed"
    assert [f["path"] for f in change["fields"]] == ["conda.dependencies[1].pip[0]"]
    assert cli("apply")[0] == 0
    versions = container(repo, "pydata").versions
    assert [v.version for v in versions] == ["1", "2"]
    assert versions[0].digest != versions[1].digest


def test_build_context_file_change_makes_a_new_version(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/serving/ctx/requirements.txt", "flask==3.0.3\n")
    repo.commit("bump flask")
    code, plan = cli.json("plan")
    assert actions(plan) == [("new_version", "serving", "2")]
    assert plan["changes"][0]["fields"][0]["path"] == "build.files.requirements.txt"


def test_removed_file_is_archived_and_readded_file_restored(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.remove("environments/base.yml")
    repo.commit("drop base")
    code, plan = cli.json("plan")
    assert actions(plan) == [("archive", "base", None)]
    assert cli("apply")[0] == 0
    assert container(repo, "base").archived
    assert len(container(repo, "base").versions) == 1  # archived, never deleted

    code, out, _ = cli("list")
    assert "base" not in out.split()
    code, out, _ = cli("list", "--include-archived")
    assert "base" in out.split()

    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.commit("bring base back")
    code, plan = cli.json("plan")
    assert actions(plan) == [("restore", "base", None)]
    assert cli("apply")[0] == 0
    restored = container(repo, "base")
    assert not restored.archived and [v.version for v in restored.versions] == ["1"]


def test_readded_with_new_content_restores_then_creates(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.remove("environments/base.yml")
    repo.commit("drop")
    cli("apply")
    repo.write("environments/base.yml", image_env("base", image="busybox:1.37"))
    repo.commit("back, newer")
    code, plan = cli.json("plan")
    assert actions(plan) == [("restore", "base", None), ("new_version", "base", "2")]
    assert cli("apply")[0] == 0
    restored = container(repo, "base")
    assert not restored.archived
    # created after the restore, so the new version is not archived with its container
    assert [(v.version, v.archived) for v in restored.versions] == [("1", False), ("2", False)]


def test_reformatted_yaml_is_no_change(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write(
        "environments/pydata/env.yml",
        "# reordered, quoted, commented\nconda_file: 'conda.yml'\ntags: {team: ds}\n"
        'image: "busybox:1.36"\nname: pydata\n',
    )
    repo.write(
        "environments/pydata/conda.yml",
        "dependencies:   # comment\n- python=3.11\n- {pip: [numpy==1.26.4]}\n"
        "channels: [conda-forge]\n",
    )
    repo.commit("reformat")
    code, plan = cli.json("plan")
    assert code == 0, plan["changes"]
    assert plan["changes"] == []


def test_invalid_file_gives_diagnostic_and_nothing_is_applied(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    repo.write("environments/bad.yml", "name: bad\nimage: busybox\nimgae: typo\n")
    repo.commit("typo")
    code, plan = cli.json("plan")
    assert code == 1
    errors = [d for d in plan["diagnostics"] if d["severity"] == "error"]
    assert errors == [
        {
            "severity": "error",
            "rule": "schema",
            "message": "unknown field `imgae`",
            "path": "environments/bad.yml",
            "line": 3,
        }
    ]
    # the other environments still plan
    assert len(plan["changes"]) == 4
    code, out, err = cli("apply")
    assert code == 1
    assert "apply refused" in err
    assert not repo.registry_db.exists() or registry(repo).read_state().containers == {}


def test_invalid_file_withholds_archives(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/base.yml", "name: base\nimage: [unclosed\n")
    repo.commit("broken")
    code, plan = cli.json("plan")
    assert code == 1
    assert "archive" not in [c["action"] for c in plan["changes"]]
    rules = [d["rule"] for d in plan["diagnostics"]]
    assert "yaml-syntax" in rules and "archive-withheld" in rules


def test_version_collision_is_an_error_never_an_overwrite(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write(
        "environments/inline.yml",
        "name: inline\nversion: '3'\nimage: busybox:1.36\nconda_file:\n"
        "  dependencies: [python=3.12]\n",
    )
    repo.commit("same version, new content")
    code, plan = cli.json("plan")
    assert code == 1
    collision = [d for d in plan["diagnostics"] if d["rule"] == "version-collision"]
    assert collision and collision[0]["path"] == "environments/inline.yml"
    assert cli("apply")[0] == 1
    only = container(repo, "inline").versions
    assert len(only) == 1
    content = only[0].content
    assert content is not None and content["conda"]["dependencies"] == ["python=3.10"]


def test_archive_guard_refuses_mass_archive(repo: GitRepo, cli: Cli) -> None:
    for i in range(12):
        repo.write(f"environments/e{i}.yml", image_env(f"e{i}", image=f"busybox:1.{i}"))
    repo.commit("twelve")
    assert cli("apply")[0] == 0
    for i in range(11):
        repo.remove(f"environments/e{i}.yml")
    repo.commit("remove eleven")
    code, plan = cli.json("plan")
    assert code == 1
    assert any(d["rule"] == "archive-guard" for d in plan["diagnostics"])
    assert cli("apply")[0] == 1
    assert not any(c.archived for c in registry(repo).read_state().containers.values())
    code, out, _ = cli("apply", "--allow-mass-archive")
    assert code == 0, out
    archived = [c.name for c in registry(repo).read_state().containers.values() if c.archived]
    assert len(archived) == 11


def test_plan_at_an_older_ref(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    first = repo.git("rev-parse", "HEAD")
    cli("apply")
    repo.write("environments/pydata/conda.yml", CONDA.replace("3.11", "3.12"))
    repo.remove("environments/base.yml")
    repo.commit("later")
    code, plan = cli.json("plan", "--ref", first)
    assert code == 0, plan
    assert plan["source"]["commit"] == first
    code, plan = cli.json("plan", "--ref", "main")
    assert sorted(actions(plan)) == [("archive", "base", None), ("new_version", "pydata", "2")]
    code, out, err = cli("plan", "--ref", "no-such-ref")
    assert code == 1 and "unknown git ref" in err


def test_working_tree_edits_are_planned_before_commit(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/new.yml", image_env("fresh"))  # untracked
    code, plan = cli.json("plan")
    assert actions(plan) == [("create", "fresh", "1")]
    code, plan = cli.json("plan", "--ref", "HEAD")
    assert plan["changes"] == []


def test_content_equal_to_an_older_version_makes_a_new_latest(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/base.yml", image_env("base", image="busybox:1.37"))
    repo.commit("up")
    cli("apply")
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.commit("back to the original")
    code, plan = cli.json("plan")
    assert actions(plan) == [("new_version", "base", "3")]
    assert "older version 1" in plan["changes"][0]["reason"]


def test_duplicate_names_name_both_files(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/a.yml", image_env("same"))
    repo.write("environments/b.yml", image_env("same", image="busybox:2"))
    repo.commit("dup")
    code, out, _ = cli("validate")
    assert code == 1
    assert "environments/a.yml" in out and "environments/b.yml" in out
    assert "duplicate-name" in out


def test_referenced_yaml_is_not_an_environment(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    repo.write("environments/serving/ctx/config.yaml", "not: [an, environment]\n")
    repo.write("environments/stray-conda.yml", CONDA)
    repo.commit("extras")
    code, result = cli.json("validate")
    assert code == 0, result
    assert result["environments"] == ["base", "inline", "pydata", "serving"]
    infos = [d for d in result["diagnostics"] if d["rule"] == "unreferenced-conda-file"]
    assert [d["path"] for d in infos] == ["environments/stray-conda.yml"]


def test_validate_given_files_only(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    repo.write("environments/bad.yml", "name: AzureML-curated\nimage: x\n")
    repo.commit("bad")
    code, out, _ = cli("validate", str(repo.root / "environments/base.yml"))
    assert code == 0
    code, out, _ = cli("validate", str(repo.root / "environments/bad.yml"))
    assert code == 1 and "reserved-name" in out and "environments/bad.yml:1" in out


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("name: x\nimage: a\nconda_file: ../../../outside.yml\n", "path-escape"),
        ("name: x\nimage: a\nconda_file: /etc/passwd\n", "path-absolute"),
        ("name: x\nbuild:\n  path: ../../..\n", "path-escape"),
        ("name: x\nimage: a\nbuild:\n  path: ctx\n", "image-or-build"),
        ("name: x\nconda_file: conda.yml\n", "image-or-build"),
        ("name: x\ndocker:\n  image: a\n", "legacy-docker"),
        ("name: x\nbuild:\n  local_path: ctx\n", "legacy-build-local-path"),
        ("name: x\nimage: a\nconda_file: file:conda.yml\n", "legacy-file-prefix"),
        ("name: has space\nimage: a\n", "name-pattern"),
        ("name: Microsoft-thing\nimage: a\n", "reserved-name"),
        ("name: x\nimage: a\ntags:\n  nested: {a: 1}\n", "tag-value"),
        ("name: x\nimage: a\nbuild: {path: ctx}\n", "image-or-build"),
    ],
)
def test_bad_input_rules(repo: GitRepo, cli: Cli, text: str, rule: str) -> None:
    repo.write("environments/sub/env.yml", text)
    repo.write("environments/sub/ctx/Dockerfile", DOCKERFILE)
    repo.write("outside.yml", CONDA)
    repo.commit("bad")
    code, result = cli.json("validate")
    assert code == 1
    assert rule in [d["rule"] for d in result["diagnostics"]], result["diagnostics"]
    assert all(
        d["path"] == "environments/sub/env.yml"
        for d in result["diagnostics"]
        if d["severity"] == "error"
    )


def test_symlink_out_of_the_repository_is_refused(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/env.yml", "name: x\nbuild:\n  path: ctx\n")
    repo.write("environments/ctx/Dockerfile", DOCKERFILE)
    (repo.root / "environments/ctx/etc").symlink_to("/etc")
    repo.commit("symlink")
    code, result = cli.json("validate")
    assert code == 1
    assert "symlink-escape" in [d["rule"] for d in result["diagnostics"]]


def test_unquoted_version_is_read_as_written(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/env.yml", "name: x\nversion: 1.10\nimage: a\n")
    repo.commit("v")
    code, plan = cli.json("plan")
    assert actions(plan) == [("create", "x", "1.10")]
    assert "yaml-coercion" in [d["rule"] for d in plan["diagnostics"]]


def test_out_of_band_metadata_edit_is_drift_not_a_change(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    reg = registry(repo)
    current = reg.get_version("base", "1")
    assert current is not None
    edited = dict(current.tags, team="hand-edited")
    reg.put_version(
        "base",
        "1",
        VersionWrite(current.content or {}, current.digest or "", current.description, edited),
    )
    code, plan = cli.json("plan")
    assert code == 0 and plan["changes"] == []
    assert [(c["name"], c["action"]) for c in plan["drift"]] == [("base", "update_metadata")]


def test_unmanaged_environments_are_never_archived(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    reg = registry(repo)
    reg.put_version("by-hand", "1", VersionWrite({"image": "x"}, "", "made in the portal", {}))
    code, plan = cli.json("plan")
    assert code == 0 and plan["changes"] == []


def test_interrupted_apply_converges_without_duplicates(repo: GitRepo, cli: Cli) -> None:
    from reconciler.adapters.gitsource import GitSource
    from reconciler.core.desired.selection import Selection
    from reconciler.core.plan.options import PlanOptions
    from reconciler.engine import Engine
    from reconciler.engine.apply import execute

    seed(repo)
    reg = registry(repo)
    source = GitSource(repo.root)
    engine = Engine(source, reg, Selection(), PlanOptions(owner=source.default_owner()))
    plan = engine.plan()
    for change in plan.changes[:2]:  # a run killed after two writes
        execute(engine.registry, change)
    reg.close()
    assert cli("apply")[0] == 0
    state = registry(repo).read_state()
    assert sorted(state.containers) == ["base", "inline", "pydata", "serving"]
    assert all(len(c.versions) == 1 for c in state.containers.values())
    assert cli.json("plan")[1]["changes"] == []


def test_lock_makes_a_second_apply_wait_then_fail(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    holder = registry(repo)
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock(5):
            ready.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(5)
    try:
        code, out, err = cli("apply", "--lock-timeout", "0.3")
    finally:
        release.set()
        thread.join()
    assert code == 1
    assert "locked by another reconciler" in err
    assert cli("apply")[0] == 0


def test_registry_refuses_deletes_and_content_changes(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    conn = sqlite3.connect(repo.registry_db)
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        conn.execute("DELETE FROM versions")
    with pytest.raises(sqlite3.IntegrityError, match="only description, tags"):
        conn.execute("UPDATE versions SET content = '{}'")
    conn.close()


def test_version_created_under_archived_container_is_archived(repo: GitRepo) -> None:
    reg = SqliteRegistry(repo.root / "r.db")
    write = VersionWrite({"image": "a"}, "", None, {})
    reg.put_version("e", "1", write)
    reg.set_container_archived("e", True)
    created = reg.put_version("e", "2", VersionWrite({"image": "b"}, "", None, {}))
    assert created.archived
    from reconciler.ports import RegistryError, VersionConflict

    with pytest.raises(RegistryError, match="restore the environment first"):
        reg.set_version_archived("e", "2", False)
    with pytest.raises(VersionConflict):
        reg.put_version("e", "1", VersionWrite({"image": "changed"}, "", None, {}))


def test_show_and_history(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/pydata/conda.yml", CONDA.replace("3.11", "3.12"))
    head = repo.commit("bump")
    cli("apply")
    code, shown = cli.json("show", "pydata:2")
    assert code == 0 and shown["provenance"] == {
        "commit": head,
        "path": "environments/pydata/env.yml",
    }
    code, history = cli.json("history", "pydata")
    assert [v["version"] for v in history["versions"]] == ["1", "2"]
    assert [e["action"] for e in history["events"]] == ["create", "create"]
    code, out, err = cli("show", "nope")
    assert code == 1 and "no environment 'nope'" in err


def test_settings_file_env_and_flags_precedence(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write("envs-a/a.yml", image_env("from-a"))
    repo.write("envs-b/b.yml", image_env("from-b"))
    repo.write("envs-c/c.yml", image_env("from-c"))
    repo.write("reconciler.toml", '[reconciler]\npath = "envs-a"\n')
    repo.commit("three dirs")
    assert [c["name"] for c in cli.json("plan")[1]["changes"]] == ["from-a"]
    monkeypatch.setenv("RECONCILER_PATH", "envs-b")
    assert [c["name"] for c in cli.json("plan")[1]["changes"]] == ["from-b"]
    assert [c["name"] for c in cli.json("plan", "--path", "envs-c")[1]["changes"]] == ["from-c"]
    repo.write("reconciler.toml", '[reconciler]\npaht = "typo"\n')
    code, out, err = cli("plan")
    assert code == 1 and "unknown setting `paht`" in err


def test_usage_errors_exit_1_not_2(repo: GitRepo) -> None:
    """Exit 2 means "changes pending" to CI; a mistyped flag must not look like it."""
    from reconciler.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["plan", "--repo", str(repo.root), "--no-such-flag"])
    assert raised.value.code == 1


def test_environment_inside_another_build_context_is_kept(repo: GitRepo, cli: Cli) -> None:
    """`build: {path: .}` next to other environment files must not make them vanish (and
    be archived): they stay environments, and are also context files of the other one."""
    repo.write("environments/a.yml", image_env("env-a"))
    repo.write("environments/b.yml", image_env("env-b"))
    repo.commit("two")
    assert cli("apply")[0] == 0
    repo.write("environments/Dockerfile", DOCKERFILE)
    repo.write("environments/c.yml", "name: env-c\nbuild: {path: .}\n")
    repo.commit("context at the top")
    code, plan = cli.json("plan")
    assert actions(plan) == [("create", "env-c", "1")], plan["changes"]
    assert "environment-in-build-context" in [d["rule"] for d in plan["diagnostics"]]


def test_broken_environment_inside_a_build_context_still_reports(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/Dockerfile", DOCKERFILE)
    repo.write("environments/c.yml", "name: env-c\nbuild: {path: .}\n")
    repo.write("environments/broken.yml", "name: oops\nimage: a\nimgae: b\n")
    repo.write("environments/config.yaml", "just: [some, data]\n")  # context data
    repo.commit("mixed")
    code, result = cli.json("validate")
    assert code == 1
    errors = [(d["path"], d["rule"]) for d in result["diagnostics"] if d["severity"] == "error"]
    assert errors == [("environments/broken.yml", "schema")]


def test_conda_file_content_does_not_depend_on_the_selection(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/conda.yml", "name: 2024.10\ndependencies: [python=3.11]\n")
    repo.write("environments/team/e.yml", conda_env("e1", conda_path="../conda.yml"))
    repo.commit("shared conda")
    assert cli("apply")[0] == 0
    assert cli.json("plan", "--path", "environments/team")[1]["changes"] == []


def test_unicode_digit_versions_do_not_break_numbering(repo: GitRepo, cli: Cli) -> None:
    reg = registry(repo)
    reg.put_version("e", "²", VersionWrite({"image": "a"}, "", None, {}))
    reg.close()
    repo.write("environments/e.yml", image_env("e", image="b"))
    repo.commit("e")
    code, plan = cli.json("plan")
    assert actions(plan) == [("new_version", "e", "1")]


def test_conda_file_with_mixed_key_types_is_a_diagnostic_or_loads(repo: GitRepo, cli: Cli) -> None:
    repo.write("shared/conda.yml", "1: x\nchannels: [c]\ndependencies: [{1: a, b: c}]\n")
    repo.write("environments/e.yml", conda_env("e", conda_path="../shared/conda.yml"))
    repo.commit("odd keys")
    code, result = cli.json("validate")
    assert code == 0, result


def test_another_repository_never_archives_or_takes_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two repositories on one registry: each only archives what it stamped as its own."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first, second = GitRepo(tmp_path / "first"), GitRepo(tmp_path / "second")
    first.git("remote", "add", "origin", "https://token:secret@Example.com/team-a/envs.git")
    first.write("environments/x.yml", image_env("team-a-env"))
    first.commit("a")
    second.write("environments/y.yml", image_env("team-b-env"))
    second.commit("b")
    assert Cli(first, capsys)("apply", "--registry", shared)[0] == 0
    code, plan = Cli(second, capsys).json("plan", "--registry", shared)
    assert actions(plan) == [("create", "team-b-env", "1")]
    version = SqliteRegistry(tmp_path / "shared.db").get_version("team-a-env", "1")
    assert version is not None and version.tags["reconciler.owner"] == "example.com/team-a/envs"
    second.write("environments/x.yml", image_env("team-a-env", image="other"))
    second.commit("steal")
    code, plan = Cli(second, capsys).json("plan", "--registry", shared)
    assert code == 1
    assert "owned-elsewhere" in [d["rule"] for d in plan["diagnostics"]]


def test_symlinked_ignored_directory_is_not_followed(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    """A tracked path whose directory became a symlink out of the repository is not read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "conda.yml").write_text("dependencies: [SECRET-FROM-OUTSIDE]\n")
    repo.write("environments/deps/conda.yml", CONDA)
    repo.write("environments/e.yml", conda_env("e1", conda_path="deps/conda.yml"))
    repo.commit("deps")
    import shutil

    shutil.rmtree(repo.root / "environments/deps")
    (repo.root / "environments/deps").symlink_to(outside)
    exclude = repo.root / ".git/info/exclude"
    exclude.write_text(exclude.read_text() + "environments/deps\n")
    code, out, err = cli("apply")
    assert code == 1
    assert not repo.registry_db.exists() or "SECRET" not in repo.registry_db.read_bytes().decode(
        "utf-8", "replace"
    )


def test_eol_conversion_gives_the_same_digest_before_and_after_commit(
    repo: GitRepo, cli: Cli
) -> None:
    repo.write(".gitattributes", "* text eol=crlf\n")
    repo.write("environments/e.yml", "name: e1\nbuild:\n  path: ctx\n")
    repo.write("environments/ctx/Dockerfile", DOCKERFILE)
    repo.write("environments/ctx/req.txt", "a==1\n")
    repo.commit("crlf")
    assert cli("apply")[0] == 0
    repo.write("environments/ctx/req.txt", "a==2\n")
    assert cli("apply")[0] == 0
    repo.commit("b")
    code, plan = cli.json("plan")
    assert code == 0, plan["changes"]


def test_dockerfile_over_one_megabyte_is_refused(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/e.yml", "name: big\nbuild:\n  path: ctx\n")
    repo.write("environments/ctx/Dockerfile", "FROM x\n" + "# padding\n" * 110_000)
    repo.commit("big")
    code, result = cli.json("validate")
    assert code == 1
    assert [d["rule"] for d in result["diagnostics"]] == ["dockerfile-too-large"]
