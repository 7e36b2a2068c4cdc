"""The drift report: each class made for real (git commits, registry edits through the
SQLite adapter as an operator would make them), every output validated."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import VersionWrite
from reconciler.render.markdown import GITHUB_LIMIT, MARKER
from tests.conftest import Cli, GitRepo, image_env

SECRET = "s3cr3t-t0ken-value"


def schema() -> dict[str, Any]:
    text = resources.files("reconciler").joinpath("schemas/drift-report.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def drift(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `drift`, check the three files it writes, return its exit code and document."""
    code, out, err = cli("drift", *args)
    assert code in (0, 1, 2), err
    report_dir = cli.repo.root / "drift-report"
    document = json.loads((report_dir / "drift-report.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(document)
    markdown = (report_dir / "drift-report.md").read_text()
    assert markdown.startswith(MARKER) and len(markdown) < GITHUB_LIMIT
    assert (report_dir / "drift-report.html").read_text().startswith("<!DOCTYPE html>")
    return code, document


def env_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in document["environments"] if e["name"] == name)
    return found


def items(document: dict[str, Any], name: str, cls: str) -> list[dict[str, Any]]:
    return [i for i in env_of(document, name)["items"] if i["class"] == cls]


def seeded(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/a.yml", image_env("a", "busybox:1.36", description="first"))
    repo.write("environments/b.yml", image_env("b", "busybox:1.37"))
    repo.commit("seed")
    code, _, err = cli("apply")
    assert code == 0, err


def registry(repo: GitRepo) -> SqliteRegistry:
    return SqliteRegistry(repo.registry_db)


def hand_write(repo: GitRepo, name: str, version: str, **change: Any) -> None:
    """What an operator's `az ml environment create/update` does: a plain registry write."""
    reg = registry(repo)
    try:
        current = reg.get_version(name, version)
        if current is not None:
            assert current.content is not None and current.digest is not None
            tags = dict(current.tags)
            tags.update(change.get("tags", {}))
            write = VersionWrite(
                current.content,
                current.digest,
                change.get("description", current.description),
                tags,
            )
        else:
            body = build_content(
                image=change["image"],
                conda=None,
                build=None,
                os_type="linux",
                inference_config=None,
            )
            write = VersionWrite(body, content_digest(body), None, {})
        reg.put_version(name, version, write)
    finally:
        reg.close()


def test_in_sync_repository_exits_0_and_writes_all_formats(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    code, document = drift(cli)
    assert code == 0
    assert document["in_sync"] and not document["drift_found"]
    assert document["summary"]["in_sync"] == 2
    assert document["coverage"] == {"managed": 2, "total": 2, "percent": 100.0}
    assert [e["status"] for e in document["environments"]] == ["in_sync", "in_sync"]


def test_pending_change_in_git_is_drift_with_field_detail(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    repo.write("environments/a.yml", image_env("a", "busybox:1.38", description="first"))
    repo.commit("bump a")
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "a", "pending")
    assert item["action"] == "new_version" and item["version"] == "2"
    assert {
        "path": "image",
        "kind": "changed",
        "before": "busybox:1.36",
        "after": "busybox:1.38",
    } in item["fields"]
    assert env_of(document, "b")["status"] == "in_sync"
    # the working tree is not what drift reads by default: HEAD is
    repo.write("environments/b.yml", image_env("b", "busybox:9"))
    code, document = drift(cli)
    assert env_of(document, "b")["status"] == "in_sync"


def test_hand_edited_tags_are_out_of_band_and_only_self_heal_repairs_them(
    repo: GitRepo, cli: Cli
) -> None:
    seeded(repo, cli)
    hand_write(repo, "a", "1", tags={"team": "by-hand"}, description="edited")
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "a", "out_of_band")
    assert "outside git" in item["reason"]
    paths = {f["path"] for f in item["fields"]}
    assert {"description", "tags.team"} <= paths
    assert cli("apply")[0] == 0
    assert drift(cli)[0] == 2  # plain apply reports, does not repair
    assert cli("apply", "--self-heal")[0] == 0
    code, document = drift(cli)
    assert code == 0, document
    shown = registry(repo).get_version("a", "1")
    assert shown is not None and shown.description == "first" and "team" not in shown.tags


def test_version_made_by_hand_under_a_managed_name(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    hand_write(repo, "b", "2", image="busybox:hand-made")
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "b", "out_of_band")
    assert "version 2 was created in the registry outside git" in item["reason"]
    assert item["action"] == "new_version"
    assert cli("apply", "--self-heal")[0] == 0
    code, document = drift(cli)
    assert code == 0
    assert env_of(document, "b")["latest_version"] == "3"
    kept = registry(repo).get_version("b", "2")
    assert kept is not None  # nothing is deleted, the hand-made version stays


def test_archive_and_restore_by_hand(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    reg = registry(repo)
    reg.set_container_archived("a", True)  # archived by hand while still in git
    reg.close()
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "a", "out_of_band")
    assert item["action"] == "restore" and "archived in the registry outside git" in item["reason"]
    assert cli("apply")[0] == 0
    container = registry(repo).get_container("a")
    assert container is not None and container.archived  # reported, left alone
    assert cli("apply", "--self-heal")[0] == 0
    container = registry(repo).get_container("a")
    assert container is not None and not container.archived

    repo.remove("environments/b.yml")
    repo.commit("drop b")
    assert cli("apply")[0] == 0  # archives b, stamping why
    assert drift(cli)[0] == 0
    reg = registry(repo)
    reg.set_container_archived("b", False)  # restored by hand while out of git
    reg.close()
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "b", "out_of_band")
    assert item["action"] == "archive" and "restored in the registry outside git" in item["reason"]
    assert cli("apply", "--self-heal")[0] == 0
    container = registry(repo).get_container("b")
    assert container is not None and container.archived
    # and re-adding b to git restores it as a change in git, not as drift
    repo.write("environments/b.yml", image_env("b", "busybox:1.37"))
    repo.commit("b is back")
    code, document = drift(cli)
    [item] = items(document, "b", "pending")
    assert item["action"] == "restore"


def _backup(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def test_applied_environment_gone_from_the_registry_is_missing(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    seeded(repo, cli)
    _backup(repo.registry_db, tmp_path / "before-c.db")
    repo.write("environments/c.yml", image_env("c", "busybox:1.38"))
    repo.commit("add c")
    assert cli("apply")[0] == 0
    # the registry is restored from a backup taken before c was applied
    for suffix in ("-wal", "-shm"):
        Path(str(repo.registry_db) + suffix).unlink(missing_ok=True)
    shutil.copy(tmp_path / "before-c.db", repo.registry_db)
    code, document = drift(cli)
    assert code == 2
    [item] = items(document, "c", "missing")
    assert "applied before as version 1" in item["reason"] and item["action"] == "create"
    assert env_of(document, "a")["status"] == "in_sync"
    assert cli("apply")[0] == 0  # apply heals it: the version is created again
    assert drift(cli)[0] == 0


def test_unmanaged_environments_and_coverage(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    hand_write(repo, "manual", "1", image="busybox:manual")
    code, document = drift(cli)
    assert code == 0  # reported, not failed on by default
    assert env_of(document, "manual")["status"] == "unmanaged"
    assert document["coverage"] == {"managed": 2, "total": 3, "percent": 66.7}
    assert cli("drift", "--fail-on", "unmanaged")[0] == 2
    assert cli("drift", "--fail-on", "none")[0] == 0
    code, _, err = cli("drift", "--fail-on", "sideways")
    assert code == 1 and "unknown drift class 'sideways'" in err


def test_findings_with_severity_file_and_line_and_annotations(repo: GitRepo, cli: Cli) -> None:
    repo.write(
        "environments/ml/env.yml",
        "name: ml\nimage: mcr.microsoft.com/azureml/base:latest\nconda_file: conda.yml\n",
    )
    repo.write(
        "environments/ml/conda.yml",
        "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - numpy\n"
        "  - pip:\n    - torch==2.3.1\n    - mlflow\n",
    )
    repo.commit("ml")
    assert cli("apply")[0] == 0
    code, out, err = cli("drift", "--github-annotations")
    assert code == 0, err  # findings alone do not fail the check
    rules = {
        i["rule"]: i
        for i in items(
            json.loads((repo.root / "drift-report" / "drift-report.json").read_text()),
            "ml",
            "finding",
        )
    }
    assert set(rules) == {"image-latest", "conda-loose-pin", "conda-unpinned", "pip-unpinned"}
    assert rules["image-latest"]["line"] == 2 and rules["image-latest"]["severity"] == "warning"
    assert rules["conda-unpinned"]["path"] == "environments/ml/conda.yml"
    assert rules["conda-unpinned"]["line"] == 4
    assert rules["pip-unpinned"]["line"] == 7
    assert rules["conda-loose-pin"]["severity"] == "info"
    assert "::warning file=environments/ml/conda.yml,line=4,title=ml%3A conda-unpinned::" in out
    assert "::warning file=environments/ml/env.yml,line=2," in out
    assert cli("drift", "--fail-on", "finding")[0] == 2


def test_secrets_never_appear_but_their_change_does(repo: GitRepo, cli: Cli) -> None:
    conda = (
        "channels:\n  - https://conda-user:{s}@conda.example.com/channel\n"
        "dependencies:\n  - python=3.11\n  - pip:\n"
        "    - --extra-index-url https://pip-user:{s}@pkgs.example.com/simple\n"
        "    - torch==2.3.1\n"
    )
    repo.write(
        "environments/s/env.yml",
        f"name: s\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  api_token: {SECRET}\n",
    )
    repo.write("environments/s/conda.yml", conda.format(s=SECRET))
    repo.commit("secret")
    assert cli("apply")[0] == 0
    repo.write(
        "environments/s/env.yml",
        "name: s\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  api_token: rotated-1\n",
    )
    repo.write("environments/s/conda.yml", conda.format(s="rotated-2"))
    repo.commit("rotate")
    outputs = []
    for args in (("plan",), ("plan", "--json"), ("plan", "--ref", "HEAD~1", "--json")):
        code, out, err = cli(*args)
        outputs.append(out + err)
    code, document = drift(cli)
    assert code == 2
    report_dir = repo.root / "drift-report"
    outputs += [p.read_text() for p in report_dir.glob("drift-report.*")]
    for text in outputs:
        assert SECRET not in text and "rotated-1" not in text and "rotated-2" not in text
    fields = [f for i in env_of(document, "s")["items"] for f in i["fields"]]
    token = next(f for f in fields if f["path"] == "tags.api_token")
    assert token["masked"] and token["before"] == token["after"] == "***"
    assert any(
        f["masked"] and "https://***@" in json.dumps(f["after"])
        for f in fields
        if f["path"].startswith("conda")
    )
    assert "(a masked credential changed)" in outputs[0]


def test_markdown_stays_under_githubs_limit_with_5000_environments(repo: GitRepo, cli: Cli) -> None:
    for i in range(5000):
        repo.write(
            f"environments/e{i:04d}.yml",
            f"name: env-{i:04d}\nimage: busybox:latest\ndescription: environment {i}\n",
        )
    repo.commit("many")
    code, document = drift(cli)
    assert code == 2
    assert document["summary"]["by_class"]["pending"] == 5000
    markdown = (repo.root / "drift-report" / "drift-report.md").read_text()
    assert len(markdown) < GITHUB_LIMIT
    assert "more environments with drift, 5000 more findings not shown" in markdown
    assert "drift-report.json" in markdown
    assert "env-0000" in markdown  # what fits is shown


@pytest.mark.browser
def test_html_report_in_headless_chromium(repo: GitRepo, cli: Cli) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (scripts/test installs Debian's chromium)")
    seeded(repo, cli)
    repo.write("environments/a.yml", image_env("a", "busybox:1.38", description="first"))
    repo.commit("bump a")
    hand_write(repo, "b", "1", tags={"team": "<script>alert(1)</script>"})
    code, _ = drift(cli)
    page = repo.root / "drift-report" / "drift-report.html"
    raw = page.read_text()
    assert "<script" not in raw.replace("&lt;script", "")  # escaped, never markup
    assert "http://" not in raw and "https://" not in raw  # no external assets
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--user-data-dir=" + str(repo.root.parent / "chromium-profile"),
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'id="verdict">drift found</span>' in dom
    assert 'data-status="drift"' in dom and 'id="env-a"' in dom and 'id="env-b"' in dom
    assert "busybox:1.36" in dom and "busybox:1.38" in dom  # the field diff of a
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "2 environments: 0 in sync, 2 with drift" in dom
