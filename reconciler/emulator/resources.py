"""Environment containers and versions as the service's REST resources, kept in the
embedded SQLite registry.

One database holds every workspace and registry the emulator is asked about: a
container is stored under ``<scope>/<name>``, so scopes never see each other. The
build-relevant fields of a version body (image, conda file, build context, OS type,
inference config, asset properties) are its stored content, so the registry's own rule
applies: the same version with other content is a conflict (HTTP 409). The other fields
of the published API (container description and tags, a version's ``autoRebuild``,
``stage``, ``intellectualProperty`` ...) are kept beside it (:mod:`attributes`), with the
spec's mutability: fields marked create-only conflict when changed, the rest update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.digest import content_digest
from reconciler.core.spec.model import RegisteredContainer, RegisteredVersion, VersionWrite
from reconciler.emulator.attributes import AttributeStore, container_key, version_key
from reconciler.ports import NotFound, RegistryError, VersionConflict

PROVIDER = "Microsoft.MachineLearningServices"
CREATED_BY = "reconciler emulator"
# Fields of a version that the service never changes after creation.
CONTENT_FIELDS = ("image", "condaFile", "build", "osType", "inferenceConfig", "properties")
# Create-only fields kept beside the content (x-ms-mutability: create, read), and their
# values when a version is created without them.
CREATE_ONLY = {"autoRebuild": "Disabled", "intellectualProperty": None, "isAnonymous": False}
AUTO_REBUILD = ("Disabled", "OnBaseImageUpdate")
OS_TYPES = ("Linux", "Windows")
PROTECTION_LEVELS = ("All", "None")
LIST_VIEWS = ("activeonly", "archivedonly", "all")


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


def _system_data(created_at: str, modified_at: str | None = None) -> dict[str, Any]:
    return {
        "createdAt": created_at,
        "createdBy": CREATED_BY,
        "createdByType": "User",
        "lastModifiedAt": modified_at or created_at,
        "lastModifiedBy": CREATED_BY,
        "lastModifiedByType": "User",
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadRequest(f"`{field}` must map strings to strings")
    return dict(value)


def _properties(body: Any) -> Mapping[str, Any]:
    properties = body.get("properties") if isinstance(body, Mapping) else None
    if not isinstance(properties, Mapping):
        raise BadRequest("the body needs `properties`")
    return properties


def normalize_content(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable part of a version body, with the service's defaults filled in."""
    build = properties.get("build")
    if isinstance(build, Mapping):
        build = {
            "contextUri": build.get("contextUri"),
            "dockerfilePath": build.get("dockerfilePath") or "Dockerfile",
        }
    os_type = str(properties.get("osType") or "Linux")
    if os_type.lower() not in ("linux", "windows"):
        raise BadRequest(f"osType must be one of {', '.join(OS_TYPES)}, not {os_type!r}")
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


def version_extras(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a version body kept beside its content, as given (validated)."""
    extras: dict[str, Any] = {}
    rebuild = properties.get("autoRebuild")
    if rebuild is not None:
        if rebuild not in AUTO_REBUILD:
            raise BadRequest(f"autoRebuild must be one of {', '.join(AUTO_REBUILD)}")
        extras["autoRebuild"] = rebuild
    ip = properties.get("intellectualProperty")
    if ip is not None:
        if (
            not isinstance(ip, Mapping)
            or not isinstance(ip.get("publisher"), str)
            or not ip["publisher"]
        ):
            raise BadRequest("intellectualProperty needs a `publisher`")
        level = ip.get("protectionLevel", "All")
        if level not in PROTECTION_LEVELS:
            raise BadRequest(f"protectionLevel must be one of {', '.join(PROTECTION_LEVELS)}")
        extras["intellectualProperty"] = {"publisher": ip["publisher"], "protectionLevel": level}
    anonymous = properties.get("isAnonymous")
    if anonymous is not None:
        if not isinstance(anonymous, bool):
            raise BadRequest("isAnonymous must be a boolean")
        extras["isAnonymous"] = anonymous
    if "stage" in properties:
        stage = properties["stage"]
        if stage is not None and not isinstance(stage, str):
            raise BadRequest("stage must be a string")
        extras["stage"] = stage
    if "autoDeleteSetting" in properties:
        setting = properties["autoDeleteSetting"]
        if setting is not None and not isinstance(setting, Mapping):
            raise BadRequest("autoDeleteSetting must be an object")
        extras["autoDeleteSetting"] = None if setting is None else dict(setting)
    return extras


class EnvironmentStore:
    def __init__(self, registry: SqliteRegistry) -> None:
        self.registry = registry
        self.attributes = AttributeStore(registry)
        # Every scope's containers, read once per registry generation: a listing is
        # fetched page by page, and each page would otherwise read the whole registry.
        self._by_scope: dict[str, list[RegisteredContainer]] = {}
        self._merged: dict[str, list[RegisteredContainer]] = {}  # with PUT-only containers
        self._token: tuple[str | None, int] | None = None

    # -- reads ------------------------------------------------------------------------

    def listing(self, scope: Scope, view: str) -> list[RegisteredContainer]:
        """The containers a ``listViewType=view`` listing shows, by name (cached alike)."""
        self.containers(scope)  # brings the cache up to date
        key = f"{view}\t{scope.key}"
        shown = self._merged.get(key)
        if shown is None:
            shown = self._merged[key] = [
                c for c in self.containers(scope) if visible(c.archived, view)
            ]
        return shown

    def containers(self, scope: Scope) -> list[RegisteredContainer]:
        """The scope's containers (those created by PUT without a version too), by name."""
        token = (self.registry.state_token(), self.attributes.revision)
        if token != self._token or token[0] is None:
            state = self.registry.read_state()
            grouped: dict[str, dict[str, RegisteredContainer]] = {}
            for key, container in state.containers.items():
                grouped.setdefault(key.rsplit("/", 1)[0], {})[key] = container
            self._by_scope = {
                scope_key: [found[k] for k in sorted(found)] for scope_key, found in grouped.items()
            }
            self._merged = {}
            self._token = token
        merged = self._merged.get(scope.key)
        if merged is None:
            found = {c.name: c for c in self._by_scope.get(scope.key, ())}
            for name, attributes in self.attributes.containers(scope.key):
                key = f"{scope.key}/{name}"
                if key not in found:
                    found[key] = RegisteredContainer(key, bool(attributes.get("isArchived")))
            merged = self._merged[scope.key] = [found[k] for k in sorted(found)]
        return list(merged)

    def container(self, scope: Scope, name: str) -> RegisteredContainer:
        key = f"{scope.key}/{name}"
        found = self.registry.get_container(key)
        if found is not None:
            return found
        attributes = self.attributes.get(container_key(scope.key, name))
        if attributes:
            return RegisteredContainer(key, bool(attributes.get("isArchived")))
        raise Missing(f"environment container {name!r} not found")

    def version(self, scope: Scope, name: str, version: str) -> RegisteredVersion:
        found = self.registry.get_version(f"{scope.key}/{name}", version)
        if found is None:
            raise Missing(f"environment version {name}:{version} not found")
        return found

    def container_attributes(self, scope: Scope, name: str) -> dict[str, Any]:
        return self.attributes.get(container_key(scope.key, name))

    def version_attributes(self, scope: Scope, name: str, version: str) -> dict[str, Any]:
        return self.attributes.get(version_key(scope.key, name, version))

    # -- writes -----------------------------------------------------------------------

    def put_container(
        self, scope: Scope, name: str, body: Mapping[str, Any]
    ) -> tuple[RegisteredContainer, bool]:
        """Create or update a container (description, tags, properties, isArchived)."""
        properties = _properties(body)
        description = properties.get("description")
        if description is not None and not isinstance(description, str):
            raise BadRequest("`description` must be a string")
        tags = _string_map(properties.get("tags"), "tags")
        asset_properties = _string_map(properties.get("properties"), "properties")
        archived = properties.get("isArchived", False)
        if not isinstance(archived, bool):
            raise BadRequest("isArchived must be a boolean")
        key = container_key(scope.key, name)
        in_registry = self.registry.get_container(f"{scope.key}/{name}") is not None
        created = not in_registry and not self.attributes.has(key)
        now = _now()
        attributes = self.attributes.get(key)
        attributes.setdefault("createdAt", now)
        attributes.update(
            description=description,
            tags=tags,
            properties=asset_properties,
            lastModifiedAt=now,
        )
        if not in_registry:
            attributes["isArchived"] = archived
        with self._writing():
            self.attributes.put(key, attributes)
            if in_registry:
                self._set_registry_container_archived(scope, name, archived)
        return self.container(scope, name), created

    def put_version(
        self, scope: Scope, name: str, version: str, body: Mapping[str, Any]
    ) -> tuple[RegisteredVersion, bool]:
        """Create or update one version; returns it and whether it was created."""
        properties = _properties(body)
        content = normalize_content(properties)
        tags = _string_map(properties.get("tags"), "tags")
        extras = version_extras(properties)
        key = f"{scope.key}/{name}"
        existing = self.registry.get_version(key, version)
        attributes_key = version_key(scope.key, name, version)
        if existing is None:
            stored_extras = {**CREATE_ONLY, **extras}
        else:
            stored_extras = self.attributes.get(attributes_key)
            for field, default in CREATE_ONLY.items():
                given = extras.get(field)
                if given is not None and given != stored_extras.get(field, default):
                    raise Conflict(
                        f"environment {name}:{version} has {field} "
                        f"{stored_extras.get(field, default)!r}; it is set when a version is "
                        "created and cannot change"
                    )
            for field in ("stage", "autoDeleteSetting"):
                if field in extras:
                    stored_extras[field] = extras[field]
        archived = properties.get("isArchived", False)
        if not isinstance(archived, bool):
            raise BadRequest("isArchived must be a boolean")
        if isinstance(extras.get("stage"), str):
            # The spec: "when Stage is provided it will be used to populate IsArchived".
            archived = extras["stage"].lower() == "archived"
        write = VersionWrite(
            content=content,
            digest=content_digest(content),
            description=properties.get("description"),
            tags=tags,
        )
        container_attributes = self.attributes.get(container_key(scope.key, name))
        starts_archived = self.registry.get_container(key) is None and bool(
            container_attributes.get("isArchived")
        )
        now = _now()
        with self._writing():
            try:
                stored = self.registry.put_version(key, version, write)
            except VersionConflict:
                raise Conflict(
                    f"environment {name}:{version} already exists with different content; only "
                    "description, tags, stage and isArchived of a version can change"
                ) from None
            if starts_archived:  # created archived by PUT before its first version
                self._set_registry_container_archived(scope, name, True)
            if archived != stored.archived:
                self._set_version_archived(key, name, version, archived)
            changed = existing is None or (
                (existing.description, dict(existing.tags), existing.archived)
                != (write.description, dict(write.tags), archived)
                or stored_extras != self.attributes.get(attributes_key)
            )
            if changed:
                stored_extras["lastModifiedAt"] = now
                self.attributes.put(attributes_key, stored_extras)
            if existing is None:  # a new version modifies its container; a retag does not
                container_attributes["lastModifiedAt"] = now
                container_attributes.setdefault("createdAt", stored.created_at)
                self.attributes.put(container_key(scope.key, name), container_attributes)
        return self.version(scope, name, version), existing is None

    def _writing(self) -> Any:
        return _Atomic(self)

    def _set_registry_container_archived(self, scope: Scope, name: str, archived: bool) -> None:
        try:
            self.registry.set_container_archived(f"{scope.key}/{name}", archived)
        except NotFound:
            raise Missing(f"environment container {name!r} not found") from None

    def _set_version_archived(self, key: str, name: str, version: str, archived: bool) -> None:
        try:
            self.registry.set_version_archived(key, version, archived)
        except NotFound:
            raise Missing(f"environment version {name}:{version} not found") from None
        except RegistryError as exc:
            raise BadRequest(str(exc).replace(key, name)) from None


class _Atomic:
    """The registry's batch (one transaction); the attribute cache is re-read if it fails."""

    def __init__(self, store: EnvironmentStore) -> None:
        self.store = store
        self._batch = store.registry.batch()

    def __enter__(self) -> None:
        self._batch.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        try:
            return self._batch.__exit__(*exc)
        finally:
            if exc[0] is not None:
                self.store.attributes.reload()


# -- REST shapes ------------------------------------------------------------------------


def version_resource(
    scope: Scope, name: str, version: RegisteredVersion, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    content = dict(version.content or {})
    properties: dict[str, Any] = {
        "description": version.description,
        "tags": dict(version.tags),
        "properties": content.pop("properties", {}),
        "isAnonymous": bool(attributes.get("isAnonymous", False)),
        "isArchived": version.archived,
        "environmentType": "UserCreated",
        "provisioningState": "Succeeded",
        "autoRebuild": attributes.get("autoRebuild") or "Disabled",
    }
    for field in ("stage", "intellectualProperty", "autoDeleteSetting"):
        if attributes.get(field) is not None:
            properties[field] = attributes[field]
    properties.update({k: v for k, v in content.items() if v is not None})
    return {
        "id": f"{_asset_base(scope)}/environments/{name}/versions/{version.version}",
        "name": version.version,
        "type": f"{PROVIDER}/{scope.kind}/environments/versions",
        "properties": properties,
        "systemData": _system_data(version.created_at, attributes.get("lastModifiedAt")),
    }


def container_resource(
    scope: Scope, name: str, container: RegisteredContainer, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    newest = container.newest
    created = attributes.get("createdAt") or (
        container.versions[0].created_at if container.versions else ""
    )
    modified = attributes.get("lastModifiedAt") or (newest.created_at if newest else created)
    return {
        "id": f"{_asset_base(scope)}/environments/{name}",
        "name": name,
        "type": f"{PROVIDER}/{scope.kind}/environments",
        "properties": {
            "description": attributes.get("description"),
            "tags": dict(attributes.get("tags") or {}),
            "properties": dict(attributes.get("properties") or {}),
            "isArchived": container.archived,
            "latestVersion": newest.version if newest else None,
            "nextVersion": container.next_version(),
            "provisioningState": "Succeeded",
        },
        "systemData": _system_data(created, modified),
    }


def list_view(request_query: Mapping[str, str]) -> str:
    """``listViewType`` of a listing, lower-cased; ``ActiveOnly`` when not given."""
    view = request_query.get("listViewType", "ActiveOnly").lower()
    if view not in LIST_VIEWS:
        raise BadRequest("listViewType must be one of ActiveOnly, ArchivedOnly, All")
    return view


def visible(archived: bool, view: str) -> bool:
    """Whether a listing with ``listViewType=view`` shows something archived or not."""
    if view == "all":
        return True
    if view == "archivedonly":
        return archived
    return not archived
