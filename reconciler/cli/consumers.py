"""`refs` and `bump`: who uses each environment, and moving stale pins to the version git
makes latest. Parsing here is light; the wiring is imported when a command runs."""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.cli.base import EXIT_CHANGES, EXIT_ERROR, EXIT_OK


def add_consumer_commands(sub: Any) -> None:
    """`refs` and `bump` (``sub`` adds the common options to each)."""
    p = sub.add_parser("refs", help="files in the repository that use each environment")
    p.add_argument("target", nargs="?", metavar="NAME[:VERSION]", help="one environment")
    p.add_argument("--ref", help="read git at this commit, branch or tag (default: working tree)")
    p.set_defaults(run=run_refs)

    p = sub.add_parser(
        "bump", help="move stale pins to the version git makes latest; exit 2 if any moved"
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these environments")
    p.add_argument(
        "--to",
        default="latest",
        metavar="latest|VERSION",
        help="the version to pin (default: the one git makes latest)",
    )
    p.add_argument("--dry-run", action="store_true", help="print a unified diff, change nothing")
    p.add_argument("--include-code", action="store_true", help="also edit .py and .ipynb files")
    p.set_defaults(run=run_bump)


def _planned(args: argparse.Namespace, ref: str | None) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(engine, settings, plan, desired state, registry state, the registry's scope)."""
    from reconciler.cli.prepare import command_engine, command_settings
    from reconciler.core.governance.pins import Scope

    settings = command_settings(args)
    engine = command_engine(settings, args)
    try:
        plan, desired, state = engine.plan_with_state(ref)
    finally:
        engine.registry.close()
    if desired.consumers is None:
        from reconciler.cli.base import CliError

        raise CliError("consumers are not scanned: `[consumers] enabled = false`")
    return engine, settings, plan, desired, state, Scope(engine.options.registry_scope)


def _created(plan: Any) -> dict[str, str]:
    return {
        c.name: c.version
        for c in plan.changes
        if c.action.value in ("create", "new_version") and c.version is not None
    }


# -- refs -----------------------------------------------------------------------------------


def run_refs(args: argparse.Namespace) -> int:
    from reconciler.cli.output import print_json, print_text
    from reconciler.core.governance.documents import refs_document

    only = None
    if args.target:
        name, _, version = args.target.partition(":")
        only = (name, version or None)
    engine, _, plan, desired, state, scope = _planned(args, args.ref)
    document = refs_document(
        desired.consumers, desired, state, _created(plan), scope, engine.registry.url, only
    )
    if args.json:
        print_json(document)
    else:
        print_text(format_refs(document))
    return EXIT_OK


def _where(ref: dict[str, Any]) -> str:
    key = f"  {ref['key_path']}" if ref.get("key_path") else ""
    return f"{ref['path']}:{ref['line']}:{ref['column']}  {ref['form']}{key}"


def format_refs(document: dict[str, Any]) -> str:
    lines: list[str] = []
    quiet = 0
    for env in document["environments"]:
        if not env["consumers"] and len(document["environments"]) > 1:
            quiet += 1
            continue
        where = "git" if env["in_git"] else "registry only"
        latest = f", latest {env['latest']}" if env["latest"] else ""
        stale = f", {env['stale']} stale" if env["stale"] else ""
        lines.append(f"{env['name']} ({where}{latest}): {env['consumers']} consumer(s){stale}")
        for row in env["versions"]:
            marks = [
                m for m, on in (("latest", row["latest"]), ("archived", row["archived"])) if on
            ]
            if not row["registered"]:
                marks.append("not registered")
            shown = f" ({', '.join(marks)})" if marks else ""
            lines.append(f"  {row['version']}{shown}")
            lines.extend(f"    {_where(r)}" for r in row["references"])
        if env["floating"]:
            lines.append("  @latest")
            lines.extend(f"    {_where(r)}" for r in env["floating"])
    if quiet:
        lines.append(f"{quiet} environment(s) in git with no consumer")
    for title, key in (
        ("unknown (neither in git nor in the registry)", "unknown"),
        ("other registries", "external"),
        ("inline environments (not tracked by the registry)", "inline"),
    ):
        if document[key]:
            lines.append(f"{title}:")
            lines.extend(
                f"  {r.get('name') or ''} {_where(r)}".replace("   ", " ") for r in document[key]
            )
    if document["unreadable"]:
        lines.append("unreadable:")
        lines.extend(f"  {u['path']}: {u['reason']}" for u in document["unreadable"])
    lines.append(f"{document['files_scanned']} consumer file(s) scanned")
    return "\n".join(lines)


# -- bump -----------------------------------------------------------------------------------


def run_bump(args: argparse.Namespace) -> int:
    from reconciler.cli.base import CliError
    from reconciler.cli.output import print_json, print_text
    from reconciler.core.governance.pins import latest_versions, plan_bumps

    engine, settings, plan, desired, state, _ = _planned(args, None)
    if plan.has_errors:
        raise CliError("the plan has errors (see `reconciler plan`): nothing bumped")
    created = _created(plan)
    latest = latest_versions(desired, state, created)
    names = args.names or sorted({n for n in desired.consumers.names() if n in latest})
    targets: dict[str, str] = {}
    for name in names:
        if name not in latest:
            raise CliError(f"no environment {name!r} in git or in {engine.registry.url}")
        if args.to == "latest":
            targets[name] = latest[name]
            continue
        container = state.containers.get(name)
        if (container is None or container.get(args.to) is None) and created.get(name) != args.to:
            raise CliError(f"{name}:{args.to} is not registered (and the plan does not create it)")
        targets[name] = args.to
    if args.to != "latest" and not args.names:
        raise CliError("--to VERSION needs the environment: bump NAME --to VERSION")
    bumps, skipped = plan_bumps(desired.consumers, targets, args.include_code)
    results, errors = _edit_files(settings.repo, bumps, dry_run=args.dry_run)
    document = {
        "dry_run": args.dry_run,
        "bumped": [
            {
                "path": b.reference.path,
                "line": b.reference.line,
                "column": b.reference.column,
                "name": b.reference.name,
                "from": b.reference.version,
                "to": b.to,
                "key_path": b.reference.key_path,
            }
            for b in bumps
            if b.reference.path not in errors
        ],
        "skipped": [
            {"path": s.reference.path, "line": s.reference.line, "reason": s.reason}
            for s in skipped
        ],
        "errors": [{"path": path, "error": error} for path, error in sorted(errors.items())],
    }
    if args.json:
        print_json(document)
    else:
        if args.dry_run:
            for diff in results:
                print_text(diff.rstrip("\n"))
        verb = "would move" if args.dry_run else "moved"
        print_text(f"{verb} {len(document['bumped'])} pin(s) in {len(results)} file(s)")
        for s in document["skipped"]:
            print_text(f"skipped {s['path']}:{s['line']}: {s['reason']}")
        for e in document["errors"]:
            print_text(f"error: {e['path']}: {e['error']}")
    if errors:
        return EXIT_ERROR
    return EXIT_CHANGES if document["bumped"] else EXIT_OK


def _edit_files(repo: Any, bumps: list[Any], dry_run: bool) -> tuple[list[str], dict[str, str]]:
    """Apply the edits file by file; a file whose edit cannot be confirmed is left as it
    is. Returns (unified diffs, or the paths written; errors by path)."""
    import difflib

    from reconciler.adapters.report_files import ReportWriteError, replace_file
    from reconciler.core.desired.consumers import is_code
    from reconciler.core.governance.pins import BumpError, apply_bumps, check_yaml_bumps

    by_path: dict[str, list[Any]] = {}
    for bump in bumps:
        by_path.setdefault(bump.reference.path, []).append(bump)
    done: list[str] = []
    errors: dict[str, str] = {}
    for path, edits in sorted(by_path.items()):
        target = repo / path
        try:
            before = target.read_bytes().decode("utf-8")
            after = apply_bumps(before, edits)
        except (OSError, UnicodeDecodeError, BumpError) as exc:
            errors[path] = str(exc)
            continue
        if not is_code(path):
            problem = check_yaml_bumps(before, after, edits)
            if problem is not None:
                errors[path] = problem
                continue
        if dry_run:
            done.append(
                "".join(
                    difflib.unified_diff(
                        before.splitlines(keepends=True),
                        after.splitlines(keepends=True),
                        f"a/{path}",
                        f"b/{path}",
                    )
                )
            )
            continue
        try:
            replace_file(target, after.encode("utf-8"))
        except ReportWriteError as exc:
            errors[path] = str(exc)
            continue
        done.append(path)
    return done, errors
