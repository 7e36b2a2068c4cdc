"""`reconciler diff`: two registered versions, or one against git (working tree or a ref),
field by field and package by package; exit 0 identical, 2 different, 1 on errors."""

from __future__ import annotations

from tests.conftest import Cli, GitRepo

ENV = "name: ml\nimage: busybox:1.36\nconda_file: conda.yml\ndescription: {description}\n"
CONDA = "channels: [conda-forge]\ndependencies:\n  - numpy={numpy}\n  - pip:\n      - {pip}\n"


def release(repo: GitRepo, cli: Cli, numpy: str, pip: str, description: str = "ml") -> None:
    repo.write("environments/ml.yml", ENV.format(description=description))
    repo.write("environments/conda.yml", CONDA.format(numpy=numpy, pip=pip))
    repo.commit(f"numpy {numpy}")
    code, _, err = cli("apply")
    assert code == 0, err


def test_two_registered_versions(repo: GitRepo, cli: Cli) -> None:
    release(repo, cli, "1.26.4", "requests==2.31.0")
    release(repo, cli, "2.0.1", "httpx==0.27.0", "ml, numpy 2")
    code, document = cli.json("diff", "ml:1", "ml:2")
    assert code == 2
    assert document["kind"] == "version-diff" and not document["identical"]
    assert not document["same_content"]
    assert document["left"]["label"] == "ml:1" and document["right"]["label"] == "ml:2"
    assert {
        "path": "description",
        "kind": "changed",
        "before": "ml",
        "after": "ml, numpy 2",
    } in document["fields"]
    assert [(p["manager"], p["name"], p["kind"]) for p in document["packages"]] == [
        ("conda", "numpy", "changed"),
        ("pip", "httpx", "added"),
        ("pip", "requests", "removed"),
    ]
    code, out, err = cli("diff", "ml:1", "ml:2")
    assert code == 2
    assert out.splitlines()[0].startswith("--- ml:1")
    assert "conda: numpy 1.26.4 -> 2.0.1" in out
    assert "pip: + httpx 0.27.0" in out and "pip: - requests 2.31.0" in out
    assert 'description: "ml" -> "ml, numpy 2"' in out
    assert "conda.dependencies" not in out
    code, document = cli.json("diff", "ml:2", "ml:2")
    assert code == 0 and document["identical"] and document["fields"] == []


def test_version_against_git(repo: GitRepo, cli: Cli) -> None:
    release(repo, cli, "1.26.4", "requests==2.31.0")
    code, out, err = cli("diff", "ml:1")
    assert code == 0, err
    assert "Identical" in out
    # an uncommitted edit: the working tree is compared by default, a ref on request
    repo.write("environments/conda.yml", CONDA.format(numpy="2.0.1", pip="requests==2.31.0"))
    code, document = cli.json("diff", "ml:1")
    assert code == 2
    assert document["right"]["source"] == "git"
    assert [(p["name"], p["before"], p["after"]) for p in document["packages"]] == [
        ("numpy", "1.26.4", "2.0.1")
    ]
    code, document = cli.json("diff", "ml:1", "--ref", "HEAD")
    assert code == 0 and document["identical"]


def test_errors_exit_1(repo: GitRepo, cli: Cli) -> None:
    release(repo, cli, "1.26.4", "requests==2.31.0")
    code, out, err = cli("diff", "ml:9")
    assert code == 1 and "no version ml:9" in err
    code, out, err = cli("diff", "ml")
    assert code == 1 and "name a version, as NAME:VERSION" in err
    repo.remove("environments/ml.yml")
    code, out, err = cli("diff", "ml:1")
    assert code == 1 and "no environment 'ml' in git" in err
