"""One function per command: wire adapters from settings, call the engine, render, and
return the exit code. Nothing here decides what to change."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.adapters.cache import DiskCache
from reconciler.adapters.gitsource import GitSource, find_repo_root
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.cli import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, CliError, color_enabled
from reconciler.core.options import PlanOptions
from reconciler.core.selection import Selection
from reconciler.engine import ApplyRefused, Engine, MemoStore
from reconciler.ports import BuildError, RegistryError, SourceError
from reconciler.render import text
from reconciler.settings import Settings, SettingsError, load_settings, registry_location

if TYPE_CHECKING:
    from reconciler.build_runner import BuildOutcome, BuildRunner
    from reconciler.core.build import BuildRecord
    from reconciler.core.model import RegisteredContainer, RegisteredVersion

EXPECTED_ERRORS = (CliError, SettingsError, SourceError, RegistryError, ApplyRefused, BuildError)


# -- wiring -------------------------------------------------------------------------------


def _settings(args: Namespace) -> Settings:
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


def _registry(settings: Settings) -> SqliteRegistry:
    url = settings.registry
    if url.startswith("sqlite:///"):
        path = registry_location(url, settings.repo)
        if path.parent.name == ".reconciler" and not path.parent.exists():
            path.parent.mkdir(parents=True)
            (path.parent / ".gitignore").write_text("*\n")  # local state, never committed
        return SqliteRegistry(path, url)
    if url.startswith("azureml://"):
        raise CliError(
            f"{url}: the Azure ML backend is not available in this version; use a "
            "sqlite:/// registry"
        )
    raise CliError(f"unsupported registry URL {url!r}: expected sqlite:///PATH or azureml://...")


def _builds(settings: Settings, registry: SqliteRegistry) -> BuildRunner:
    from reconciler.build_runner import BuildRunner

    builder = None
    if settings.image_registry:
        from reconciler.adapters.docker_builder import DockerBuilder

        builder = DockerBuilder(settings.image_registry, settings.docker_host)
    log_dir = settings.repo / settings.report_dir / "build-logs"
    return BuildRunner(builder, registry, log_dir, settings.build_workers, _progress)


def _progress(line: str) -> None:
    # One plain line per event: readable in a terminal and in CI logs alike.
    sys.stderr.write(f"reconciler: {line}\n")
    sys.stderr.flush()


def _engine(settings: Settings, args: Namespace, builds: bool = False) -> Engine:
    selection = Selection(settings.path, settings.include, settings.exclude)
    source = GitSource(settings.repo)
    options = PlanOptions(
        owner=settings.owner or source.default_owner(),
        allow_mass_archive=bool(getattr(args, "allow_mass_archive", False)),
        archive_limit_count=settings.archive_limit_count,
        archive_limit_fraction=settings.archive_limit_fraction,
    )
    cache: MemoStore = MemoStore()
    if settings.cache:
        cache = DiskCache(settings.repo / ".reconciler" / "cache")  # type: ignore[assignment]
    registry = _registry(settings)
    return Engine(
        source,
        registry,
        selection,
        options,
        cache,
        settings.lock_timeout,
        builds=_builds(settings, registry) if builds else None,
    )


def _print(value: str) -> None:
    sys.stdout.write(value + "\n")


def _print_json(value: Any) -> None:
    _print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- commands -----------------------------------------------------------------------------


def run_validate(args: Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings, args)
    only = None
    if args.files:
        only = []
        for file in args.files:
            full = file.resolve()
            try:
                only.append(full.relative_to(settings.repo).as_posix())
            except ValueError:
                raise CliError(f"{file}: outside the repository {settings.repo}") from None
    state = engine.desired(None, only)
    diagnostics = [d.to_dict() for d in state.diagnostics]
    valid = sorted(state.environments)
    if args.json:
        _print_json(
            {"valid": not state.has_errors, "environments": valid, "diagnostics": diagnostics}
        )
    else:
        style = text.Style(color_enabled())
        for line in text.format_diagnostics(diagnostics, style):
            _print(line)
        errors = sum(1 for d in diagnostics if d["severity"] == "error")
        _print(
            f"{len(valid)} environment(s) valid, {errors} error(s) in {state.candidates} "
            "file(s) checked."
        )
    return EXIT_ERROR if state.has_errors else EXIT_OK


def run_plan(args: Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings, args, builds=True)
    try:
        document = engine.plan_document(args.ref)
    finally:
        engine.registry.close()
    if args.json:
        _print_json(document)
    else:
        _print(text.format_plan(document, text.Style(color_enabled())))
    if document["has_errors"]:
        return EXIT_ERROR
    return EXIT_CHANGES if document["has_changes"] else EXIT_OK


def run_apply(args: Namespace) -> int:
    from reconciler.core.document import plan_document

    settings = _settings(args)
    engine = _engine(settings, args, builds=True)
    style = text.Style(color_enabled())
    try:
        try:
            outcome = engine.apply(args.ref)
        except ApplyRefused as refused:
            document = engine.plan_document(args.ref)
            if args.json:  # one JSON document on stdout, the error in it
                _print_json({"applied": [], "failed": [], "plan": document, "error": str(refused)})
            else:
                _print(text.format_plan(document, style))
            sys.stderr.write(f"error: {refused}\n")
            return EXIT_ERROR
    finally:
        engine.registry.close()
    document = plan_document(outcome.plan, engine.registry.url, settings.path)
    by_key = {(c["name"], c["action"], c["version"]): c for c in document["changes"]}

    def doc(change: Any) -> dict[str, Any]:
        found: dict[str, Any] = by_key[(change.name, change.action.value, change.version)]
        return found

    applied = [doc(c) for c in outcome.applied]
    failed = [(doc(c), error) for c, error in outcome.failed]
    builds = _builds_document(outcome.builds)
    if args.json:
        _print_json(
            {
                "applied": applied,
                "failed": [dict(c, error=e) for c, e in failed],
                "drift": document["drift"],
                "diagnostics": document["diagnostics"],
                "builds": builds,
            }
        )
    else:
        for line in text.format_diagnostics(document["diagnostics"], style):
            _print(line)
        _print(text.format_apply(applied, failed, style))
        if builds is not None:
            _print(text.format_builds(builds))
    if not outcome.ok:
        return EXIT_ERROR
    if args.require_builds and builds is not None and builds["unavailable"]:
        return EXIT_ERROR
    return EXIT_OK


def _builds_document(outcome: BuildOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None

    def rows(records: list[BuildRecord]) -> list[dict[str, Any]]:
        return [
            {"name": r.name, "version": r.version, "digest": r.digest, **r.to_dict()}
            for r in records
        ]

    return {
        "built": rows(outcome.built),
        "cache_hits": rows(outcome.cache_hits),
        "failed": rows(outcome.failed),
        "waiting": rows(outcome.waiting),
        "not_built": rows(outcome.not_built),
        "unavailable": outcome.unavailable,
        "builds_run": outcome.builds_run,
    }


def run_build(args: Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings, args, builds=True)
    name, _, version = args.target.partition(":")
    try:
        outcome = engine.build(name, version or None, args.ref)
    finally:
        engine.registry.close()
    builds = _builds_document(outcome)
    assert builds is not None
    if args.json:
        _print_json(builds)
    else:
        _print(text.format_builds(builds))
    return EXIT_OK if outcome.ok else EXIT_ERROR


def _container_row(container: RegisteredContainer) -> dict[str, Any]:
    newest = container.newest
    return {
        "name": container.name,
        "latest_version": newest.version if newest else None,
        "versions": len(container.versions),
        "archived": container.archived,
        "managed": container.managed,
        "source_path": container.owner_path(),
    }


def run_list(args: Namespace) -> int:
    settings = _settings(args)
    registry = _registry(settings)
    try:
        state = registry.read_state()
    finally:
        registry.close()
    rows = [
        _container_row(c)
        for c in state.containers.values()
        if args.include_archived or not c.archived
    ]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    table = [
        [
            r["name"],
            str(r["latest_version"]),
            str(r["versions"]),
            "archived" if r["archived"] else "active",
            "managed" if r["managed"] else "unmanaged",
            r["source_path"] or "",
        ]
        for r in rows
    ]
    _print(text.format_table(["NAME", "LATEST", "VERSIONS", "STATE", "OWNER", "SOURCE"], table))
    return EXIT_OK


def _version_doc(version: RegisteredVersion, container: RegisteredContainer) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "description": version.description,
        "tags": dict(version.tags),
        "archived": version.archived or container.archived,
        "created_at": version.created_at,
        "datastore": version.datastore,
        "managed": version.managed,
        "provenance": {"commit": version.source_commit, "path": version.source_path},
        "content": dict(version.content) if version.content is not None else None,
    }


def run_show(args: Namespace) -> int:
    settings = _settings(args)
    registry = _registry(settings)
    name, _, version = args.target.partition(":")
    try:
        container = registry.get_container(name)
        build_records = registry.build_records()
    finally:
        registry.close()
    if container is None:
        raise CliError(f"no environment {name!r} in {registry.url}")
    records = {k: r.to_dict() for k, r in build_records.items()}
    if version:
        found = container.get(version)
        if found is None:
            raise CliError(f"no version {name}:{version} in {registry.url}")
        document: dict[str, Any] = _version_doc(found, container)
        document["build"] = records.get((name, version))
    else:
        newest = container.newest
        document = _container_row(container)
        document["latest"] = _version_doc(newest, container) if newest else None
        if newest is not None:
            document["latest"]["build"] = records.get((name, newest.version))
    if args.json:
        _print_json(document)
    else:
        _print(_format_mapping(document))
    return EXIT_OK


def _format_mapping(value: dict[str, Any], indent: int = 0) -> str:
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            lines.append(_format_mapping(item, indent + 1))
        else:
            shown = json.dumps(item, ensure_ascii=False) if not isinstance(item, str) else item
            lines.append(f"{pad}{key}: {shown}")
    return "\n".join(lines)


def run_history(args: Namespace) -> int:
    settings = _settings(args)
    registry = _registry(settings)
    try:
        container = registry.get_container(args.name)
        events = registry.history(args.name)
    finally:
        registry.close()
    if container is None:
        raise CliError(f"no environment {args.name!r} in {registry.url}")
    versions = [_version_doc(v, container) for v in container.versions]
    if args.json:
        _print_json(
            {
                "name": args.name,
                "archived": container.archived,
                "versions": [{k: v for k, v in d.items() if k != "content"} for d in versions],
                "events": events,
            }
        )
        return EXIT_OK
    rows = [
        [
            d["version"],
            d["created_at"][:19],
            "archived" if d["archived"] else "active",
            (d["provenance"]["commit"] or "")[:12],
            d["provenance"]["path"] or "",
            (d["digest"] or "")[7:19],
        ]
        for d in versions
    ]
    _print(text.format_table(["VERSION", "CREATED", "STATE", "COMMIT", "SOURCE", "DIGEST"], rows))
    if events:
        _print("")
        _print(
            text.format_table(
                ["AT", "VERSION", "EVENT"],
                [[e["at"][:19], e["version"] or "-", e["action"]] for e in events],
            )
        )
    return EXIT_OK
