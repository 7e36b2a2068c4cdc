"""The content digest: independent of everything that is not build-relevant."""

from __future__ import annotations

from reconciler.adapters.gitsource import DirectorySnapshot
from reconciler.core.desired.load import load_desired
from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import LoadMemo
from tests.conftest import GitRepo


def digests(repo: GitRepo) -> dict[str, str]:
    state = load_desired(DirectorySnapshot(repo.root), Selection(), LoadMemo())
    assert not state.has_errors, state.diagnostics
    return {name: env.digest for name, env in state.environments.items()}


def test_digest_ignores_name_metadata_location_and_formatting(repo: GitRepo) -> None:
    repo.write(
        "environments/a/env.yml",
        "name: a\nversion: '1'\ndescription: one\ntags: {x: '1'}\n"
        "image: img:1\nconda_file: conda.yml\n",
    )
    repo.write("environments/a/conda.yml", "channels: [c]\ndependencies: [python=3.11, numpy]\n")
    repo.write(
        "environments/deeper/b/env.yml",
        "# another file\nconda_file: ../../shared/other-name.yaml\nimage: 'img:1'\n"
        "name: b\ndescription: two\n",
    )
    repo.write(
        "environments/shared/other-name.yaml",
        "dependencies:\n  - python=3.11   # same\n  - numpy\nchannels:\n  - c\n",
    )
    found = digests(repo)
    assert found["a"] == found["b"]


def test_digest_changes_with_each_build_relevant_field(repo: GitRepo) -> None:
    base = "name: {n}\nimage: {image}\nos_type: {os}\nconda_file:\n  dependencies: {deps}\n"
    variants = {
        "base": dict(image="img:1", os="linux", deps="[a, b]"),
        "image": dict(image="img:2", os="linux", deps="[a, b]"),
        "os": dict(image="img:1", os="windows", deps="[a, b]"),
        "order": dict(image="img:1", os="linux", deps="[b, a]"),
        "deps": dict(image="img:1", os="linux", deps="[a, b, c]"),
    }
    for name, values in variants.items():
        repo.write(f"environments/{name}.yml", base.format(n=name, **values))
    repo.write("environments/ctx1.yml", "name: ctx1\nbuild: {path: c1}\n")
    repo.write("environments/c1/Dockerfile", "FROM x\n")
    repo.write("environments/ctx2.yml", "name: ctx2\nbuild: {path: c2}\n")
    repo.write("environments/c2/Dockerfile", "FROM x\n")
    repo.write("environments/c2/extra.txt", "one more file\n")
    repo.write(
        "environments/ctx3.yml",
        "name: ctx3\nbuild: {path: c1, dockerfile_path: Dockerfile}\n"
        "inference_config:\n  liveness_route: {port: 1, path: /l}\n"
        "  readiness_route: {port: 1, path: /r}\n  scoring_route: {port: 1, path: /s}\n",
    )
    found = digests(repo)
    assert len(set(found.values())) == len(found), found
    # same case as ctx1 with explicit default dockerfile_path and no inference: equal
    repo.write(
        "environments/ctx3.yml", "name: ctx3\nbuild: {path: c1, dockerfile_path: Dockerfile}\n"
    )
    found = digests(repo)
    assert found["ctx1"] == found["ctx3"]


def test_conda_data_is_what_a_canonical_json_round_trip_gives() -> None:
    # Conda data enters the digest as plain data; plain_data builds it directly, and it
    # must be exactly what the round trip through canonical JSON reads back.
    import datetime
    import json
    import random

    from reconciler.core.desired.load import plain_data
    from reconciler.core.spec.digest import canonical_json

    def string_keys(value: object) -> object:
        if isinstance(value, dict):
            return {str(k): string_keys(v) for k, v in value.items()}
        if isinstance(value, list):
            return [string_keys(v) for v in value]
        return value

    leaves: list[object] = [None, True, False, 0, -3, 2**70, 1.5, -0.0, float("inf"), "", "ü"]
    leaves += [datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4), b"x", {1, 2}]
    keys: list[object] = [1, "1", "a", "b", True, None, 2.5, datetime.date(2020, 1, 1), "é"]
    rng = random.Random(14)

    def value(depth: int = 0) -> object:
        roll = rng.random()
        if depth > 4 or roll < 0.35:
            return rng.choice(leaves)
        if roll < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 5))}

    for _ in range(3000):
        data = value()
        expected = json.loads(canonical_json(string_keys(data)))
        got = plain_data(data)
        assert got == expected and json.dumps(got) == json.dumps(expected), data
