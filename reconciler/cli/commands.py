"""One function per command: wire adapters from settings, call the engine, render, and
return the exit code. Nothing here decides what to change."""

from __future__ import annotations

import json
import shlex
import sys
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.adapters.report_files import ReportWriteError, write_files
from reconciler.cli.base import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, CliError, color_enabled
from reconciler.cli.wiring import engine_for, registry_engine, settings_of
from reconciler.core.plan.errors import BadPlanFile, StalePlan
from reconciler.engine import ApplyRefused, Engine
from reconciler.ports import BuildError, RegistryError, SourceError
from reconciler.render import text
from reconciler.settings import Settings, SettingsError

if TYPE_CHECKING:
    from reconciler.core.drift.report import DriftClass
    from reconciler.core.plan.types import ApplyOutcome

EXPECTED_ERRORS = (
    CliError,
    SettingsError,
    SourceError,
    RegistryError,
    ApplyRefused,
    BuildError,
    ReportWriteError,
    StalePlan,
    BadPlanFile,
)


def _print(value: str) -> None:
    sys.stdout.write(value + "\n")


def _print_json(value: Any) -> None:
    _print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- commands -----------------------------------------------------------------------------


def run_validate(args: Namespace) -> int:
    settings = settings_of(args)
    engine = engine_for(settings, args)
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
    settings = settings_of(args)
    if (args.base is None) != (args.head is None):
        raise CliError("--base and --head go together (pull request mode)")
    if args.base is not None and (args.ref or args.out):
        raise CliError("--base/--head plan a pull request: not with --ref or --out")
    engine = engine_for(settings, args, builds=True)
    try:
        if args.base is not None:
            document = engine.pull_request_plan(args.base, args.head)
        elif args.out:
            saved = engine.saved_plan(args.ref)
            document = saved["plan"]
            if document["has_errors"]:
                _print(text.format_plan(document, text.Style(color_enabled())))
                raise CliError(f"the plan has errors: {args.out} not written")
            write_files(
                Path(args.out).resolve().parent,
                {Path(args.out).name: json.dumps(saved, indent=1, ensure_ascii=False) + "\n"},
            )
        else:
            document = engine.plan_document(args.ref)
    finally:
        engine.registry.close()
    if args.markdown:
        from reconciler.render.markdown import format_plan_markdown

        markdown = format_plan_markdown(document)
        if args.markdown == "-":
            _print(markdown)
        else:
            target = Path(args.markdown).resolve()
            write_files(target.parent, {target.name: markdown})
    if args.markdown == "-":
        pass  # stdout is the comment
    elif args.json:
        _print_json(document)
    else:
        _print(text.format_plan(document, text.Style(color_enabled())))
    if document["has_errors"]:
        return EXIT_ERROR
    return EXIT_CHANGES if document["has_changes"] else EXIT_OK


def run_apply(args: Namespace) -> int:
    settings = settings_of(args)
    if args.plan_file and (args.ref or args.self_heal or args.allow_mass_archive):
        raise CliError(
            "a saved plan is applied as it is: no --ref, --self-heal or "
            "--allow-mass-archive (give them to `plan --out`)"
        )
    engine = engine_for(settings, args, builds=True)
    style = text.Style(color_enabled())
    try:
        if args.plan_file:
            outcome = engine.apply_saved(_read_plan_file(args.plan_file), args.plan_file)
        else:
            outcome = engine.apply(args.ref)
    except ApplyRefused as refused:
        if refused.plan is None:
            raise
        # The plan the refusal was made with (inside the lock), not a second one.
        from reconciler.documents.plan import plan_document

        document = plan_document(refused.plan, engine.registry.url, settings.path)
        if args.json:  # one JSON document on stdout, the error in it
            _print_json({"applied": [], "failed": [], "plan": document, "error": str(refused)})
        else:
            _print(text.format_plan(document, style))
        sys.stderr.write(f"error: {refused}\n")
        return EXIT_ERROR
    finally:
        engine.registry.close()
    return _report_apply(outcome, args, style)


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


def _read_plan_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot read the saved plan: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not a saved plan (invalid JSON: {exc})") from None


def _report_apply(outcome: ApplyOutcome, args: Namespace, style: text.Style) -> int:
    from reconciler.documents.apply import apply_document

    document = apply_document(outcome)
    builds = document["builds"]
    if args.json:
        _print_json(document)
    else:
        for line in text.format_diagnostics(document["diagnostics"], style):
            _print(line)
        failed = [
            ({k: v for k, v in c.items() if k != "error"}, c["error"]) for c in document["failed"]
        ]
        _print(text.format_apply(document["applied"], failed, style))
        if builds is not None:
            _print(text.format_builds(builds))
    if not outcome.ok:
        return EXIT_ERROR
    if args.require_builds and builds is not None and builds["unavailable"]:
        return EXIT_ERROR
    return EXIT_OK


def _fail_on(args: Namespace) -> frozenset[DriftClass]:
    from reconciler.core.drift.report import DEFAULT_FAIL_ON, parse_classes

    try:
        return DEFAULT_FAIL_ON if args.fail_on is None else parse_classes(args.fail_on)
    except ValueError as exc:
        raise CliError(f"--fail-on: {exc}") from None


def _report_dir(args: Namespace, settings: Settings) -> Path:
    given = getattr(args, "report_dir", None)
    return Path(given) if given else settings.repo / settings.report_dir


def _write_drift_report(
    engine: Engine,
    settings: Settings,
    ref: str | None,
    report_dir: Path,
    fail_on: frozenset[DriftClass],
) -> tuple[dict[str, Any], list[Path]]:
    """Make the drift report and write its three files, each atomically."""
    from datetime import UTC, datetime

    from reconciler.documents.drift import report_document
    from reconciler.render.html import format_html
    from reconciler.render.markdown import format_markdown

    try:
        report = engine.drift(ref, fail_on)
    finally:
        engine.registry.close()
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    document = report_document(report, engine.registry.url, settings.path, ref, generated)
    files = {
        "drift-report.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        "drift-report.md": format_markdown(document),
        "drift-report.html": format_html(document),
    }
    return document, write_files(report_dir, files)


def run_drift(args: Namespace) -> int:
    from reconciler.render.markdown import format_annotations

    settings = settings_of(args)
    fail_on = _fail_on(args)
    engine = engine_for(settings, args, builds=True)
    document, written = _write_drift_report(
        engine, settings, args.ref, _report_dir(args, settings), fail_on
    )
    if args.github_annotations:
        for line in format_annotations(document):
            _print(line)
    if args.json:
        _print_json(document)
    else:
        _print(text.format_drift(document, text.Style(color_enabled())))
        _print(f"Report: {', '.join(str(p) for p in written)}")
    if document["has_errors"]:
        return EXIT_ERROR
    return EXIT_CHANGES if document["drift_found"] else EXIT_OK


def run_build(args: Namespace) -> int:
    settings = settings_of(args)
    engine = engine_for(settings, args, builds=True)
    name, _, version = args.target.partition(":")
    try:
        outcome = engine.build(name, version or None, args.ref)
    finally:
        engine.registry.close()
    from reconciler.documents.apply import builds_document

    builds = builds_document(outcome)
    assert builds is not None
    if args.json:
        _print_json(builds)
    else:
        _print(text.format_builds(builds))
    return EXIT_OK if outcome.ok else EXIT_ERROR


def _name_version(target: str) -> tuple[str, str]:
    name, _, version = target.partition(":")
    if not name or not version:
        raise CliError(f"{target!r}: name a version, as NAME:VERSION")
    return name, version


def run_diff(args: Namespace) -> int:
    left = _name_version(args.left)
    right = _name_version(args.right) if args.right else None
    if right is not None and args.ref:
        raise CliError("--ref compares with git: give one NAME:VERSION, not two")
    settings = settings_of(args)
    engine = engine_for(settings, args)
    try:
        document = engine.version_diff(left, right, args.ref)
    finally:
        engine.registry.close()
    if args.json:
        _print_json(document)
    else:
        _print(text.format_version_diff(document))
    return EXIT_OK if document["identical"] else EXIT_CHANGES


def run_list(args: Namespace) -> int:
    from reconciler.documents.inspect import list_document
    from reconciler.engine import inspect

    engine = registry_engine(settings_of(args))
    try:
        rows = list_document(inspect.containers(engine), args.include_archived)
    finally:
        engine.registry.close()
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


def run_show(args: Namespace) -> int:
    from reconciler.documents.inspect import show_document
    from reconciler.engine import inspect

    engine = registry_engine(settings_of(args))
    name, _, version = args.target.partition(":")
    try:
        container, records = inspect.container(engine, name)
    finally:
        engine.registry.close()
    document = show_document(container, records, version or None)
    if document is None:
        raise CliError(f"no version {name}:{version} in {engine.registry.url}")
    if args.json:
        _print_json(document)
    else:
        _print(text.format_mapping(document))
    return EXIT_OK


def run_evidence(args: Namespace) -> int:
    from datetime import UTC, datetime

    from reconciler.engine import inspect
    from reconciler.render.evidence import format_evidence_markdown

    engine = registry_engine(settings_of(args))
    try:
        document = inspect.evidence(engine, datetime.now(UTC))
    finally:
        engine.registry.close()
    written = write_files(
        Path(args.out).resolve(),
        {
            "evidence.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
            "evidence.md": format_evidence_markdown(document),
        },
    )
    if args.json:
        _print_json(document)
    else:
        summary = document["summary"]
        _print(
            f"Evidence: {summary['environments']} environment(s), {summary['versions']} "
            f"version(s): {', '.join(str(p) for p in written)}"
        )
    return EXIT_OK


def run_history(args: Namespace) -> int:
    from reconciler.documents.inspect import history_document
    from reconciler.engine import inspect

    engine = registry_engine(settings_of(args))
    try:
        container, events = inspect.history(engine, args.name)
    finally:
        engine.registry.close()
    document = history_document(args.name, container, events)
    if args.json:
        _print_json(document)
        return EXIT_OK
    _print(text.format_history(document))
    return EXIT_OK


def run_emulator(args: Namespace) -> int:
    """Serve until interrupted; print what a client needs first."""
    from reconciler.emulator.faults import FaultSpecError, parse_fault
    from reconciler.emulator.server import client_settings, start

    faults = []
    for spec in args.fault:
        try:
            faults.append(parse_fault(json.loads(spec)))
        except (json.JSONDecodeError, FaultSpecError) as exc:
            raise CliError(f"--fault {spec}: {exc}") from None
    if args.latency_ms < 0:
        raise CliError(f"--latency-ms {args.latency_ms:g}: must be zero or more")
    if args.rate_limit is not None and args.rate_limit <= 0:
        raise CliError(f"--rate-limit {args.rate_limit:g}: must be more than zero")
    running = start(
        args.db.resolve(),
        args.port,
        token=args.token,
        page_size=max(1, args.page_size),
        verbose=args.verbose,
        background=False,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
    )
    for fault in faults:
        running.emulator.faults.add(fault)
    settings = client_settings(running)
    _print(f"Azure ML emulator on {running.endpoint} (registry {args.db})")
    if args.latency_ms or args.rate_limit:
        limit = f"{args.rate_limit:g} requests/s" if args.rate_limit else "none"
        _print(f"Added latency: {args.latency_ms:g} ms; rate limit: {limit}")
    _print(f"CA bundle: {running.tls.ca}")
    _print("Point a client at it with:")
    for name, value in settings.items():
        _print(f"export {name}={shlex.quote(value)}")
    _print("Registry URL example: azureml://subscriptions/s/resourceGroups/r/workspaces/w")
    sys.stdout.flush()
    try:
        running.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        running.server.server_close()
        running.emulator.store.registry.close()
    return EXIT_OK


# -- long-running reconcilers ---------------------------------------------------------------


def _line(value: str) -> None:
    sys.stdout.write(value + "\n")
    sys.stdout.flush()  # one line per reconcile, visible at once in a pipe or a log


def run_watch(args: Namespace) -> int:
    from reconciler.settings import SETTINGS_FILE
    from reconciler.watch.control import Stopper
    from reconciler.watch.files import FileWatch, WatchTarget

    def setup() -> WatchTarget:
        settings = settings_of(args)
        # Builds as in apply, when an image registry is configured (else: registering only).
        engine = engine_for(settings, args, builds=bool(settings.image_registry))
        root = settings.repo / engine.selection.root
        settings_file = settings.repo / SETTINGS_FILE
        paths = [root if root.is_dir() else settings.repo]
        if settings_file.is_file():
            paths.append(settings_file)
        return WatchTarget(
            engine,
            paths,
            ignored=[
                settings.repo / ".git",
                settings.repo / ".reconciler",
                _report_dir(args, settings),
            ],
            settings_files=[settings_file],
        )

    with Stopper() as stopper:
        _line(f"watching (debounce {args.debounce} ms); stop with Ctrl-C or SIGTERM")
        FileWatch(setup, stopper, _line, args.debounce).run()
    _line("stopped")
    return EXIT_OK


def run_reconcile(args: Namespace) -> int:
    from reconciler.watch.control import Stopper
    from reconciler.watch.interval import IntervalLoop, StatusFile

    if args.interval is None and not args.once:
        raise CliError("give --interval DURATION (e.g. 10m), or --once for a single cycle")
    settings = settings_of(args)
    fail_on = _fail_on(args)
    report_dir = _report_dir(args, settings)
    engine = engine_for(settings, args, builds=bool(settings.image_registry))
    status_path = args.status_file or settings.repo / ".reconciler" / "status.json"

    def report(engine: Engine, ref: str | None) -> int:
        document, _ = _write_drift_report(engine, settings, ref, report_dir, fail_on)
        drift: int = document["summary"]["drift"] if document["drift_found"] else 0
        return drift

    interval = args.interval or 0.0
    status = StatusFile(
        status_path,
        {
            "interval_seconds": interval or None,
            "ref": args.ref,
            "registry": engine.registry.url,
            "report_dir": str(report_dir),
        },
    )
    with Stopper() as stopper:
        loop = IntervalLoop(engine, report, status, stopper, _line, interval, args.ref)
        try:
            last = loop.run(once=args.once)
        finally:
            engine.registry.close()
    if not args.once:
        _line("stopped")
        return EXIT_OK
    if last is None or not last.ok:
        return EXIT_ERROR
    return EXIT_CHANGES if last.drift else EXIT_OK
