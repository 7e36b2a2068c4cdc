"""Audit evidence (`evidence --out DIR`, schema-validated) and `history NAME` provenance:
the commit and file each version came from, on real git history and SQLite."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.build.jobs import BuildRecord, BuildStatus
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import VersionWrite
from tests.conftest import Cli, GitRepo, image_env

IMAGE_DIGEST = "sha256:" + "ab" * 32
POLICY = """[policy]
keep_versions = 2

[[policy.exceptions]]
environment = "ml*"
rule = "pinning"
approved_by = "grace@example.invalid"
reason = "research images"
expires = 2999-12-31

[[policy.exceptions]]
environment = "ml"
rule = "required-tags"
approved_by = "alan@example.invalid"
reason = "owner left"
expires = 2001-01-01
"""


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        resources.files("reconciler").joinpath("schemas/evidence.schema.json").read_text()
    )
    return loaded


def tagged(image: str, description: str = "ml") -> str:
    return image_env("ml", image, description=description) + "tags:\n  owner: ada\n  team: vision\n"


def history_of(repo: GitRepo, cli: Cli) -> list[str]:
    repo.write("reconciler.toml", POLICY)
    commits = []
    for image in ("busybox:1.30", "busybox:1.31", "busybox:1.32"):
        repo.write("environments/ml.yml", tagged(image))
        commits.append(repo.commit(image))
        assert cli("apply")[0] == 0
    repo.write("environments/ml.yml", tagged("busybox:1.32", "ml, described"))
    commits.append(repo.commit("describe"))  # metadata only: version 3 is re-stamped
    assert cli("apply")[0] == 0
    return commits


def test_history_shows_the_commit_and_file_each_version_came_from(repo: GitRepo, cli: Cli) -> None:
    commits = history_of(repo, cli)
    code, document = cli.json("history", "ml")
    assert code == 0
    provenance = {v["version"]: v["provenance"] for v in document["versions"]}
    assert provenance["1"] == {
        "commit": commits[0],
        "path": "environments/ml.yml",
        "last_commit": commits[0],
    }
    # version 3 came from the third commit; the description change re-stamped it later
    assert provenance["3"]["commit"] == commits[2]
    assert provenance["3"]["last_commit"] == commits[3]
    code, out, err = cli("history", "ml")
    row = next(line for line in out.splitlines() if line.startswith("3 "))
    assert commits[2][:12] in row and "environments/ml.yml" in row and commits[3][:12] in row


def test_evidence_inventory_is_schema_valid_json_and_markdown(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    commits = history_of(repo, cli)
    registry = SqliteRegistry(repo.registry_db)
    try:
        three = registry.get_version("ml", "3")
        assert three is not None and three.digest is not None
        registry.set_build_record(
            BuildRecord(
                "ml",
                "3",
                three.digest,
                BuildStatus.SUCCEEDED,
                f"127.0.0.1:5000/environments@{IMAGE_DIGEST}",
                ended_at="2030-01-01T00:00:00+00:00",
            )
        )
        body = build_content(
            image="busybox:9", conda=None, build=None, os_type="linux", inference_config=None
        )
        registry.put_version("handmade", "1", VersionWrite(body, content_digest(body), None, {}))
    finally:
        registry.close()
    out_dir = tmp_path / "evidence"
    code, out, err = cli("evidence", "--out", str(out_dir))
    assert code == 0, err
    document = json.loads((out_dir / "evidence.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(document)
    ml = next(e for e in document["environments"] if e["name"] == "ml")
    assert (ml["owner"], ml["team"], ml["managed"]) == ("ada", "vision", True)
    versions = {v["version"]: v for v in ml["versions"]}
    assert versions["1"]["archived"] and versions["1"]["archived_by_reconciler"]  # retention
    assert not versions["3"]["archived"]
    assert versions["3"]["build"] == {
        "status": "succeeded",
        "image": f"127.0.0.1:5000/environments@{IMAGE_DIGEST}",
        "image_digest": IMAGE_DIGEST,
        "ended_at": "2030-01-01T00:00:00+00:00",
    }
    assert versions["2"]["provenance"]["commit"] == commits[1]
    assert versions["3"]["created_at"] and versions["3"]["digest"].startswith("sha256:")
    exceptions = {(x["rule"], x["in_force"]) for x in ml["policy_exceptions"]}
    assert exceptions == {("pinning", True), ("required-tags", False)}
    handmade = next(e for e in document["environments"] if e["name"] == "handmade")
    assert not handmade["managed"] and handmade["owner"] is None
    assert handmade["versions"][0]["provenance"] == {
        "commit": None,
        "path": None,
        "last_commit": None,
    }
    assert document["summary"]["versions"] == 4
    assert document["summary"]["exceptions_expired"] == 1
    markdown = (out_dir / "evidence.md").read_text()
    assert "## ml" in markdown and "## handmade" in markdown
    assert f"<code>{IMAGE_DIGEST}</code>" in markdown
    assert "archived (by reconciler)" in markdown
    assert "approved by alan@example.invalid: owner left" in markdown and "**expired**" in markdown
