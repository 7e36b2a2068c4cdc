"""Settings: defaults < ``reconciler.toml`` in the repository < environment < flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.desired.consumers import ConsumerSettings
    from reconciler.core.governance.policy import Policy
    from reconciler.core.loop.notify import NotifyTarget
    from reconciler.core.promotion.gate import Target

SETTINGS_FILE = "reconciler.toml"
DEFAULT_REGISTRY = "sqlite:///.reconciler/registry.db"
ENV_PREFIX = "RECONCILER_"


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    repo: Path = field(default_factory=Path.cwd)
    path: str = "environments"
    """Directory of environment files, relative to the repository root."""
    registry: str = DEFAULT_REGISTRY
    """Registry URL: `sqlite:///PATH` (three slashes: relative to the repository; four: absolute),
    `azureml://subscriptions/SUB/resourceGroups/RG/workspaces/WS` or `azureml://registries/NAME`.
    """
    include: tuple[str, ...] = ("**/*.yml", "**/*.yaml", "*.yml", "*.yaml")
    """Globs, relative to `path`, of the files that may hold environments."""
    exclude: tuple[str, ...] = ()
    """Globs, relative to `path`, of files never read as environments (for example
    `**/templates/*`).
    """
    lock_timeout: float = 60.0
    """Seconds a writer (`apply`, `build`, `watch`, `reconcile`) waits for the registry's lock
    before giving up.
    """
    watch_full_check: float = 60.0
    """`watch`: seconds between full checks of the working tree. In between, the paths file
    events name are all that is read again; a full check also runs at start, after a burst of
    events too large to trust and whenever the watcher restarts, and finds anything the events
    missed. `0`: every reconcile is a full check.
    """
    archive_limit_count: int = 10
    """The archive guard: a plan may archive at most the larger of this many environments and
    `archive_limit_fraction` of the managed ones, unless `--allow-mass-archive` is given.
    """
    archive_limit_fraction: float = 0.25
    """The archive guard's fraction of the managed environments (see `archive_limit_count`)."""
    cache: bool = True
    """Use the caches in `.reconciler/cache/` (parse results, the last plan per ref); `false` is the
    same as `--no-cache` on every command.
    """
    owner: str | None = None
    """The owner stamped on every version written (`reconciler.owner`); default: the repository's
    origin URL without credentials, else the repository's path.
    """
    image_registry: str | None = None
    """OCI registry where built images are pushed, `HOST:PORT/PREFIX`; without it nothing is built.
    """
    docker_host: str | None = None
    """Docker Engine that builds images; default: `DOCKER_HOST`, as the docker CLI reads it."""
    build_workers: int = 2
    """Images built in parallel."""
    report_dir: str = "drift-report"
    """Directory of the drift report and build logs, relative to the repository."""
    azureml_retries: int = 4
    """Calls per Azure ML request when the service is busy or unreachable (429, 5xx, timeouts,
    dropped connections).
    """
    azureml_backoff: float = 0.5
    """Seconds before the first Azure ML retry; doubles with each retry."""
    azureml_concurrency: int = 16
    """Azure ML calls in flight at once, reads and writes; a throttled service (429 with
    `Retry-After`) holds them all back together."""
    azureml_lock: str = "lease"
    """How writers to an Azure ML workspace take turns: `lease` (a lease on a blob in the
    workspace's default storage, which holds across machines) or `local` (a file lock on this
    machine only)."""
    policy: Policy | None = None  # the `[policy]` table (file only; see core/policy.py)
    consumers: ConsumerSettings | None = None
    """The `[consumers]` table (file only): `include` and `exclude` globs over repository paths
    of the files read for references to environments, and `enabled`."""
    # `reconciler serve`
    listen: str = "127.0.0.1:8080"
    """`serve`: HOST:PORT of the HTTP server (metrics, health, webhook, dashboard); loopback by
    default."""
    unready_after: int = 3
    """`serve`: consecutive failed cycles after which `/readyz` answers 503."""
    branch: str | None = None
    """`serve`: the branch a GitHub push webhook must name to trigger a reconcile (default: the
    current branch)."""
    remote: str = "origin"
    """`serve`: the git remote fetched before each cycle when it exists (`""`: never fetch)."""
    report_url: str | None = None
    """`serve`: where people read the drift report; linked in notifications."""
    notify: tuple[NotifyTarget, ...] = ()
    """`[[notify]]` tables (file only): `url`, `format` (json, slack, teams) and `on` (drift,
    failure, recovery, applied)."""
    targets: Mapping[str, Target] = field(default_factory=dict)
    """The `[targets.NAME]` tables (file only): the registries one repository drives, each a
    stage of promotion; empty: the one `registry`."""

    def for_target(self, name: str) -> Settings:
        """These settings as one target sees them: its registry and its overrides."""
        target = self.targets[name]
        return replace(self, registry=target.registry, **dict(target.overrides))


# Keys settable from the file and the environment, with their parsers.
_KEYS: dict[str, Any] = {
    "path": str,
    "registry": str,
    "include": tuple,
    "exclude": tuple,
    "lock_timeout": float,
    "watch_full_check": float,
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
    "azureml_concurrency": int,
    "azureml_lock": str,
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
    if "consumers" in data:
        out["consumers"] = _consumers(data.pop("consumers"), path)
    if "targets" in data:
        out["targets"] = _targets(data.pop("targets"), path)
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
    from reconciler.core.governance.policy import PolicyError, parse_policy

    try:
        return parse_policy(table)
    except PolicyError as exc:
        raise SettingsError(f"{path}: [policy]: {exc}") from None


def _consumers(table: Any, path: Path) -> ConsumerSettings:
    from reconciler.core.desired.consumers import ConsumerSettingsError, parse_consumers_table

    try:
        return parse_consumers_table(table)
    except ConsumerSettingsError as exc:
        raise SettingsError(f"{path}: [consumers]: {exc}") from None


# Settings a `[targets.NAME]` table may override: what belongs to one registry. The
# desired state (path, file globs) and the repository's identity are shared by all.
_PER_TARGET = frozenset(_KEYS) - {
    "path",
    "include",
    "exclude",
    "cache",
    "owner",
    "report_dir",
    # the service mode runs one process for the repository
    "listen",
    "unready_after",
    "branch",
    "remote",
    "report_url",
}


def _targets(table: Any, path: Path) -> Mapping[str, Target]:
    from reconciler.core.promotion.gate import TARGET_KEYS, TargetError, parse_targets
    from reconciler.core.spec.durations import parse_duration

    def setting(key: str, value: Any, where: str) -> Any:
        if key == "policy":
            return _policy(value, path)
        if key not in _PER_TARGET:
            known = ", ".join(sorted(TARGET_KEYS | _PER_TARGET | {"policy"}))
            raise TargetError(f"{where}: unknown key `{key}` (known: {known})")
        return _coerce(key, value, f"{path}: {where}")

    try:
        return parse_targets(table, setting, parse_duration)
    except TargetError as exc:
        raise SettingsError(f"{path}: {exc}") from None


def _notify(value: Any, path: Path) -> tuple[NotifyTarget, ...]:
    from reconciler.core.loop.notify import NotifyError, parse_targets

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
