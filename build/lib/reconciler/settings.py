"""Settings: defaults < ``reconciler.toml`` in the repository < environment < flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.notify import NotifyTarget
    from reconciler.core.policy import Policy

SETTINGS_FILE = "reconciler.toml"
DEFAULT_REGISTRY = "sqlite:///.reconciler/registry.db"
ENV_PREFIX = "RECONCILER_"


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    repo: Path = field(default_factory=Path.cwd)
    path: str = "environments"
    registry: str = DEFAULT_REGISTRY
    include: tuple[str, ...] = ("**/*.yml", "**/*.yaml", "*.yml", "*.yaml")
    exclude: tuple[str, ...] = ()
    lock_timeout: float = 60.0
    archive_limit_count: int = 10
    archive_limit_fraction: float = 0.25
    cache: bool = True
    owner: str | None = None  # default: the repository's origin URL, without credentials
    image_registry: str | None = None  # HOST:PORT/PREFIX where built images are pushed
    docker_host: str | None = None  # default: DOCKER_HOST, as the docker CLI
    build_workers: int = 2
    report_dir: str = "drift-report"  # relative to the repository
    azureml_retries: int = 4  # calls per Azure ML request when the service is busy or down
    azureml_backoff: float = 0.5  # seconds before the first retry; doubles each time
    policy: Policy | None = None  # the `[policy]` table (file only; see core/policy.py)
    # `reconciler serve`
    listen: str = "127.0.0.1:8080"  # HOST:PORT of the HTTP server
    unready_after: int = 3  # consecutive failed cycles that make /readyz answer 503
    branch: str | None = None  # the branch a push webhook must name (default: the current)
    remote: str = "origin"  # fetched before each cycle when it exists ("" never fetches)
    report_url: str | None = None  # where people read the drift report (linked in messages)
    notify: tuple[NotifyTarget, ...] = ()  # `[[notify]]` tables (file only)


# Keys settable from the file and the environment, with their parsers.
_KEYS: dict[str, Any] = {
    "path": str,
    "registry": str,
    "include": tuple,
    "exclude": tuple,
    "lock_timeout": float,
    "archive_limit_count": int,
    "archive_limit_fraction": float,
    "cache": bool,
    "owner": str,
    "image_registry": str,
    "docker_host": str,
    "build_workers": int,
    "report_dir": str,
    "azureml_retries": int,
    "azureml_backoff": float,
    "listen": str,
    "unready_after": int,
    "branch": str,
    "remote": str,
    "report_url": str,
}


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = _KEYS[key]
    try:
        if kind is tuple:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError("expected a list of glob strings")
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind is str and not isinstance(value, str):
            raise ValueError("expected a string")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: `{key}`: {exc}") from None


def _from_file(repo: Path) -> dict[str, Any]:
    path = repo / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from None
    out: dict[str, Any] = {}
    if "policy" in data:
        out["policy"] = _policy(data.pop("policy"), path)
    if "notify" in data:
        out["notify"] = _notify(data.pop("notify"), path)
    table = data.get("reconciler", data)
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [reconciler] must be a table")
    for key, value in table.items():
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise SettingsError(f"{path}: unknown setting `{key}` (known: {known})")
        out[key] = _coerce(key, value, str(path))
    return out


def _policy(table: Any, path: Path) -> Policy:
    # Imported only when the file has a policy: most commands never need it.
    from reconciler.core.policy import PolicyError, parse_policy

    try:
        return parse_policy(table)
    except PolicyError as exc:
        raise SettingsError(f"{path}: [policy]: {exc}") from None


def _notify(value: Any, path: Path) -> tuple[NotifyTarget, ...]:
    from reconciler.core.notify import NotifyError, parse_targets

    try:
        return parse_targets(value)
    except NotifyError as exc:
        raise SettingsError(f"{path}: {exc}") from None


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    out = {}
    for key in _KEYS:
        value = environ.get(ENV_PREFIX + key.upper())
        if value is not None and value != "":
            out[key] = _coerce(key, value, f"${ENV_PREFIX}{key.upper()}")
    return out


def load_settings(
    repo: Path, flags: dict[str, Any], environ: dict[str, str] | None = None
) -> Settings:
    """Merge the layers; ``flags`` holds only options given on the command line."""
    merged: dict[str, Any] = {}
    merged.update(_from_file(repo))
    merged.update(_from_environment(dict(os.environ) if environ is None else environ))
    merged.update({k: v for k, v in flags.items() if v is not None})
    known = {f.name for f in fields(Settings)}
    return replace(Settings(repo=repo), **{k: v for k, v in merged.items() if k in known})


def registry_location(url: str, repo: Path) -> Path:
    """The database file of a ``sqlite:///`` URL: three slashes relative to the repository
    root, four slashes absolute (SQLAlchemy's convention)."""
    if not url.startswith("sqlite:///"):
        raise SettingsError(f"not a sqlite registry URL: {url}")
    rest = url[len("sqlite:///") :]
    if not rest:
        raise SettingsError(f"{url}: no database path")
    path = Path(rest)
    return path if path.is_absolute() else repo / path
