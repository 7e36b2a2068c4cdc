"""Wiring: settings -> adapters -> an Engine. The one place that names adapter classes;
the commands get an Engine (and ports) from here.

Adapters are imported when needed, so a command only loads the backends it uses.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli.base import CliError
from reconciler.core.desired.selection import Selection
from reconciler.core.plan.options import PlanOptions
from reconciler.core.spec.registry_url import BadRegistryURL, RegistryURL, parse_registry_url
from reconciler.engine import Engine
from reconciler.ports import Cache, NoCache, Progress, Registry
from reconciler.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from reconciler.engine.build_runner import BuildRunner
    from reconciler.ports import Builder


def settings_of(args: Namespace) -> Settings:
    from reconciler.adapters.worktree import find_repo_root

    if args.repo is not None:
        repo = args.repo.resolve()
        if not repo.is_dir():
            raise CliError(f"--repo {args.repo}: no such directory")
    else:
        found = find_repo_root(Path.cwd())
        if found is None:
            raise CliError("not inside a git repository; pass --repo PATH")
        repo = found
    flags: dict[str, Any] = {"path": args.path, "registry": args.registry}
    for name in ("image_registry", "build_workers"):
        if getattr(args, name, None) is not None:
            flags[name] = getattr(args, name)
    if getattr(args, "lock_timeout", None) is not None:
        flags["lock_timeout"] = args.lock_timeout
    if args.no_cache:
        flags["cache"] = False
    return load_settings(repo, flags)


def registry_url(settings: Settings) -> RegistryURL:
    """The registry URL of the settings, parsed (once per command)."""
    try:
        return parse_registry_url(settings.registry)
    except BadRegistryURL as exc:
        if settings.registry.startswith(("sqlite:///", "azureml://")):
            raise SettingsError(str(exc)) from None
        raise CliError(str(exc)) from None


def state_dir(settings: Settings) -> Path:
    """The repository's `.reconciler/` (caches, inventory, locks, status), ignoring itself."""
    from reconciler.adapters.state_dir import own_directory

    return own_directory(settings.repo / ".reconciler")


def registry(settings: Settings, read_blob: Any = None) -> Registry:
    """The backend of the registry URL; ``read_blob`` supplies build contexts to upload."""
    url = registry_url(settings)
    if url.kind == "sqlite":
        from reconciler.adapters.sqlite_registry import SqliteRegistry

        assert url.path is not None
        path = Path(url.path)
        path = path if path.is_absolute() else settings.repo / path
        from reconciler.adapters.state_dir import own_directory

        own_directory(path.parent)
        return SqliteRegistry(path, url.text)
    from reconciler.adapters.azureml import AzureMLRegistry  # needs the `azure` extra
    from reconciler.adapters.azureml_errors import RetryPolicy

    return AzureMLRegistry(
        url,
        state_dir(settings) / "locks",
        read_blob,
        RetryPolicy(max(1, settings.azureml_retries), settings.azureml_backoff),
    )


def _builder(settings: Settings) -> Builder | None:
    if not settings.image_registry:
        return None
    from reconciler.adapters.docker_builder import DockerBuilder

    return DockerBuilder(settings.image_registry, settings.docker_host)


def _builds(
    settings: Settings, registry: Registry, builder: Builder | None, display: Progress | None
) -> BuildRunner:
    from reconciler.adapters.base_images import BaseImageRegistries
    from reconciler.engine.build_runner import BuildRunner

    log_dir = settings.repo / settings.report_dir / "build-logs"
    return BuildRunner(
        builder,
        registry,
        log_dir,
        settings.build_workers,
        display.note if display is not None else progress,  # a line under the display
        resolve_base=BaseImageRegistries().resolve,
        progress=display,
    )


def progress(line: str) -> None:
    # One plain line per event: readable in a terminal and in CI logs alike.
    sys.stderr.write(f"reconciler: {line}\n")
    sys.stderr.flush()


def engine_for(
    settings: Settings, args: Namespace, builds: bool = False, display: Progress | None = None
) -> Engine:
    """Every port of a command, from its settings and flags. ``builds``: wire the image
    builder and the image lookups drift makes; ``display``: a terminal's progress."""
    from reconciler.adapters.gitsource import GitSource
    from reconciler.adapters.inventory import Inventory

    selection = Selection(settings.path, settings.include, settings.exclude)
    source = GitSource(settings.repo)
    options = PlanOptions(
        owner=settings.owner or source.default_owner(),
        allow_mass_archive=bool(getattr(args, "allow_mass_archive", False)),
        self_heal=bool(getattr(args, "self_heal", False)),
        archive_limit_count=settings.archive_limit_count,
        archive_limit_fraction=settings.archive_limit_fraction,
        retention=settings.policy.retention() if settings.policy is not None else (),
    )
    local = state_dir(settings)
    cache: Cache = NoCache()
    if settings.cache:
        from reconciler.adapters.cache import DiskCache

        cache = DiskCache(local / "cache")
    backend = registry(settings, source.read_blob)
    engine = Engine(
        source,
        backend,
        selection,
        options,
        cache,
        settings.lock_timeout,
        inventory=Inventory(local / "inventory", backend.url),
        policy=settings.policy,
    )
    if display is not None:
        engine.progress = display
    if builds:
        from reconciler.adapters.base_images import BaseImageRegistries

        builder = _builder(settings)
        engine.builds = _builds(settings, backend, builder, display)
        engine.images = builder
        engine.bases = BaseImageRegistries()
    return engine


def registry_engine(settings: Settings) -> Engine:
    """An Engine for the commands that only read the registry (list, show, history,
    evidence): no source is read."""
    from reconciler.adapters.gitsource import GitSource

    selection = Selection(settings.path, settings.include, settings.exclude)
    return Engine(GitSource(settings.repo), registry(settings), selection, policy=settings.policy)
