"""Small classification rules shared by parsing and resolution (kept import-light)."""

from __future__ import annotations

from typing import Any

# Tag keys under this prefix are the reconciler's ownership stamps.
STAMP_PREFIX = "reconciler."
URL_PREFIXES = ("https://", "http://", "git+", "git://", "azureml://", "wasbs://", "abfss://")
_ENVIRONMENT_KEYS = frozenset(
    {"image", "build", "conda_file", "docker", "inference_config", "os_type"}
)


def is_url(path: str) -> bool:
    """A build context given as a URL (blob storage, git) is an opaque reference."""
    return path.startswith(URL_PREFIXES) or ".git#" in path or path.endswith(".git")


def is_conda_document(data: Any) -> bool:
    """A YAML with top-level channels/dependencies and no environment keys is a conda file."""
    if not isinstance(data, dict):
        return False
    keys = set(data)
    return bool(keys & {"channels", "dependencies"}) and not keys & _ENVIRONMENT_KEYS
