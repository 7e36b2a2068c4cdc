"""Environment entities of the SDK to and from the registry model.

What the service returns is enough to recompute the content digest of an image, conda or
URL-context environment. A local build context comes back only as the blob URL the SDK
uploaded it to (``.../LocalUpload/<hash of the files>/context/``), so such a version has
no digest of its own and the planner uses its ``reconciler.content-digest`` stamp.

Build records have no place in the service: each is kept as compact JSON in one version
tag, ``reconciler.build.record``. Tags under ``reconciler.`` are the reconciler's own,
outside the metadata digest, so a record never reads as drift.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.core.build.jobs import BuildRecord, BuildStatus
from reconciler.core.spec.digest import DIGEST_FORMAT, build_content, content_digest
from reconciler.core.spec.model import RegisteredVersion

if TYPE_CHECKING:
    from azure.ai.ml.entities import Environment

    from reconciler.core.spec.model import VersionWrite

BUILD_TAG_PREFIX = "reconciler.build."
BUILD_RECORD_TAG = BUILD_TAG_PREFIX + "record"
CONTEXT_DIRECTORY = "context"  # the uploaded directory's name: part of the blob path
LOCAL_UPLOAD_MARKER = "/LocalUpload/"
LOG_TAIL_CHARS = 2000
ROUTES = ("liveness_route", "readiness_route", "scoring_route")


def _route(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"port": value.get("port"), "path": value.get("path")}
    return {"port": getattr(value, "port", None), "path": getattr(value, "path", None)}


def _inference(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {name: _route(value.get(name)) for name in ROUTES}
    return {name: _route(getattr(value, name, None)) for name in ROUTES}


def read_content(env: Environment) -> tuple[dict[str, Any], str | None]:
    """The content as the registry model holds it, and its digest (None when the service
    cannot return what enters it: a local build context)."""
    build: dict[str, Any] | None = None
    local = False
    if env.build is not None:
        uri = str(env.build.path or "")
        dockerfile = env.build.dockerfile_path or "Dockerfile"
        local = LOCAL_UPLOAD_MARKER in uri
        if local:
            build = {"dockerfile_path": dockerfile, "context_uri": uri}
        else:
            build = {"url": uri, "dockerfile_path": dockerfile}
    os_type = env.os_type.value if isinstance(env.os_type, Enum) else env.os_type
    content = build_content(
        image=env.image,
        conda=env.conda_file if env.conda_file else None,
        build=build,
        os_type=str(os_type or "linux").lower(),
        inference_config=_inference(env.inference_config),
    )
    return content, None if local else content_digest(content)


def registered_version(env: Environment, archived: bool) -> RegisteredVersion:
    content, digest = read_content(env)
    created = env.creation_context.created_at if env.creation_context else None
    return RegisteredVersion(
        name=str(env.name),
        version=str(env.version),
        content=content,
        digest=digest,
        description=env.description,
        tags=dict(env.tags or {}),
        archived=archived,
        created_at=created.isoformat() if isinstance(created, datetime) else str(created or ""),
    )


def environment_for(
    name: str, version: str, write: VersionWrite, context_dir: Path | str | None
) -> Environment:
    """The SDK entity to send for a write; ``context_dir`` holds a local build context (or
    is the URI it was already uploaded to)."""
    from azure.ai.ml.entities import BuildContext, Environment

    content = write.content
    if content.get("format") != DIGEST_FORMAT:
        raise ValueError(f"unknown content format {content.get('format')!r}")
    build = content.get("build")
    context = None
    if isinstance(build, Mapping):
        if "url" in build:
            context = BuildContext(path=str(build["url"]), dockerfile_path=build["dockerfile_path"])
        else:
            assert context_dir is not None
            context = BuildContext(path=str(context_dir), dockerfile_path=build["dockerfile_path"])
    os_type = str(content.get("os_type") or "linux")
    return Environment(
        name=name,
        version=version,
        description=write.description,
        tags=dict(write.tags),
        image=content.get("image"),
        conda_file=content.get("conda"),
        build=context,
        os_type=os_type.capitalize(),
        inference_config=content.get("inference_config"),
        datastore=write.datastore,
    )


def local_context_files(content: Mapping[str, Any]) -> list[tuple[str, str, str]] | None:
    build = content.get("build")
    if isinstance(build, Mapping) and "files" in build:
        return [(str(p), str(m), str(b)) for p, m, b in build["files"]]
    return None


def write_context(
    files: list[tuple[str, str, str]], read_blob: Callable[[str], bytes], root: Path
) -> Path:
    """Materialise a build context from git blobs, for the SDK to hash and upload."""
    target = root / CONTEXT_DIRECTORY
    for path, mode, blob in files:
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = read_blob(blob)
        if mode == "120000":
            os.symlink(data.decode("utf-8", "surrogateescape"), destination)
            continue
        destination.write_bytes(data)
        if mode == "100755":
            destination.chmod(
                destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            )
    return target


# -- build records ----------------------------------------------------------------------


def record_tag(record: BuildRecord) -> str:
    data = record.to_dict()
    data["digest"] = record.digest
    data["log_tail"] = record.log_tail[-LOG_TAIL_CHARS:]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def record_from_tags(name: str, version: str, tags: Mapping[str, str]) -> BuildRecord | None:
    text = tags.get(BUILD_RECORD_TAG)
    if not text:
        return None
    try:
        data = json.loads(text)
        return BuildRecord(
            name=name,
            version=version,
            digest=str(data["digest"]),
            status=BuildStatus(data["status"]),
            image=data.get("image"),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            log_tail=str(data.get("log_tail") or ""),
            log_path=data.get("log_path"),
            attempts=int(data.get("attempts") or 0),
            next_attempt_at=data.get("next_attempt_at"),
            message=str(data.get("message") or ""),
            cache_hit=bool(data.get("cache_hit")),
            bases={str(k): (str(v) if v else None) for k, v in (data.get("bases") or {}).items()},
        )
    except (ValueError, KeyError, TypeError):
        return None  # edited by hand into something else: as if there were no record


def build_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith(BUILD_TAG_PREFIX)}
