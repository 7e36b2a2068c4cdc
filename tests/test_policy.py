"""Governance policies from reconciler.toml: violations as diagnostics with file and line
in validate, plan (also a pull request comment) and the drift report; approved exceptions
in force and expired; overrides per environment; malformed tables named clearly."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from typing import Any

import jsonschema
import pytest

from reconciler.core.desired.types import DesiredEnvironment
from reconciler.core.governance.policy import PolicyError, evaluate, parse_policy
from reconciler.render.markdown import PLAN_MARKER
from tests.conftest import Cli, GitRepo

POLICY = """
[policy]
required_tags = ["owner", "team"]
allowed_images = ["mcr.microsoft.com/azureml/", "docker.io/library/busybox:"]
pinning = "warning"
forbidden_packages = ["pip:pycrypto", "tensorflow-gpu"]
allowed_os_types = ["linux"]

[policy.environments."strict-*"]
pinning = "error"
"""

TAGGED = "tags:\n  owner: ada\n  team: vision\n"


def plan_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        resources.files("reconciler").joinpath("schemas/plan.schema.json").read_text()
    )
    return loaded


def rules_at(diagnostics: list[dict[str, Any]]) -> set[tuple[str, str, str, int | None]]:
    return {
        (d["severity"], d["rule"], d["path"], d["line"])
        for d in diagnostics
        if d["rule"].startswith("policy-")
    }


def test_violations_are_diagnostics_with_file_and_line(repo: GitRepo, cli: Cli) -> None:
    repo.write("reconciler.toml", POLICY)
    repo.write("environments/good.yml", "name: good\nimage: busybox:1.36\n" + TAGGED)
    repo.write(
        "environments/bad.yml",
        "name: bad\nimage: quay.io/acme/base:1\nos_type: windows\nconda_file: conda.yml\n"
        "tags:\n  owner: ada\n",
    )
    repo.write(
        "environments/conda.yml",
        "dependencies:\n  - python=3.11\n  - numpy>=1.20\n  - pip:\n"
        "      - pycrypto==2.6.1\n      - requests\n",
    )
    repo.commit("seed")
    code, document = cli.json("validate")
    assert code == 1
    assert rules_at(document["diagnostics"]) == {
        ("error", "policy-required-tags", "environments/bad.yml", 5),
        ("error", "policy-allowed-images", "environments/bad.yml", 2),
        ("error", "policy-os-type", "environments/bad.yml", 3),
        ("error", "policy-forbidden-packages", "environments/conda.yml", 5),
        ("warning", "policy-pinning", "environments/conda.yml", 3),  # numpy>=1.20
        ("warning", "policy-pinning", "environments/conda.yml", 6),  # requests
    }
    missing = next(d for d in document["diagnostics"] if d["rule"] == "policy-required-tags")
    assert missing["message"] == "bad: required tag(s) missing: team"
    # `python=3.11` names a version: conda's `=` pin is accepted
    assert not any("'python'" in d["message"] for d in document["diagnostics"])
    code, out, err = cli("validate")
    assert "environments/bad.yml:3: bad: os_type 'windows' is not allowed" in out
    # an error-severity violation makes apply refuse, like any other error
    code, out, err = cli("apply")
    assert code == 1 and "apply refused" in err
    assert not repo.registry_db.exists() or cli.json("list")[1] == []


def test_override_per_environment_and_build_context_files(repo: GitRepo, cli: Cli) -> None:
    repo.write("reconciler.toml", POLICY)
    repo.write("environments/strict-svc.yml", "name: strict-svc\nbuild:\n  path: ctx\n" + TAGGED)
    repo.write("environments/ctx/Dockerfile", "FROM ghcr.io/acme/base:2 AS build\nFROM build\n")
    repo.write("environments/ctx/requirements.txt", "torch==2.3.1\nflask\n")
    repo.commit("seed")
    code, document = cli.json("validate")
    assert code == 1
    assert rules_at(document["diagnostics"]) == {
        ("error", "policy-allowed-images", "environments/ctx/Dockerfile", 1),
        ("error", "policy-pinning", "environments/ctx/requirements.txt", 2),
    }


def test_exception_in_force_downgrades_and_expired_one_stands(repo: GitRepo, cli: Cli) -> None:
    repo.write(
        "reconciler.toml",
        POLICY
        + """
[[policy.exceptions]]
environment = "legacy-*"
rule = "allowed-images"
approved_by = "grace@example.invalid"
reason = "vendor image until the migration"
expires = 2999-03-31

[[policy.exceptions]]
environment = "old"
rule = "required-tags"
approved_by = "alan@example.invalid"
reason = "owner left"
expires = "2001-01-01"
""",
    )
    repo.write("environments/legacy-a.yml", "name: legacy-a\nimage: quay.io/v/x:1\n" + TAGGED)
    repo.write("environments/old.yml", "name: old\nimage: busybox:1.36\n")
    repo.commit("seed")
    code, document = cli.json("plan")
    assert code == 1
    jsonschema.Draft202012Validator(plan_schema()).validate(document)
    by_rule = {d["rule"]: d for d in document["diagnostics"]}
    allowed = by_rule["policy-allowed-images"]
    assert allowed["severity"] == "info"
    assert (
        "exception in force: approved by grace@example.invalid until 2999-03-31"
        in (allowed["message"])
    )
    assert "vendor image until the migration" in allowed["message"]
    tags = by_rule["policy-required-tags"]
    assert tags["severity"] == "error"
    assert "the exception approved by alan@example.invalid expired on 2001-01-01" in tags["message"]


def test_pull_request_comment_shows_package_bump_and_policy_violation(
    repo: GitRepo, cli: Cli
) -> None:
    repo.write("reconciler.toml", POLICY)
    repo.write(
        "environments/ml.yml", "name: ml\nimage: busybox:1.36\nconda_file: conda.yml\n" + TAGGED
    )
    repo.write("environments/conda.yml", "dependencies:\n  - numpy=1.26.4\n")
    repo.commit("seed")
    assert cli("apply")[0] == 0
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("environments/conda.yml", "dependencies:\n  - numpy=2.0.1\n  - scipy\n")
    repo.commit("bump numpy, add scipy")
    repo.git("checkout", "-q", "main")
    code, out, err = cli("plan", "--base", "main", "--head", "feature", "--markdown", "-")
    assert code == 2, err  # a warning does not fail the plan
    assert out.startswith(PLAN_MARKER)
    assert "! numpy 1.26.4 → 2.0.1  (conda)" in out
    assert "+ scipy  (conda)" in out
    assert "### Policy" in out
    assert (
        "| warning | <code>pinning</code> | <code>environments/conda.yml:3</code> | "
        "ml: conda package 'scipy' has no version; the policy requires one version |"
    ) in out


def test_drift_report_lists_policy_diagnostics(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/a.yml", "name: a\nimage: busybox:1.36\n")
    repo.commit("seed")
    assert cli("apply")[0] == 0
    repo.write("reconciler.toml", '[policy]\nrequired_tags = ["owner"]\n')
    code, out, err = cli("drift")
    assert code == 1  # an error-severity violation is an error in the environment files
    report = repo.root / "drift-report"
    document = json.loads((report / "drift-report.json").read_text())
    [violation] = [d for d in document["diagnostics"] if d["rule"].startswith("policy-")]
    assert violation["path"] == "environments/a.yml" and violation["line"] == 1
    markdown = (report / "drift-report.md").read_text()
    assert "### Policy" in markdown and "a: required tag(s) missing: owner" in markdown
    assert "a: required tag(s) missing: owner" in (report / "drift-report.html").read_text()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[policy]\npinning = "always"\n', "`policy.pinning`: expected one of off, warning, error"),
        ("[policy]\nrequired_tag = []\n", "unknown policy key `policy.required_tag`"),
        ("[policy]\nkeep_versions = -1\n", "`policy.keep_versions`: expected a whole number"),
        (
            '[policy.environments."x*"]\nallowed_os_types = ["macos"]\n',
            "'macos' is not linux or windows",
        ),
        (
            '[[policy.exceptions]]\nenvironment = "x"\nrule = "pinning"\n',
            "`policy.exceptions[0]`: missing approved_by, reason, expires",
        ),
        (
            '[[policy.exceptions]]\nenvironment = "x"\nrule = "pinning"\napproved_by = "a"\n'
            'reason = "b"\nexpires = "next year"\n',
            "'next year' is not a date",
        ),
        (
            '[[policy.exceptions]]\nenvironment = "x"\nrule = "tags"\napproved_by = "a"\n'
            'reason = "b"\nexpires = 2030-01-01\n',
            "`policy.exceptions[0].rule`: 'tags' is not one of",
        ),
    ],
)
def test_malformed_policy_is_a_clear_settings_error(
    repo: GitRepo, cli: Cli, toml: str, message: str
) -> None:
    repo.write("reconciler.toml", toml)
    repo.write("environments/a.yml", "name: a\nimage: busybox:1.36\n")
    repo.commit("seed")
    code, out, err = cli("validate")
    assert code == 1
    assert "reconciler.toml: [policy]:" in err and message in err


def test_evaluation_is_pure_and_judged_at_the_given_date() -> None:
    policy = parse_policy(
        {
            "required_tags": ["owner"],
            "exceptions": [
                {
                    "environment": "a",
                    "rule": "required-tags",
                    "approved_by": "x",
                    "reason": "y",
                    "expires": date(2030, 6, 30),
                }
            ],
        }
    )
    env = DesiredEnvironment("a", None, None, {}, {"image": "busybox:1"}, "sha256:0", None, "a.yml")
    [before] = evaluate(policy, env, date(2030, 6, 30))
    [after] = evaluate(policy, env, date(2030, 7, 1))
    assert before.severity == "info" and after.severity == "error"
    with pytest.raises(PolicyError):
        parse_policy({"environments": []})
