"""Builds images on a Docker Engine (docker SDK) and pushes them to an OCI registry.

The engine is found through DOCKER_HOST (or the `docker_host` setting). Builds run with
the network disabled; base images must already be in the engine or its registry.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

from reconciler.adapters.oci import OciRegistry
from reconciler.core.build.jobs import CONDA_FILE_IN_CONTEXT, BuildJob, image_repository
from reconciler.core.desired.snapshot import EXECUTABLE_MODE, SYMLINK_MODE
from reconciler.ports import BuildError, BuilderUnavailable


def split_image_registry(image_registry: str) -> tuple[str, str]:
    """`127.0.0.1:5000/ml` -> (`127.0.0.1:5000`, `ml/environments`)."""
    repository = image_repository(image_registry)
    host, _, path = repository.partition("/")
    return host, path


class DockerBuilder:
    def __init__(
        self, image_registry: str, docker_host: str | None = None, timeout: float = 600.0
    ) -> None:
        self.image_registry = image_registry
        self.image_repository = image_repository(image_registry)
        host, self._repo_path = split_image_registry(image_registry)
        self.oci = OciRegistry(host)
        self._docker_host = docker_host
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    # -- engine ---------------------------------------------------------------------

    def _engine(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker  # imported only when a build is wanted

                try:
                    if self._docker_host:
                        self._client = docker.DockerClient(
                            base_url=self._docker_host, timeout=self._timeout
                        )
                    else:
                        self._client = docker.from_env(timeout=self._timeout)
                except docker.errors.DockerException as exc:
                    raise BuildError(f"no Docker Engine: {exc}") from exc
            return self._client

    def unavailable(self) -> str | None:
        try:
            self._engine().ping()
        except BuildError as exc:
            return str(exc)
        except Exception as exc:  # the SDK raises requests and docker errors alike
            where = self._docker_host or "DOCKER_HOST"
            return f"no Docker Engine reachable at {where}: {exc}"
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- lookups ----------------------------------------------------------------------

    def pushed_tags(self) -> set[str]:
        """Tags in the OCI repository only: what a job running elsewhere can pull."""
        return set(self.oci.tags(self._repo_path))

    def known_tags(self) -> set[str]:
        """Tags in the OCI repository (one paged request) and in the local engine."""
        tags = set(self.oci.tags(self._repo_path))
        try:
            images = self._engine().api.images(name=self.image_repository)
        except Exception:  # no engine: the OCI registry alone decides
            images = []
        prefix = self.image_repository + ":"
        for image in images:
            for ref in image.get("RepoTags") or ():
                if ref.startswith(prefix):
                    tags.add(ref[len(prefix) :])
        return tags

    def pushed_image(self, tag: str) -> str | None:
        digest = self.oci.manifest_digest(self._repo_path, tag)
        return f"{self.image_repository}@{digest}" if digest else None

    def pushed_images(self, tags: list[str]) -> dict[str, str | None]:
        """`pushed_image` for many tags, concurrently (one small HEAD request each)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(tag: str) -> str | None:
            try:
                return self.pushed_image(tag)
            except BuildError:
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(tags, pool.map(one, tags), strict=True))

    # -- building ---------------------------------------------------------------------

    def build(
        self, job: BuildJob, read_blob: Callable[[str], bytes], log: Callable[[str], None]
    ) -> str:
        import requests
        import urllib3

        target = f"{self.image_repository}:{job.tag}"
        engine = self._engine()
        if job.kind == "url":
            raise BuildError(
                "a build context given as a URL is built by the service, not "
                "locally (the network is disabled for builds)"
            )
        try:
            if job.kind == "image":
                self._retag_base(engine, job, target, log)
            else:
                context = self._context(job, read_blob)
                self._run_build(engine, context, job, target, log)
            return self._push(engine, job.tag, log)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            # the engine went away mid-build (stopped, restarted, socket cut)
            where = self._docker_host or "DOCKER_HOST"
            raise BuilderUnavailable(
                f"the Docker Engine at {where} stopped answering: {exc}"
            ) from exc

    def _retag_base(
        self, engine: Any, job: BuildJob, target: str, log: Callable[[str], None]
    ) -> None:
        import docker

        assert job.base_image is not None
        try:
            image = engine.images.get(job.base_image)
            log(f"base image {job.base_image} found in the engine")
        except docker.errors.ImageNotFound:
            log(f"pulling {job.base_image}")
            try:
                image = engine.images.pull(job.base_image)
            except docker.errors.APIError as exc:
                raise BuildError(
                    f"base image {job.base_image} is not in the engine and cannot "
                    f"be pulled: {exc.explanation or exc}"
                ) from exc
        repository, tag = target.rsplit(":", 1)
        image.tag(repository, tag)
        log(f"tagged {job.base_image} ({image.id}) as {target}")

    def _context(self, job: BuildJob, read_blob: Callable[[str], bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            if job.kind == "conda":
                assert job.dockerfile_text is not None and job.conda_yaml is not None
                _add(archive, "Dockerfile", job.dockerfile_text.encode(), "100644")
                _add(archive, CONDA_FILE_IN_CONTEXT, job.conda_yaml.encode(), "100644")
            else:
                for path, mode, blob in job.context_files:
                    _add(archive, path, read_blob(blob), mode)
        return buffer.getvalue()

    def _run_build(
        self, engine: Any, context: bytes, job: BuildJob, target: str, log: Callable[[str], None]
    ) -> None:
        import docker

        dockerfile = "Dockerfile" if job.kind == "conda" else job.dockerfile_path
        try:
            stream: Iterable[dict[str, Any]] = engine.api.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                dockerfile=dockerfile,
                tag=target,
                network_mode="none",
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in str(chunk["stream"]).splitlines():
                        if line.strip():
                            log(line)
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    log(f"ERROR: {detail}")
                    raise BuildError(f"docker build failed: {str(detail).strip()}")
        except docker.errors.APIError as exc:
            log(f"ERROR: {exc.explanation or exc}")
            raise BuildError(f"docker build failed: {exc.explanation or exc}") from exc

    def _push(self, engine: Any, tag: str, log: Callable[[str], None]) -> str:
        try:
            return self._push_once(engine, tag, log)
        except BuildError as exc:
            try:  # the registry down is no fault of the environment: say so
                self.oci.tags(self._repo_path)
            except BuilderUnavailable as down:
                raise BuilderUnavailable(f"{exc} ({down})") from exc
            raise

    def _push_once(self, engine: Any, tag: str, log: Callable[[str], None]) -> str:
        import docker

        digest = None
        try:
            for chunk in engine.api.push(self.image_repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    log(f"ERROR: {detail}")
                    raise BuildError(f"push to {self.image_registry} failed: {detail}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
                if chunk.get("status") and chunk.get("id") is None:
                    log(str(chunk["status"]))
        except docker.errors.APIError as exc:
            raise BuildError(
                f"push to {self.image_registry} failed: {exc.explanation or exc}"
            ) from exc
        if digest is None:
            digest = self.oci.manifest_digest(self._repo_path, tag)
        if digest is None:
            raise BuildError(f"push to {self.image_registry} reported no digest")
        reference = f"{self.image_repository}@{digest}"
        log(f"pushed {reference}")
        return reference


def _add(archive: tarfile.TarFile, path: str, data: bytes, mode: str) -> None:
    info = tarfile.TarInfo(path)
    info.mtime = 0  # reproducible contexts
    if mode == SYMLINK_MODE:
        info.type = tarfile.SYMTYPE
        info.linkname = data.decode("utf-8", "replace")
        archive.addfile(info)
        return
    info.size = len(data)
    info.mode = 0o755 if mode == EXECUTABLE_MODE else 0o644
    archive.addfile(info, io.BytesIO(data))
