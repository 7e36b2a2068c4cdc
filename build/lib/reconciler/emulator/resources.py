"""Environment containers and versions as the service's REST resources, kept in the
embedded SQLite registry.

One database holds every workspace and registry the emulator is asked about: a
container is stored under ``<scope>/<name>``, so scopes never see each other. The
build-relevant fields of a version body (image, conda file, build context, OS type,
inference config, asset properties) are its stored content, so the registry's own rule
applies: the same version with other content is a conflict (HTTP 409).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.digest import content_digest
from reconciler.core.model import RegisteredContainer, RegisteredVersion
from reconciler.core.plan import VersionWrite
from reconciler.ports import NotFound, RegistryError, VersionConflict

PROVIDER = "Microsoft.MachineLearningServices"
CREATED_BY = "reconciler emulator"
# Fields of a version that the service never changes after creation.
CONTENT_FIELDS = ("image", "condaFile", "build", "osType", "inferenceConfig", "properties")


class BadRequest(Exception):
    """The request is well-formed HTTP but not a valid resource (HTTP 400)."""


class Conflict(Exception):
    """The version exists with other content (HTTP 409)."""


class Missing(Exception):
    """No such resource (HTTP 404)."""


@dataclass(frozen=True)
class Scope:
    """A workspace (``/subscriptions/S/resourceGroups/R/.../workspaces/W``) or a registry."""

    kind: str  # "workspaces" | "registries"
    subscription: str
    resource_group: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.subscription}/{self.resource_group}/{self.name}".lower()

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/{self.kind}/{self.name}"
        )


def _asset_base(scope: Scope) -> str:
    # Registry assets carry registry-style ids; the SDK parses them back into names.
    if scope.kind == "registries":
        return f"azureml://registries/{scope.name}"
    return scope.arm_id


def _system_data(created_at: str) -> dict[str, Any]:
    return {
        "createdAt": created_at,
        "createdBy": CREATED_BY,
        "createdByType": "User",
        "lastModifiedAt": created_at,
        "lastModifiedBy": CREATED_BY,
        "lastModifiedByType": "User",
    }


def normalize_content(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable part of a version body, with the service's defaults filled in."""
    build = properties.get("build")
    if isinstance(build, Mapping):
        build = {
            "contextUri": build.get("contextUri"),
            "dockerfilePath": build.get("dockerfilePath") or "Dockerfile",
        }
    os_type = str(properties.get("osType") or "Linux")
    content = {
        "image": properties.get("image"),
        "condaFile": properties.get("condaFile"),
        "build": build,
        "osType": os_type[:1].upper() + os_type[1:].lower(),
        "inferenceConfig": properties.get("inferenceConfig"),
        "properties": dict(properties.get("properties") or {}),
    }
    if (content["image"] is None) == (content["build"] is None):
        raise BadRequest("an environment version needs exactly one of image and build")
    if content["condaFile"] is not None and content["build"] is not None:
        raise BadRequest("condaFile cannot be combined with build")
    return content


class EnvironmentStore:
    def __init__(self, registry: SqliteRegistry) -> None:
        self.registry = registry

    # -- reads ------------------------------------------------------------------------

    def containers(self, scope: Scope) -> list[RegisteredContainer]:
        prefix = scope.key + "/"
        state = self.registry.read_state()
        return [c for key, c in state.containers.items() if key.startswith(prefix)]

    def container(self, scope: Scope, name: str) -> RegisteredContainer:
        found = self.registry.get_container(f"{scope.key}/{name}")
        if found is None:
            raise Missing(f"environment container {name!r} not found")
        return found

    def version(self, scope: Scope, name: str, version: str) -> RegisteredVersion:
        found = self.registry.get_version(f"{scope.key}/{name}", version)
        if found is None:
            raise Missing(f"environment version {name}:{version} not found")
        return found

    # -- writes -----------------------------------------------------------------------

    def put_version(
        self, scope: Scope, name: str, version: str, body: Mapping[str, Any]
    ) -> tuple[RegisteredVersion, bool]:
        """Create or update one version; returns it and whether it was created."""
        properties = body.get("properties")
        if not isinstance(properties, Mapping):
            raise BadRequest("the body needs `properties`")
        content = normalize_content(properties)
        tags = properties.get("tags") or {}
        if not isinstance(tags, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise BadRequest("`tags` must map strings to strings")
        key = f"{scope.key}/{name}"
        existed = self.registry.get_version(key, version) is not None
        write = VersionWrite(
            content=content,
            digest=content_digest(content),
            description=properties.get("description"),
            tags=dict(tags),
        )
        try:
            stored = self.registry.put_version(key, version, write)
        except VersionConflict:
            raise Conflict(
                f"environment {name}:{version} already exists with different content; only "
                "description, tags and isArchived of a version can change"
            ) from None
        archived = bool(properties.get("isArchived", False))
        if archived != stored.archived:
            self._set_version_archived(key, name, version, archived)
            stored = self.version(scope, name, version)
        return stored, not existed

    def set_container_archived(self, scope: Scope, name: str, archived: bool) -> None:
        try:
            self.registry.set_container_archived(f"{scope.key}/{name}", archived)
        except NotFound:
            raise Missing(
                f"environment container {name!r} not found (the emulator creates a container "
                "with its first version)"
            ) from None

    def _set_version_archived(self, key: str, name: str, version: str, archived: bool) -> None:
        try:
            self.registry.set_version_archived(key, version, archived)
        except NotFound:
            raise Missing(f"environment version {name}:{version} not found") from None
        except RegistryError as exc:
            raise BadRequest(str(exc).replace(key, name)) from None


# -- REST shapes ------------------------------------------------------------------------


def version_resource(scope: Scope, name: str, version: RegisteredVersion) -> dict[str, Any]:
    content = dict(version.content or {})
    properties: dict[str, Any] = {
        "description": version.description,
        "tags": dict(version.tags),
        "properties": content.pop("properties", {}),
        "isAnonymous": False,
        "isArchived": version.archived,
        "environmentType": "UserCreated",
        "provisioningState": "Succeeded",
        "autoRebuild": "Disabled",
    }
    properties.update({k: v for k, v in content.items() if v is not None})
    return {
        "id": f"{_asset_base(scope)}/environments/{name}/versions/{version.version}",
        "name": version.version,
        "type": f"{PROVIDER}/{scope.kind}/environments/versions",
        "properties": properties,
        "systemData": _system_data(version.created_at),
    }


def container_resource(scope: Scope, name: str, container: RegisteredContainer) -> dict[str, Any]:
    newest = container.newest
    created = container.versions[0].created_at if container.versions else ""
    return {
        "id": f"{_asset_base(scope)}/environments/{name}",
        "name": name,
        "type": f"{PROVIDER}/{scope.kind}/environments",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": container.archived,
            "latestVersion": newest.version if newest else None,
            "nextVersion": container.next_version(),
            "provisioningState": "Succeeded",
        },
        "systemData": _system_data(newest.created_at if newest else created),
    }


def visible(archived: bool, view: str) -> bool:
    """Whether a listing with ``listViewType=view`` shows something archived or not."""
    if view == "all":
        return True
    if view == "archivedonly":
        return archived
    return not archived
