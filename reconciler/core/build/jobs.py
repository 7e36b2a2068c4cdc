"""Image builds: what to build for an environment, where the image goes, and when a
failed build is tried again. Pure: the Docker adapter does the work.

The image tag is the content digest, so identical content under any name or version is
one image, built once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredEnvironment, DesiredState
    from reconciler.core.spec.model import RegisteredContainer, RegistryState

IMAGE_REPOSITORY = "environments"
CONDA_FILE_IN_CONTEXT = "conda_env.yml"
LOG_TAIL_LINES = 30
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)


class BuildStatus(StrEnum):
    NOT_BUILT = "not_built"
    QUEUED = "queued"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """What is known about the image of one registered version."""

    name: str
    version: str
    digest: str  # content digest: the image tag
    status: BuildStatus = BuildStatus.NOT_BUILT
    image: str | None = None  # repo@sha256:... once pushed
    started_at: str | None = None
    ended_at: str | None = None
    log_tail: str = ""
    log_path: str | None = None
    attempts: int = 0
    next_attempt_at: str | None = None
    message: str = ""
    cache_hit: bool = False
    # Base image reference -> its manifest digest when this image was built (None: the
    # registry could not be asked), to find a base tag that has moved since.
    bases: Mapping[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "image": self.image,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "log_tail": self.log_tail,
            "log_path": self.log_path,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "message": self.message,
            "cache_hit": self.cache_hit,
            "bases": dict(self.bases),
        }


@dataclass(frozen=True, slots=True)
class BuildJob:
    """One image to produce: everything the builder needs, by content digest."""

    digest: str
    kind: str  # "image" | "conda" | "context" | "url"
    base_image: str | None = None
    dockerfile_path: str = "Dockerfile"
    dockerfile_text: str | None = None  # generated Dockerfile (conda)
    context_files: tuple[tuple[str, str, str], ...] = ()  # (path in context, mode, blob id)
    context_url: str | None = None
    conda_yaml: str | None = None
    versions: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (name, version)

    @property
    def tag(self) -> str:
        return image_tag(self.digest)


def image_tag(digest: str) -> str:
    return digest.removeprefix("sha256:")


def image_repository(image_registry: str) -> str:
    """`127.0.0.1:5000/ml` -> `127.0.0.1:5000/ml/environments`."""
    return f"{image_registry.rstrip('/')}/{IMAGE_REPOSITORY}"


def conda_dockerfile(base_image: str) -> str:
    """The layer the service adds on top of a base image for a conda specification."""
    return (
        f"FROM {base_image}\n"
        f"COPY {CONDA_FILE_IN_CONTEXT} /azureml-environment-setup/{CONDA_FILE_IN_CONTEXT}\n"
        "RUN conda env create -p /azureml-envs/env "
        f"-f /azureml-environment-setup/{CONDA_FILE_IN_CONTEXT} && conda clean -aqy\n"
        "ENV PATH=/azureml-envs/env/bin:$PATH\n"
        "ENV AZUREML_CONDA_ENVIRONMENT_PATH=/azureml-envs/env\n"
    )


def job_for(digest: str, content: Mapping[str, Any]) -> BuildJob:
    """What to build for this content (see the service's three kinds of environment)."""
    build = content.get("build")
    if isinstance(build, Mapping):
        if "url" in build:
            return BuildJob(
                digest,
                "url",
                context_url=str(build["url"]),
                dockerfile_path=str(build.get("dockerfile_path", "Dockerfile")),
            )
        files = tuple((str(p), str(m), str(b)) for p, m, b in build.get("files", ()))
        return BuildJob(
            digest, "context", dockerfile_path=str(build["dockerfile_path"]), context_files=files
        )
    image = str(content.get("image"))
    conda = content.get("conda")
    if conda is not None:
        import yaml  # the service stores the conda file re-dumped with sorted keys

        text = yaml.safe_dump(conda, sort_keys=True, default_flow_style=False)
        return BuildJob(
            digest,
            "conda",
            base_image=image,
            dockerfile_text=conda_dockerfile(image),
            conda_yaml=text,
        )
    return BuildJob(digest, "image", base_image=image)


_FROM = re.compile(
    r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<ref>\S+)(?:\s+AS\s+(?P<stage>\S+))?",
    re.IGNORECASE | re.MULTILINE,
)


def dockerfile_bases(text: str) -> list[str]:
    """The external images a Dockerfile starts from: `FROM` references that are not an
    earlier stage, `scratch` or built from build arguments (unknown until build time)."""
    stages: set[str] = set()
    bases: list[str] = []
    for match in _FROM.finditer(text):
        ref, stage = match["ref"], match["stage"]
        if ref.lower() not in stages and ref != "scratch" and "$" not in ref and ref not in bases:
            bases.append(ref)
        if stage:
            stages.add(stage.lower())
    return bases


def job_bases(job: BuildJob, read_blob: Callable[[str], bytes]) -> list[str]:
    """Base image references of a build job (from its Dockerfile for a build context)."""
    if job.base_image:
        return [job.base_image]
    if job.kind != "context":
        return []
    for path, _mode, blob in job.context_files:
        if path == job.dockerfile_path:
            return dockerfile_bases(read_blob(blob).decode("utf-8", "replace"))
    return []


def next_attempt(attempts: int, now: datetime) -> datetime:
    """Backoff for failed builds: 1 min, 2, 4, ... capped at 6 h."""
    delay = min(RETRY_BASE * (1 << min(max(attempts - 1, 0), 20)), RETRY_MAX)
    return now + delay


def tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(log.rstrip("\n").splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class BuildTarget:
    name: str
    version: str
    digest: str
    content: Mapping[str, Any]
    build_root: str | None = None


@dataclass
class BuildOutcome:
    built: list[BuildRecord] = field(default_factory=list)
    cache_hits: list[BuildRecord] = field(default_factory=list)
    failed: list[BuildRecord] = field(default_factory=list)
    waiting: list[BuildRecord] = field(default_factory=list)  # failed, backoff not over
    not_built: list[BuildRecord] = field(default_factory=list)
    unavailable: str | None = None
    builds_run: int = 0  # docker builds (or re-tags) actually executed

    @property
    def broken(self) -> bool:
        """An environment whose image failed to build (now or before, awaiting a retry)."""
        return bool(self.failed or self.waiting)

    @property
    def ok(self) -> bool:
        return not self.broken and self.unavailable is None


# name -> (environment, container, its target): reused while both are the same objects
TargetMemo = dict[str, tuple[Any, Any, Any]]


def build_targets(
    desired: DesiredState, state: RegistryState, memo: TargetMemo | None = None
) -> list[BuildTarget]:
    """The registered version that carries each environment's git content. ``memo`` keeps
    each environment's answer for the same (immutable) environment and container."""
    targets = []
    kept: TargetMemo = {}
    for name, env in desired.environments.items():
        container = state.containers.get(name)
        if container is None:
            continue
        found = memo.get(name) if memo is not None else None
        if found is None or found[0] is not env or found[1] is not container:
            found = (env, container, _build_target(name, env, container))
        kept[name] = found
        if found[2] is not None:
            targets.append(found[2])
    if memo is not None:
        memo.clear()
        memo.update(kept)
    return targets


def _build_target(
    name: str, env: DesiredEnvironment, container: RegisteredContainer
) -> BuildTarget | None:
    if env.version is not None:
        version = container.get(env.version)
    else:
        version = next(
            (v for v in reversed(container.versions) if v.effective_digest == env.digest),
            None,
        )
    if version is None or version.effective_digest != env.digest:
        return None  # not registered (its write failed): nothing to build yet
    return BuildTarget(name, version.version, env.digest, env.content, env.build_root)
