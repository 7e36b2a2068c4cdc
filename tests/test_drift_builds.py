"""Drift classes that need the real Docker Engine and OCI registry: `build` (never built,
failed, image gone from the registry) and `base_image_moved` (a base tag moved in its
registry after the version was built)."""

from __future__ import annotations

import io
import tarfile
import urllib.request
import uuid
from typing import Any

import docker

from tests.conftest import Cli, GitRepo
from tests.docker_support import BUSYBOX_IMAGE, DockerEnv
from tests.test_drift import drift, env_of, items


def client(docker_env: DockerEnv) -> Any:
    return docker.DockerClient(base_url=docker_env.docker_host)


def push_base(docker_env: DockerEnv, ref: str, marker: str) -> None:
    """Build a base image FROM the local busybox with one marker file, push it as ``ref``."""
    dockerfile = f"FROM {BUSYBOX_IMAGE}\nRUN echo {marker} > /marker\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    engine = client(docker_env)
    try:
        engine.images.build(
            fileobj=buffer, custom_context=True, tag=ref, network_mode="none", rm=True
        )
        repository, tag = ref.rsplit(":", 1)
        for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        engine.close()


def delete_tag(docker_env: DockerEnv, repository: str, tag: str) -> None:
    base = f"http://{docker_env.registry_host}/v2/{repository}/manifests"
    head = urllib.request.Request(
        f"{base}/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
    )
    with urllib.request.urlopen(head) as response:
        digest = response.headers["Docker-Content-Digest"]
    with urllib.request.urlopen(urllib.request.Request(f"{base}/{digest}", method="DELETE")):
        pass


def test_build_drift_never_built_failed_and_image_missing(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    repo.write("environments/ok.yml", f"name: ok\nimage: {BUSYBOX_IMAGE}\n")
    repo.write("environments/broken/env.yml", "name: broken\nbuild:\n  path: ctx\n")
    repo.write("environments/broken/ctx/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN false\n")
    repo.commit("seed")
    assert cli("apply")[0] == 0  # no image registry: registered, never built
    code, document = drift(cli, "--image-registry", registry)
    assert code == 2
    assert next(i["reason"] for i in items(document, "ok", "build")).startswith("never built")
    assert document["builds_checked"]

    assert cli("apply", "--image-registry", registry)[0] == 1  # broken fails to build
    code, document = drift(cli, "--image-registry", registry)
    assert code == 2
    assert items(document, "ok", "build") == []
    [failed] = items(document, "broken", "build")
    assert failed["reason"].startswith("build failed:") and "log:" in failed["reason"]

    # the image disappears from the OCI registry (garbage collection, a wrong cleanup job)
    repository = registry.split("/", 1)[1] + "/environments"
    tags = cli.json("show", "ok:1")[1]["build"]["image"]
    assert tags.startswith(registry)
    digest = cli.json("show", "ok:1")[1]["digest"]
    delete_tag(docker_env, repository, digest.removeprefix("sha256:"))
    code, document = drift(cli, "--image-registry", registry)
    [gone] = items(document, "ok", "build")
    assert "is missing from the OCI registry" in gone["reason"]


def test_base_image_moved_in_its_registry(repo: GitRepo, cli: Cli, docker_env: DockerEnv) -> None:
    registry = docker_env.fresh_image_registry()
    base = f"{docker_env.registry_host}/base-{uuid.uuid4().hex[:8]}/python:3.11"
    push_base(docker_env, base, "first")
    repo.write("environments/app/env.yml", "name: app\nbuild:\n  path: ctx\n")
    repo.write("environments/app/ctx/Dockerfile", f"FROM {base}\nRUN echo app\n")
    repo.write("environments/plain.yml", f"name: plain\nimage: {base}\n")
    repo.write("environments/local.yml", f"name: local\nimage: {BUSYBOX_IMAGE}\n")
    repo.commit("seed")
    code, out, err = cli("apply", "--image-registry", registry)
    assert code == 0, err
    code, document = drift(cli, "--image-registry", registry)
    assert code == 0, document
    # a base that is only in the engine could not be asked: unknown, never drift
    assert any("not known at build time" in u for u in env_of(document, "local")["unknown"])

    push_base(docker_env, base, "second")  # someone pushes a new image under the same tag
    code, document = drift(cli, "--image-registry", registry)
    assert code == 2
    for name in ("app", "plain"):
        [moved] = items(document, name, "base_image_moved")
        assert base in moved["reason"]
        [field] = moved["fields"]
        assert field["before"] != field["after"] and field["after"].startswith("sha256:")
    assert env_of(document, "local")["status"] == "in_sync"
