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
from reconciler.adapters.state_dir import own_directory
from reconciler.cli.base import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, CliError
from reconciler.cli.drift_report import (
    fail_on_classes,
    report_dir_of,
    write_drift_report,
)
from reconciler.cli.output import (
    PLAIN,
    json_text,
    print_json,
    print_line,
    print_text,
    terminal,
)
from reconciler.cli.output import close_terminal as close_terminal  # the entry point's
from reconciler.cli.prepare import command_engine, command_settings
from reconciler.cli.wiring import progress, registry_engine, sqlite_path, state_dir
from reconciler.core.plan.errors import BadPlanFile, StalePlan
from reconciler.engine import ApplyRefused, Engine
from reconciler.ports import BuildError, Registry, RegistryError, SourceError
from reconciler.render import text
from reconciler.settings import SettingsError

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildOutcome
    from reconciler.core.plan.types import ApplyOutcome
    from reconciler.engine.plan import Validity
    from reconciler.settings import Settings
    from reconciler.watch.files import WatchTarget

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


# -- commands -----------------------------------------------------------------------------


def run_validate(args: Namespace) -> int:
    settings = command_settings(args)
    engine = command_engine(settings, args)
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
    state.diagnostics.extend(engine.reference_findings(state))
    diagnostics = [d.to_dict() for d in state.diagnostics]
    valid = sorted(state.environments)
    if args.json:
        print_json(
            {"valid": not state.has_errors, "environments": valid, "diagnostics": diagnostics}
        )
    else:
        errors = sum(1 for d in diagnostics if d["severity"] == "error")
        summary = (
            f"{len(valid)} environment(s) valid, {errors} error(s) in {state.candidates} "
            "file(s) checked."
        )
        screen = terminal(args)
        if screen is not None:
            screen.validation(diagnostics, summary)
        else:
            for line in text.format_diagnostics(diagnostics, PLAIN):
                print_text(line)
            print_text(summary)
    return EXIT_ERROR if state.has_errors else EXIT_OK


def run_plan(args: Namespace) -> int:
    settings = command_settings(args)
    if (args.base is None) != (args.head is None):
        raise CliError("--base and --head go together (pull request mode)")
    if args.base is not None and (args.ref or args.out):
        raise CliError("--base/--head plan a pull request: not with --ref or --out")
    engine = command_engine(settings, args, builds=True)
    validity: Validity | None = None
    try:
        if args.base is not None:
            document = engine.pull_request_plan(args.base, args.head)
        elif args.out:
            saved = engine.saved_plan(args.ref)
            document = saved["plan"]
            if document["has_errors"]:
                _show_plan(args, document)
                raise CliError(f"the plan has errors: {args.out} not written")
            write_files(
                Path(args.out).resolve().parent,
                {Path(args.out).name: json.dumps(saved, indent=1, ensure_ascii=False) + "\n"},
            )
        else:
            document, validity = engine.checked_plan_document(args.ref)
        _note_read(document, engine.registry)
    finally:
        engine.registry.close()
        _note_throttling(engine.registry)
    if args.markdown:
        from reconciler.render.markdown import format_plan_markdown

        markdown = format_plan_markdown(document)
        if args.markdown == "-":
            print_text(markdown)
        else:
            target = Path(args.markdown).resolve()
            write_files(target.parent, {target.name: markdown})
    if document["has_errors"]:
        code = EXIT_ERROR
    else:
        code = EXIT_CHANGES if document["has_changes"] else EXIT_OK
    output: str | None = None
    if args.markdown == "-":
        pass  # stdout is the comment
    elif args.json:
        output = json_text(document)
        print_text(output)
    else:
        output = _show_plan(args, document)
    if output is not None and validity is not None and not args.markdown:
        _keep_answer(args, settings, document, validity, code, output + "\n")
    return code


def _keep_answer(
    args: Namespace,
    settings: Settings,
    document: dict[str, Any],
    validity: Validity,
    code: int,
    output: str,
) -> None:
    """Record this plan's answer for replay (cli/replay.py), when a replay can check all
    it depends on: the embedded registry, no targets, no image predictions (they depend
    on an OCI registry's content), the caches on, nothing said on stderr."""
    replay = getattr(args, "replay", None)
    if replay is None:
        return
    answer, stderr = replay
    token = document["registry"].get("state_token")
    database = sqlite_path(settings)
    if (
        stderr.written
        or database is None
        or token is None
        or settings.targets
        or settings.image_registry
        or not settings.cache
    ):
        return
    answer.record(
        str(database), token, args.ref, validity.fingerprint, validity.watch, code, output
    )


def _show_plan(args: Namespace, document: dict[str, Any]) -> str | None:
    """Show the plan: drawn on the terminal (None), or printed as plain text (returned)."""
    screen = terminal(args)
    if screen is not None:
        screen.plan(document)
        return None
    plain = text.format_plan(document, PLAIN)
    print_text(plain)
    return plain


def _note_read(document: dict[str, Any], registry: Registry) -> None:
    """Say how the registry was read (Azure ML: a full read or the incremental view)."""
    report = registry.last_read
    if report is not None:
        document["registry"]["read"] = report.to_dict()


def _note_throttling(registry: Registry) -> None:
    """Tell how long the service's throttling held the run (Azure ML), on stderr."""
    throttle = registry.throttle
    if throttle is not None and throttle.throttled:
        progress(
            f"the service throttled {throttle.throttled} call(s); waited {throttle.held:.1f}s "
            "on throttling in all"
        )


def run_apply(args: Namespace) -> int:
    settings = command_settings(args)
    if args.plan_file and (args.ref or args.self_heal or args.allow_mass_archive):
        raise CliError(
            "a saved plan is applied as it is: no --ref, --self-heal or "
            "--allow-mass-archive (give them to `plan --out`)"
        )
    engine = command_engine(settings, args, builds=True)
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
            print_json({"applied": [], "failed": [], "plan": document, "error": str(refused)})
        else:
            _show_plan(args, document)
        sys.stderr.write(f"error: {refused}\n")
        return EXIT_ERROR
    finally:
        engine.registry.close()
        _note_throttling(engine.registry)
    return _report_apply(outcome, args)


def _read_plan_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot read the saved plan: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not a saved plan (invalid JSON: {exc})") from None


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


def apply_document(outcome: ApplyOutcome, registry_url: str, path: str) -> dict[str, Any]:
    """What `apply --json` prints (see documents/apply.py); for each target of several."""
    from reconciler.documents.apply import apply_document as document_of

    return document_of(outcome)


def print_apply(document: dict[str, Any], style: text.Style) -> None:
    for line in text.format_diagnostics(document["diagnostics"], style):
        print_text(line)
    failed = [(_without(c, "error"), c["error"]) for c in document["failed"]]
    print_text(text.format_apply(document["applied"], failed, style))
    for change in document.get("deferred", ()):
        print_text(f"  deferred {change['action']} {change['name']}: {change['deferred']}")
    if document["builds"] is not None:
        print_text(text.format_builds(document["builds"]))


def _report_apply(outcome: ApplyOutcome, args: Namespace) -> int:
    from reconciler.documents.apply import apply_document

    document = apply_document(outcome)
    builds = document["builds"]
    if args.json:
        print_json(document)
    elif (screen := terminal(args)) is not None:
        failed = [(_without(c, "error"), c["error"]) for c in document["failed"]]
        screen.apply(document["diagnostics"], document["applied"], failed, builds)
        for change in document.get("deferred", ()):
            print_text(f"  deferred {change['action']} {change['name']}: {change['deferred']}")
    else:
        print_apply(document, PLAIN)
    if not outcome.ok:
        return EXIT_ERROR
    if args.require_builds and builds is not None and builds["unavailable"]:
        return EXIT_ERROR
    return EXIT_OK


def _builds_document(outcome: BuildOutcome | None) -> dict[str, Any] | None:
    from reconciler.documents.apply import builds_document

    return builds_document(outcome)


def run_drift(args: Namespace) -> int:
    from reconciler.render.markdown import format_annotations

    settings = command_settings(args)
    fail_on = fail_on_classes(args)
    engine = command_engine(settings, args, builds=True)
    document, written = write_drift_report(
        engine, settings, args.ref, report_dir_of(args, settings), fail_on
    )
    if args.github_annotations:
        for line in format_annotations(document):
            print_text(line)
    if args.json:
        print_json(document)
    elif (screen := terminal(args)) is not None:
        screen.drift(document, written)
    else:
        print_text(text.format_drift(document, PLAIN))
        print_text(f"Report: {', '.join(str(p) for p in written)}")
    if document["has_errors"]:
        return EXIT_ERROR
    return EXIT_CHANGES if document["drift_found"] else EXIT_OK


def run_build(args: Namespace) -> int:
    settings = command_settings(args)
    engine = command_engine(settings, args, builds=True)
    name, _, version = args.target.partition(":")
    try:
        outcome = engine.build(name, version or None, args.ref)
    finally:
        engine.registry.close()
    builds = _builds_document(outcome)
    assert builds is not None
    if args.json:
        print_json(builds)
    elif (screen := terminal(args)) is not None:
        screen.builds(builds)
    else:
        print_text(text.format_builds(builds))
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
    settings = command_settings(args)
    engine = command_engine(settings, args)
    try:
        document = engine.version_diff(left, right, args.ref)
    finally:
        engine.registry.close()
    if args.json:
        print_json(document)
    else:
        print_text(text.format_version_diff(document))
    return EXIT_OK if document["identical"] else EXIT_CHANGES


def run_list(args: Namespace) -> int:
    from reconciler.documents.inspect import list_document

    engine = registry_engine(command_settings(args))
    try:
        state = engine.containers()
    finally:
        engine.registry.close()
    rows = list_document(state, args.include_archived)
    if args.json:
        print_json(rows)
        return EXIT_OK
    table = text.list_rows(rows)
    screen = terminal(args)
    if screen is not None:
        screen.table(
            text.LIST_HEADERS, table, title=f"Environments in {engine.registry.url}", states=3
        )
    else:
        print_text(text.format_table(text.LIST_HEADERS, table))
    return EXIT_OK


def run_show(args: Namespace) -> int:
    from reconciler.documents.inspect import show_document

    engine = registry_engine(command_settings(args))
    name, _, version = args.target.partition(":")
    try:
        container, build_records = engine.container(name)
    finally:
        engine.registry.close()
    document = show_document(container, build_records, version or None)
    if document is None:
        raise CliError(f"no version {name}:{version} in {engine.registry.url}")
    if args.json:
        print_json(document)
    elif (screen := terminal(args)) is not None:
        screen.mapping(document, title=args.target)
    else:
        print_text(text.format_mapping(document))
    return EXIT_OK


def run_evidence(args: Namespace) -> int:
    from datetime import UTC, datetime

    from reconciler.render.evidence import format_evidence_markdown

    settings = command_settings(args)
    engine = command_engine(settings, args)  # `evidence` reads the whole registry, never a view
    try:
        consumers = engine.desired(None).consumers  # the working tree's references
        document = engine.evidence(datetime.now(UTC), consumers)
    finally:
        engine.registry.close()
    registry = engine.registry
    written = write_files(
        Path(args.out).resolve(),
        {
            "evidence.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
            "evidence.md": format_evidence_markdown(document),
        },
    )
    if args.json:
        print_json(document)
    elif (screen := terminal(args)) is not None:
        summary = document["summary"]
        screen.table(
            ["ITEM", "COUNT"],
            [[str(k).replace("_", " "), _count(v)] for k, v in summary.items()],
            title=f"Evidence: {registry.url}",
        )
        screen.files("Written", written)
    else:
        summary = document["summary"]
        print_text(
            f"Evidence: {summary['environments']} environment(s), {summary['versions']} "
            f"version(s): {', '.join(str(p) for p in written)}"
        )
    return EXIT_OK


def _count(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "0"
    return str(value)


def run_history(args: Namespace) -> int:
    from reconciler.documents.inspect import history_document

    engine = registry_engine(command_settings(args))
    try:
        container, events = engine.history(args.name)
    finally:
        engine.registry.close()
    document = history_document(args.name, container, events)
    if args.json:
        print_json(document)
        return EXIT_OK
    screen = terminal(args)
    if screen is None:
        print_text(text.format_history(document))
        return EXIT_OK
    versions, event_rows = text.history_rows(document)
    screen.table(text.HISTORY_HEADERS, versions, title=f"{args.name}: versions", states=2)
    if event_rows:
        screen.table(text.EVENT_HEADERS, event_rows, title=f"{args.name}: events")
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
    own_directory(args.db.resolve().parent)  # the CA's key and the blobs: never committed
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
    print_text(f"Azure ML emulator on {running.endpoint} (registry {args.db})")
    if args.latency_ms or args.rate_limit:
        limit = f"{args.rate_limit:g} requests/s" if args.rate_limit else "none"
        print_text(f"Added latency: {args.latency_ms:g} ms; rate limit: {limit}")
    print_text(f"CA bundle: {running.tls.ca}")
    print_text("Point a client at it with:")
    for name, value in settings.items():
        print_text(f"export {name}={shlex.quote(value)}")
    print_text("Registry URL example: azureml://subscriptions/s/resourceGroups/r/workspaces/w")
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


def watch_target(args: Namespace) -> WatchTarget:
    """What `watch` watches and reconciles with, from the settings as they are now."""
    from reconciler.settings import SETTINGS_FILE
    from reconciler.watch.files import WatchTarget

    settings = command_settings(args)
    # Builds as in apply, when an image registry is configured (else: registering only).
    engine = command_engine(settings, args, builds=bool(settings.image_registry))
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
            report_dir_of(args, settings),
        ],
        settings_files=[settings_file],
        repo=settings.repo,
        full_check_seconds=settings.watch_full_check,
    )


def run_watch(args: Namespace) -> int:
    from reconciler.watch.control import Stopper
    from reconciler.watch.files import FileWatch

    with Stopper() as stopper:
        print_line(f"watching (debounce {args.debounce} ms); stop with Ctrl-C or SIGTERM")
        FileWatch(lambda: watch_target(args), stopper, print_line, args.debounce).run()
    print_line("stopped")
    return EXIT_OK


def run_reconcile(args: Namespace) -> int:
    from reconciler.watch.control import Stopper
    from reconciler.watch.interval import IntervalLoop, StatusFile

    if args.interval is None and not args.once:
        raise CliError("give --interval DURATION (e.g. 10m), or --once for a single cycle")
    settings = command_settings(args)
    fail_on = fail_on_classes(args)
    report_dir = report_dir_of(args, settings)
    engine = command_engine(settings, args, builds=bool(settings.image_registry))
    status_path = args.status_file or state_dir(settings) / "status.json"

    def report(engine: Engine, ref: str | None) -> int:
        document, _ = write_drift_report(engine, settings, ref, report_dir, fail_on)
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
        loop = IntervalLoop(engine, report, status, stopper, print_line, interval, args.ref)
        try:
            last = loop.run(once=args.once)
        finally:
            engine.registry.close()
    if not args.once:
        print_line("stopped")
        return EXIT_OK
    if last is None or not last.ok:
        return EXIT_ERROR
    return EXIT_CHANGES if last.drift else EXIT_OK


# -- shell completion -----------------------------------------------------------------------

# Which arguments complete as directories and which as files (shtab's hints, by shell).
_DIRECTORY_ARGS = frozenset({"repo", "path", "report_dir"})
_FILE_ARGS = frozenset({"files", "plan_file", "markdown", "status_file", "db"})


def run_completion(args: Namespace) -> int:
    """The completion script, generated from the argument parser itself (shtab)."""
    import argparse

    import shtab

    parser: argparse.ArgumentParser = args.parser
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for each in parsers:
        for action in each._actions:
            if action.dest in _DIRECTORY_ARGS:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
            elif action.dest in _FILE_ARGS or (action.dest == "out" and each.prog.endswith("plan")):
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    print_text(shtab.complete(parser, shell=args.shell))
    return EXIT_OK
