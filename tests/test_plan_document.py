"""Plan JSON validates against the schema shipped in the package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env


def schema() -> dict[str, Any]:
    text = resources.files("reconciler").joinpath("schemas/plan.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_every_kind_of_plan_validates(repo: GitRepo, cli: Cli) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    repo.write("environments/a.yml", image_env("a"))
    repo.write("environments/b/env.yml", conda_env("b", tags="team: x"))
    repo.write("environments/b/conda.yml", CONDA)
    repo.write("environments/gone.yml", image_env("gone"))
    repo.commit("one")
    _, first = cli.json("plan")
    validator.validate(first)
    assert {c["action"] for c in first["changes"]} == {"create"}
    cli("apply")
    repo.remove("environments/gone.yml")
    repo.write("environments/b/env.yml", conda_env("b", tags="team: y"))
    repo.write("environments/a.yml", image_env("a", image="busybox:2"))
    repo.write("environments/bad.yml", "name: bad\n")
    repo.commit("two")
    _, second = cli.json("plan")
    validator.validate(second)
    assert {c["action"] for c in second["changes"]} == {"new_version", "update_metadata"}
    assert second["has_errors"] is True


def test_schema_rejects_a_malformed_document() -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = list(validator.iter_errors({"format_version": 2, "kind": "plan"}))
    assert errors
