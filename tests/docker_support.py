"""The real Docker Engine and OCI registry for build tests (started by scripts/services).

Nothing can be pulled here, so base images are built locally FROM scratch with the static
busybox binary. In CI (CI set) a missing engine fails the tests instead of skipping them.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass

import pytest

BUSYBOX_IMAGE = "reconciler-test/busybox:1"
CONDA_IMAGE = "reconciler-test/conda:1"

# A stand-in for conda in the test base image: `conda env create -p P -f F` copies the
# specification into P, `conda clean` does nothing. The build around it is real.
FAKE_CONDA = """#!/bin/sh
if [ "$1" = env ] && [ "$2" = create ]; then
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in -p) P=$2; shift 2;; -f) F=$2; shift 2;; *) shift;; esac
  done
  mkdir -p "$P/bin" && cp "$F" "$P/environment.yml" && echo "created $P from $F"
  exit $?
fi
exit 0
"""


@dataclass(frozen=True)
class DockerEnv:
    docker_host: str
    registry_host: str

    def fresh_image_registry(self) -> str:
        """A prefix of its own per test, so each starts with an empty repository."""
        return f"{self.registry_host}/t{uuid.uuid4().hex[:10]}"


def _busybox() -> bytes:
    path = shutil.which("busybox") or "/bin/busybox"
    with open(path, "rb") as handle:
        return handle.read()


def _context(files: dict[str, tuple[bytes, int]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def build_base_images(docker_host: str) -> None:
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        busybox = (
            b"FROM scratch\nCOPY busybox /bin/busybox\n"
            b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/usr/bin:/bin\n'
        )
        client.images.build(
            fileobj=_context({"Dockerfile": (busybox, 0o644), "busybox": (_busybox(), 0o755)}),
            custom_context=True,
            tag=BUSYBOX_IMAGE,
            network_mode="none",
            rm=True,
        )
        conda = f"FROM {BUSYBOX_IMAGE}\nCOPY conda /usr/bin/conda\n".encode()
        client.images.build(
            fileobj=_context({"Dockerfile": (conda, 0o644), "conda": (FAKE_CONDA.encode(), 0o755)}),
            custom_context=True,
            tag=CONDA_IMAGE,
            network_mode="none",
            rm=True,
        )
    finally:
        client.close()


def docker_env_or_skip() -> DockerEnv:
    host = os.environ.get("DOCKER_HOST")
    registry = os.environ.get("RECONCILER_TEST_IMAGE_REGISTRY")
    if not host or not registry:
        message = (
            "no Docker Engine / OCI registry for build tests: run "
            '`eval "$(scripts/services start)"` first'
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the build tests)")
        pytest.skip(message)
    build_base_images(host)
    return DockerEnv(host, registry)
