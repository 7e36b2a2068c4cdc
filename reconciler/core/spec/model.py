"""Actual state: what a registry holds, as plain frozen values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.core.spec.digest import canonical_json
from reconciler.core.spec.kinds import STAMP_PREFIX

MANAGED_BY = "reconciler"
STAMP_MANAGED_BY = STAMP_PREFIX + "managed-by"
STAMP_SOURCE_PATH = STAMP_PREFIX + "source-path"
STAMP_SOURCE_COMMIT = STAMP_PREFIX + "source-commit"
STAMP_CONTENT_DIGEST = STAMP_PREFIX + "content-digest"
# Hash of the description and user tags as the reconciler wrote them: a registry value
# that no longer matches it was edited outside git (drift), not changed in git.
STAMP_METADATA_DIGEST = STAMP_PREFIX + "metadata-digest"
STAMP_OWNER = STAMP_PREFIX + "owner"
# Set on the newest managed version when the reconciler archives an environment (value:
# the commit it was removed at). Without it, an archived environment that is still in
# git was archived by hand, and an active one that is no longer in git was restored by
# hand: out-of-band changes that are reported, not silently undone.
STAMP_ARCHIVED = STAMP_PREFIX + "archived"


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(STAMP_PREFIX)}


def metadata_digest(description: str | None, tags: Mapping[str, str]) -> str:
    import hashlib  # stdlib; kept local so the module header shows only domain imports

    text = canonical_json({"description": description, "tags": user_tags(tags)})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    name: str
    version: str
    content: Mapping[str, Any] | None  # None when the backend cannot return it
    digest: str | None
    description: str | None
    tags: Mapping[str, str]
    archived: bool = False  # the version's own flag; see RegisteredContainer.archived
    created_at: str = ""
    datastore: str | None = None

    @property
    def managed(self) -> bool:
        return self.tags.get(STAMP_MANAGED_BY) == MANAGED_BY

    @property
    def source_path(self) -> str | None:
        return self.tags.get(STAMP_SOURCE_PATH)

    @property
    def source_commit(self) -> str | None:
        return self.tags.get(STAMP_SOURCE_COMMIT)

    @property
    def effective_digest(self) -> str | None:
        return self.digest or self.tags.get(STAMP_CONTENT_DIGEST)

    @property
    def metadata_edited(self) -> bool:
        """Stamped metadata no longer matches: someone edited it outside the reconciler."""
        stamped = self.tags.get(STAMP_METADATA_DIGEST)
        return stamped is not None and stamped != metadata_digest(self.description, self.tags)


@dataclass(frozen=True, slots=True)
class RegisteredContainer:
    name: str
    archived: bool
    versions: tuple[RegisteredVersion, ...] = ()  # in creation order, oldest first

    @property
    def newest(self) -> RegisteredVersion | None:
        """The most recently created version: what the service calls latest."""
        return self.versions[-1] if self.versions else None

    @property
    def managed(self) -> bool:
        return any(v.managed for v in self.versions)

    def get(self, version: str) -> RegisteredVersion | None:
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        return None

    def next_version(self) -> str:
        # isascii: str.isdigit() accepts digits such as "²" that int() refuses
        numbers = [
            int(v.version) for v in self.versions if v.version.isascii() and v.version.isdigit()
        ]
        return str(max(numbers, default=0) + 1)

    def newest_managed(self) -> RegisteredVersion | None:
        for candidate in reversed(self.versions):
            if candidate.managed:
                return candidate
        return None

    def owner_path(self) -> str | None:
        newest = self.newest_managed()
        return newest.source_path if newest else None

    def owner(self) -> str | None:
        """The owner stamped on the newest managed version (repository identity)."""
        newest = self.newest_managed()
        return newest.tags.get(STAMP_OWNER) if newest else None

    @property
    def archive_stamped(self) -> bool:
        """The reconciler archived this environment (see STAMP_ARCHIVED)."""
        newest = self.newest_managed()
        return newest is not None and STAMP_ARCHIVED in newest.tags


@dataclass(frozen=True, slots=True)
class RegistryState:
    containers: Mapping[str, RegisteredContainer] = field(default_factory=dict)
    token: str | None = None  # changes whenever the registry changes, where the backend knows


def with_written(state: RegistryState, written: Iterable[RegisteredVersion]) -> RegistryState:
    """``state`` after put_version returned ``written``: each replaces the version of its
    number or comes after the container's others (a new name: a new active container).
    The token is unknown (None): the caller knows what the registry's is now."""
    containers = dict(state.containers)
    for version in written:
        old = containers.get(version.name)
        if old is None:
            containers[version.name] = RegisteredContainer(version.name, False, (version,))
        elif old.get(version.version) is not None:
            versions = tuple(version if v.version == version.version else v for v in old.versions)
            containers[version.name] = replace(old, versions=versions)
        else:
            containers[version.name] = replace(old, versions=(*old.versions, version))
    return RegistryState(containers, None)


@dataclass(frozen=True, slots=True)
class VersionWrite:
    """Everything apply sends for one version: content and metadata, stamps included."""

    content: Mapping[str, Any]
    digest: str
    description: str | None
    tags: Mapping[str, str]
    datastore: str | None = None
