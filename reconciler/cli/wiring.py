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
    from reconciler.core.desired.consumers import ConsumerSettings
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


# Commands that read the whole registry, never an incremental view of it: a drift report
# and an audit must see hand edits that leave a container's listing unchanged.
FULL_READ_COMMANDS = frozenset({"drift", "reconcile", "evidence"})


def full_read(args: Namespace) -> bool:
    return (
        bool(getattr(args, "refresh", False))
        or bool(getattr(args, "self_heal", False))
        or getattr(args, "command", None) in FULL_READ_COMMANDS
    )


def sqlite_path(settings: Settings) -> Path | None:
    """The embedded registry's file (None: the registry is not the embedded one)."""
    return _sqlite_file(registry_url(settings), settings)


def _sqlite_file(url: RegistryURL, settings: Settings) -> Path | None:
    if url.kind != "sqlite" or url.path is None:
        return None
    path = Path(url.path)
    return path if path.is_absolute() else settings.repo / path


def registry(settings: Settings, read_blob: Any = None, refresh: bool = False) -> Registry:
    """The backend of the registry URL; ``read_blob`` supplies build contexts to upload;
    ``refresh``: read everything, not the incremental view (Azure ML)."""
    url = registry_url(settings)
    path = _sqlite_file(url, settings)
    if path is not None:
        from reconciler.adapters.sqlite_registry import SqliteRegistry
        from reconciler.adapters.state_dir import own_directory

        own_directory(path.parent)
        return SqliteRegistry(path, settings.registry)
    from reconciler.adapters.azureml import AzureMLRegistry  # needs the `azure` extra
    from reconciler.adapters.azureml_errors import RetryPolicy

    state = state_dir(settings)
    return AzureMLRegistry(
        url,
        state / "locks",
        read_blob,
        RetryPolicy(max(1, settings.azureml_retries), settings.azureml_backoff),
        state_dir=state / "azureml" if settings.cache else None,
        concurrency=max(1, settings.azureml_concurrency),
        refresh=refresh,
        lock=settings.azureml_lock,
    )


def consumer_settings(settings: Settings) -> ConsumerSettings:
    """The `[consumers]` settings, with the report directory left out (the tool's own)."""
    from dataclasses import replace

    from reconciler.core.desired.consumers import ConsumerSettings

    chosen = settings.consumers or ConsumerSettings()
    report = settings.report_dir.strip("/")
    if report and not report.startswith(".."):
        chosen = replace(chosen, exclude=(*chosen.exclude, f"{report}/*"))
    return chosen


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
    from reconciler.core.governance.pins import registry_scope

    selection = Selection(settings.path, settings.include, settings.exclude)
    source = GitSource(settings.repo)
    options = PlanOptions(
        owner=settings.owner or source.default_owner(),
        allow_mass_archive=bool(getattr(args, "allow_mass_archive", False)),
        self_heal=bool(getattr(args, "self_heal", False)),
        archive_limit_count=settings.archive_limit_count,
        archive_limit_fraction=settings.archive_limit_fraction,
        retention=settings.policy.retention() if settings.policy is not None else (),
        allow_referenced_archive=bool(getattr(args, "allow_referenced_archive", False)),
        reference_levels=settings.policy.reference_levels() if settings.policy is not None else (),
        registry_scope=registry_scope(settings.registry).scope,
    )
    local = state_dir(settings)
    cache: Cache = NoCache()
    if settings.cache:
        from reconciler.adapters.cache import DiskCache

        cache = DiskCache(local / "cache")
    backend = registry(settings, source.read_blob, full_read(args))
    engine = Engine(
        source,
        backend,
        selection,
        options,
        cache,
        settings.lock_timeout,
        inventory=Inventory(local / "inventory", backend.url),
        policy=settings.policy,
        consumers=consumer_settings(settings),
    )
    if display is not None:
        engine.progress = display
    if builds:
        from reconciler.adapters.base_images import BaseImageRegistries

        builder = _builder(settings)
        engine.builds = _builds(settings, backend, builder, display)
        engine.images = builder
        engine.bases = BaseImageRegistries()
    target = getattr(args, "target_name", None)
    if target is not None:  # one of several targets: it keeps its gate (see cli/targets.py)
        staged(engine, settings, args, target)
    return engine


def staged(engine: Engine, settings: Settings, args: Namespace, name: str) -> None:
    """Give the engine of one target, wired by a single-registry command (watch,
    reconcile), its promotion gate; its upstream registries are read afresh each plan."""
    from reconciler.engine.promote import Stages

    def make(upstream: str) -> Engine:
        plain = Namespace(**{k: v for k, v in vars(args).items() if k != "target_name"})
        return engine_for(settings.for_target(upstream), plain)

    Stages(settings, make, per_run=False).adopt(name, engine)


def registry_engine(settings: Settings) -> Engine:
    """An Engine for the commands that only read the registry (list, show, history): no
    source is read."""
    from reconciler.adapters.gitsource import GitSource

    selection = Selection(settings.path, settings.include, settings.exclude)
    return Engine(GitSource(settings.repo), registry(settings), selection, policy=settings.policy)
