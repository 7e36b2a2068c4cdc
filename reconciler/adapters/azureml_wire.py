"""The environment API's JSON (as the REST listings return it) to the registry model.

The same translation the SDK's entities go through in azureml_content, read straight from
the wire: a version's own ``isArchived`` comes with it, so one listing per environment
tells everything. A container listing entry becomes a ContainerView: the few fields that
change whenever the container does (a new version, an archive or restore), which decide
whether its versions need to be read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import yaml

from reconciler.adapters.azureml_content import LOCAL_UPLOAD_MARKER, ROUTES
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import RegisteredVersion

# liveness_route -> livenessRoute, as the REST API spells them
_ROUTE_KEYS = {name: name.split("_")[0] + "Route" for name in ROUTES}


@dataclass(frozen=True)
class ContainerView:
    """What a container listing says of one environment."""

    name: str
    archived: bool
    latest_version: str | None
    next_version: str | None
    last_modified: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ContainerView:
        return ContainerView(
            str(data["name"]),
            bool(data["archived"]),
            _optional(data.get("latest_version")),
            _optional(data.get("next_version")),
            _optional(data.get("last_modified")),
        )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _timestamp(value: Any) -> str:
    """ISO 8601 as the SDK's entities give it (a datetime's isoformat)."""
    if not value:
        return ""
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return text


def container_view(item: Mapping[str, Any]) -> ContainerView:
    properties = item.get("properties") or {}
    system = item.get("systemData") or {}
    return ContainerView(
        name=str(item.get("name")),
        archived=bool(properties.get("isArchived", False)),
        latest_version=_optional(properties.get("latestVersion")),
        next_version=_optional(properties.get("nextVersion")),
        last_modified=_optional(system.get("lastModifiedAt")),
    )


def _inference(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    out = {}
    for name, key in _ROUTE_KEYS.items():
        route = value.get(key) or {}
        out[name] = {"port": route.get("port"), "path": route.get("path")}
    return out


def read_content(properties: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The content as the registry model holds it, and its digest (None for a local build
    context, whose files the service does not return)."""
    build: dict[str, Any] | None = None
    local = False
    raw_build = properties.get("build")
    if isinstance(raw_build, Mapping):
        uri = str(raw_build.get("contextUri") or "")
        dockerfile = raw_build.get("dockerfilePath") or "Dockerfile"
        local = LOCAL_UPLOAD_MARKER in uri
        if local:
            build = {"dockerfile_path": dockerfile, "context_uri": uri}
        else:
            build = {"url": uri, "dockerfile_path": dockerfile}
    conda_text = properties.get("condaFile")
    conda = yaml.safe_load(conda_text) if conda_text else None
    content = build_content(
        image=properties.get("image"),
        conda=conda if conda else None,
        build=build,
        os_type=str(properties.get("osType") or "linux").lower(),
        inference_config=_inference(properties.get("inferenceConfig")),
    )
    return content, None if local else content_digest(content)


def version_name(item: Mapping[str, Any]) -> tuple[str, str]:
    """(environment, version) from a version resource's id (``.../environments/N/versions/V``)."""
    parts = str(item.get("id") or "").rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "versions" and parts[-4] == "environments":
        return parts[-3], parts[-1]
    return "", str(item.get("name"))


def registered_version(item: Mapping[str, Any], name: str | None = None) -> RegisteredVersion:
    properties = item.get("properties") or {}
    content, digest = read_content(properties)
    found_name, version = version_name(item)
    return RegisteredVersion(
        name=name or found_name,
        version=str(item.get("name") or version),
        content=content,
        digest=digest,
        description=properties.get("description"),
        tags={str(k): str(v) for k, v in (properties.get("tags") or {}).items()},
        archived=bool(properties.get("isArchived", False)),
        created_at=_timestamp((item.get("systemData") or {}).get("createdAt")),
    )


def version_to_dict(version: RegisteredVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "content": version.content,
        "digest": version.digest,
        "description": version.description,
        "tags": dict(version.tags),
        "archived": version.archived,
        "created_at": version.created_at,
    }


def version_from_dict(data: Mapping[str, Any]) -> RegisteredVersion:
    return RegisteredVersion(
        name=str(data["name"]),
        version=str(data["version"]),
        content=data.get("content"),
        digest=data.get("digest"),
        description=data.get("description"),
        tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        archived=bool(data.get("archived")),
        created_at=str(data.get("created_at") or ""),
    )
