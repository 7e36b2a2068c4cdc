"""Registry URLs, parsed once into a typed value.

- ``sqlite:///PATH``: a local SQLite file, three slashes relative to the repository root,
  four slashes absolute (SQLAlchemy's convention);
- ``azureml://subscriptions/<sub>/resourceGroups/<rg>/workspaces/<ws>``: a workspace;
- ``azureml://registries/<name>``: an Azure ML registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SQLITE_PREFIX = "sqlite:///"
# Matched only for azureml:// URLs (compiled then: every command parses its URL at start).
_WORKSPACE = (
    r"^azureml://subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/workspaces/(?P<ws>[^/]+)/?$"
)
_REGISTRY = r"^azureml://registries/(?P<name>[^/]+)/?$"
AZUREML_FORMS = (
    "expected azureml://subscriptions/<sub>/resourceGroups/<rg>/workspaces/<ws> "
    "or azureml://registries/<name>"
)


class BadRegistryURL(ValueError):
    """Not a registry URL this reconciler knows; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class RegistryURL:
    text: str  # as given: what plans, reports and the inventory name the registry by
    kind: Literal["sqlite", "azureml"]
    path: str | None = None  # sqlite: the database file as written
    subscription: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    registry: str | None = None  # azureml://registries/<name>

    @property
    def key(self) -> str:
        """A stable, file-name-safe identity (for local locks and records)."""
        import hashlib

        return hashlib.sha256(self.text.lower().rstrip("/").encode()).hexdigest()[:16]

    @property
    def scope(self) -> str | None:
        """The registry's own scope, as consumers name it in references
        (`registries/NAME`, `subscriptions/S/resourceGroups/R/workspaces/W`); None: local."""
        if self.registry is not None:
            return f"registries/{self.registry}"
        if self.workspace is not None:
            return (
                f"subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/workspaces/{self.workspace}"
            )
        return None

    def __str__(self) -> str:
        return self.text


def parse_registry_url(text: str) -> RegistryURL:
    if text.startswith(SQLITE_PREFIX):
        rest = text[len(SQLITE_PREFIX) :]
        if not rest:
            raise BadRegistryURL(f"{text}: no database path")
        return RegistryURL(text, "sqlite", path=rest)
    if text.lower().startswith("azureml://"):
        import re

        found = re.match(_WORKSPACE, text, re.IGNORECASE)
        if found:
            return RegistryURL(
                text,
                "azureml",
                subscription=found["sub"],
                resource_group=found["rg"],
                workspace=found["ws"],
            )
        found = re.match(_REGISTRY, text, re.IGNORECASE)
        if found:
            return RegistryURL(text, "azureml", registry=found["name"])
        raise BadRegistryURL(f"{text}: {AZUREML_FORMS}")
    raise BadRegistryURL(
        f"unsupported registry URL {text!r}: expected sqlite:///PATH or azureml://..."
    )
