"""Commands over several targets: choose the targets, run each in gate order, gather one
document with a section per target (the single-target document plus `target` and
`registry`), and map the outcomes to one exit code.

With no `[targets]` in reconciler.toml, or an explicit `--registry` (one ad-hoc target),
every command runs exactly as it does for one registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from argparse import Namespace
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.adapters.report_files import write_files
from reconciler.cli import commands as single
from reconciler.cli.base import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, CliError
from reconciler.cli.drift_report import fail_on_classes, report_dir_of
from reconciler.cli.output import PLAIN, print_json, print_text, terminal
from reconciler.cli.prepare import command_engine, command_settings
from reconciler.engine.promote import Stages, StagesError, TargetResult, chosen_targets
from reconciler.render import text
from reconciler.settings import Settings

TARGETS_FORMAT_VERSION = 1

# Commands that never read a registry or a repository's settings.
_NO_SETTINGS = frozenset({"emulator", "completion"})


def dispatch(args: Namespace) -> int:
    """Run the command for the targets it names (or all of them), or as today."""
    command = args.command
    if command in _NO_SETTINGS:
        return int(getattr(single, "run_" + command)(args))
    settings = command_settings(args)
    names = getattr(args, "targets", None)
    if names and not settings.targets:
        raise CliError(f"--target {names[0]}: reconciler.toml has no [targets]")
    if names and args.registry:
        raise CliError("--registry names one ad-hoc registry: not with --target")
    if command == "workflows":
        return run_workflows(args, settings)
    if not settings.targets or args.registry:
        if command == "status":
            return run_status(args, _one_target(settings), ("default",))
        return int(getattr(single, "run_" + command)(args))
    try:
        chosen = chosen_targets(settings, names)
    except StagesError as exc:
        raise CliError(str(exc)) from None
    handler = _MULTI.get(command, _fan_out)
    return handler(args, settings, chosen)


def _one_target(settings: Settings) -> Settings:
    """The single registry of settings without `[targets]`, as a target named `default`."""
    from reconciler.core.promotion.gate import Target

    return replace(settings, targets={"default": Target("default", settings.registry)})


def _stages(args: Namespace, settings: Settings, builds: bool) -> Stages:
    def make(name: str) -> Any:
        target_settings = settings.for_target(name)
        with_builds = builds and (args.command != "watch" or bool(target_settings.image_registry))
        return command_engine(target_settings, args, builds=with_builds)

    return Stages(settings, make)


def _exit(codes: Iterable[int]) -> int:
    found = set(codes)
    if EXIT_ERROR in found:
        return EXIT_ERROR
    return EXIT_CHANGES if EXIT_CHANGES in found else EXIT_OK


def targets_document(command: str, sections: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One document for several targets (schema: schemas/targets.schema.json)."""
    return {
        "format_version": TARGETS_FORMAT_VERSION,
        "kind": "targets",
        "command": command,
        "targets": sections,
        **extra,
    }


def _section(result: TargetResult, document: Any) -> dict[str, Any]:
    """A target's single-target document with `target` and `registry` (a document whose
    `registry` is already an object keeps it)."""
    section = dict(document) if isinstance(document, Mapping) else {"items": document}
    section["target"] = result.target
    section.setdefault("registry", result.registry)
    return section


def _error_section(result: TargetResult) -> dict[str, Any]:
    return {"target": result.target, "registry": result.registry, "error": result.error}


def _header(result: TargetResult) -> str:
    return f"== target {result.target} ({result.registry}) =="


def _print_error(result: TargetResult) -> None:
    sys.stderr.write(f"error: target {result.target}: {result.error}\n")


# -- plan -----------------------------------------------------------------------------------


def run_plan(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    if (args.base is None) != (args.head is None):
        raise CliError("--base and --head go together (pull request mode)")
    if args.out and len(chosen) > 1:
        raise CliError("--out saves one target's plan: name it with --target")
    stages = _stages(args, settings, builds=True)
    results: list[TargetResult] = []
    try:
        if args.out:
            return _save_plan(args, stages, chosen[0])
        if args.base is not None:
            for name in chosen:
                engine = stages.engine(name)
                try:
                    document = engine.pull_request_plan(args.base, args.head)
                except single.EXPECTED_ERRORS as exc:
                    results.append(TargetResult(name, engine.registry.url, error=str(exc)))
                    continue
                results.append(TargetResult(name, engine.registry.url, document=document))
        else:
            results = list(stages.plans(chosen, args.ref))
    finally:
        stages.close()
    sections = [
        _section(r, r.document) if r.document is not None else _error_section(r) for r in results
    ]
    if args.markdown:
        from reconciler.core.promotion.gate import predict_landing
        from reconciler.render.promotion import format_targets_plan_markdown

        soaks = {n: _duration(t.soak) for n, t in settings.targets.items()}
        markdown = format_targets_plan_markdown(sections, predict_landing(sections, soaks))
        if args.markdown == "-":
            print_text(markdown)
        else:
            out = Path(args.markdown).resolve()
            write_files(out.parent, {out.name: markdown})
    if args.markdown == "-":
        pass
    elif args.json:
        print_json(_one_or_all("plan", sections))
    else:
        style = PLAIN
        for result in results:
            print_text(_header(result))
            if result.document is None:
                _print_error(result)
            else:
                print_text(text.format_plan(result.document, style))
            print_text("")
    codes = []
    for result in results:
        if result.document is None or result.document["has_errors"]:
            codes.append(EXIT_ERROR)
        elif result.document["has_changes"]:
            codes.append(EXIT_CHANGES)
    return _exit(codes)


def _save_plan(args: Namespace, stages: Stages, name: str) -> int:
    """`plan --out` for one target, the gate applied: what waits is not in the file."""
    engine = stages.engine(name)
    saved = engine.saved_plan(args.ref)
    document = saved["plan"]
    document["target"] = name
    style = PLAIN
    if document["has_errors"]:
        print_text(text.format_plan(document, style))
        raise CliError(f"the plan has errors: {args.out} not written")
    out = Path(args.out).resolve()
    write_files(out.parent, {out.name: json.dumps(saved, indent=1, ensure_ascii=False) + "\n"})
    if args.json:
        print_json(document)
    else:
        print_text(text.format_plan(document, style))
    return EXIT_CHANGES if document["has_changes"] else EXIT_OK


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _one_or_all(command: str, sections: list[dict[str, Any]]) -> dict[str, Any]:
    """One target: its own document (with `target`); several: one document of sections."""
    if len(sections) == 1:
        return sections[0]
    return targets_document(command, sections)


# -- apply ----------------------------------------------------------------------------------


def run_apply(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    if args.plan_file:
        if len(chosen) != 1:
            raise CliError("a saved plan is for one target: name it with --target")
        args.target_name = chosen[0]
        return single.run_apply(args)
    stages = _stages(args, settings, builds=True)
    style = PLAIN
    sections: list[dict[str, Any]] = []
    codes: list[int] = []
    try:
        for result in stages.apply(chosen, args.ref):
            if result.outcome is None:
                codes.append(EXIT_ERROR)
                section = _error_section(result)
                if result.refused is not None and result.refused.plan is not None:
                    section["diagnostics"] = [d.to_dict() for d in result.refused.plan.diagnostics]
                sections.append(section)
                if not args.json:
                    print_text(_header(result))
                    for line in text.format_diagnostics(section.get("diagnostics", ()), style):
                        print_text(line)
                    _print_error(result)
                continue
            document = single.apply_document(result.outcome, result.registry, settings.path)
            sections.append(_section(result, document))
            builds = document["builds"]
            unavailable = args.require_builds and builds is not None and builds["unavailable"]
            codes.append(EXIT_OK if result.outcome.ok and not unavailable else EXIT_ERROR)
            if not args.json:
                print_text(_header(result))
                single.print_apply(document, style)
                print_text("")
    finally:
        stages.close()
    if args.json:
        print_json(_one_or_all("apply", sections))
    return _exit(codes)


# -- drift, with the promotion matrix ----------------------------------------------------------


def run_drift(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    from datetime import UTC, datetime

    from reconciler.core.promotion.status import matrix, status_document
    from reconciler.documents.drift import report_document
    from reconciler.render.markdown import format_annotations
    from reconciler.render.promotion import format_targets_html, format_targets_markdown

    fail_on = fail_on_classes(args)
    report_dir = report_dir_of(args, settings)
    stages = _stages(args, settings, builds=True)
    sections: list[dict[str, Any]] = []
    codes: list[int] = []
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        for name in chosen:
            engine = stages.engine(name)
            result = TargetResult(name, engine.registry.url)
            try:
                report = engine.drift(args.ref, fail_on)
            except single.EXPECTED_ERRORS as exc:
                result.error = str(exc)
                sections.append(_error_section(result))
                codes.append(EXIT_ERROR)
                continue
            document = report_document(
                report, engine.registry.url, settings.path, args.ref, generated
            )
            sections.append(_section(result, document))
            codes.append(
                EXIT_ERROR
                if document["has_errors"]
                else EXIT_CHANGES
                if document["drift_found"]
                else EXIT_OK
            )
        views = [stages.view(name, args.ref) for name in chosen]
    finally:
        stages.close()
    registries = {name: settings.for_target(name).registry for name in chosen}
    status = status_document(matrix(views), registries)
    combined = targets_document("drift", sections, generated_at=generated, status=status)
    written = write_files(
        report_dir,
        {
            "drift-report.json": json.dumps(combined, indent=2, ensure_ascii=False) + "\n",
            "drift-report.md": format_targets_markdown(combined),
            "drift-report.html": format_targets_html(combined),
        },
    )
    if args.github_annotations:
        for section in sections:
            if "environments" in section:
                for line in format_annotations(section):
                    print_text(line)
    if args.json:
        print_json(combined)
    else:
        style = PLAIN
        for section in sections:
            registry = section["registry"]
            url = registry["url"] if isinstance(registry, Mapping) else registry
            print_text(f"== target {section['target']} ({url}) ==")
            if "error" in section:
                print_text(f"error: {section['error']}")
            else:
                print_text(text.format_drift(section, style))
        print_text("")
        from reconciler.render.promotion import format_status

        print_text(format_status(status))
        print_text(f"Report: {', '.join(str(p) for p in written)}")
    return _exit(codes)


# -- status ---------------------------------------------------------------------------------


def run_status(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    from reconciler.core.promotion.status import matrix, status_document
    from reconciler.render.promotion import format_status

    stages = _stages(args, settings, builds=True)
    try:  # in gate order: each target's gate sees the registries read before it
        views = [stages.view(name, args.ref) for name in chosen]
    finally:
        stages.close()
    registries = {name: settings.for_target(name).registry for name in chosen}
    grid = matrix(views)
    document = status_document(grid, registries)
    if args.json:
        print_json(document)
    else:
        print_text(format_status(document, rich=terminal(args) is not None))
    if grid.has_unknown:
        return EXIT_ERROR
    return EXIT_OK if grid.in_sync else EXIT_CHANGES


# -- evidence, with where each version was promoted from -----------------------------------


def run_evidence(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    from datetime import UTC, datetime

    from reconciler.core.promotion.gate import promotions
    from reconciler.render.evidence import format_evidence_markdown
    from reconciler.render.promotion import format_promotions_markdown

    now = datetime.now(UTC)
    out = Path(args.out).resolve()
    sections: list[dict[str, Any]] = []
    states: dict[str, Any] = {}
    codes: list[int] = []
    closure = gate_closure(settings, chosen)
    stages = _stages(args, settings, builds=False)
    try:
        # The working tree's references, read once: git is the same for every target.
        consumers = stages.engine(closure[0]).desired(None).consumers
        for name in closure:
            engine = stages.engine(name)
            result = TargetResult(name, engine.registry.url)
            try:
                # One read of each registry: for its own evidence, and for the promotions
                # of the targets after it.
                state = engine.containers()
                document = engine.evidence(now, consumers, state) if name in chosen else None
            except single.EXPECTED_ERRORS as exc:
                result.error = str(exc)
                if name in chosen:
                    sections.append(_error_section(result))
                    codes.append(EXIT_ERROR)
                continue
            states[name] = state
            if document is not None:
                sections.append(_section(result, document))
    finally:
        stages.close()
    for section in sections:
        if "error" in section:
            continue
        target = settings.targets[section["target"]]
        section["promotions"] = promotions(section["target"], target.after, states)
    files: dict[str, str] = {}
    for section in sections:
        if "error" in section:
            continue
        prefix = f"{section['target']}/"
        files[prefix + "evidence.json"] = json.dumps(section, indent=2, ensure_ascii=False) + "\n"
        files[prefix + "evidence.md"] = format_evidence_markdown(
            section
        ) + format_promotions_markdown(section)
    combined = targets_document(
        "evidence", sections, generated_at=now.isoformat(timespec="seconds")
    )
    files["evidence.json"] = json.dumps(combined, indent=2, ensure_ascii=False) + "\n"
    written = []
    for relative, content in files.items():
        where = out / relative
        written += write_files(where.parent, {where.name: content})
    if args.json:
        print_json(combined)
    else:
        for section in sections:
            if "error" in section:
                print_text(f"error: target {section['target']}: {section['error']}")
                continue
            summary = section["summary"]
            print_text(
                f"Evidence for {section['target']}: {summary['environments']} environment(s), "
                f"{summary['versions']} version(s), {len(section['promotions'])} promoted"
            )
        print_text(f"Written: {out}")
    return _exit(codes)


def gate_closure(settings: Settings, chosen: Iterable[str]) -> tuple[str, ...]:
    """``chosen`` and every target they wait for, in gate order."""
    from reconciler.core.promotion.gate import gate_order

    wanted = set(chosen)
    grew = True
    while grew:
        more = {u for n in wanted for u in settings.targets[n].after} - wanted
        grew = bool(more)
        wanted |= more
    return tuple(n for n in gate_order(settings.targets) if n in wanted)


# -- the reconcile workflow --------------------------------------------------------------------


def run_workflows(args: Namespace, settings: Settings) -> int:
    from reconciler.core.promotion.gate import gate_order
    from reconciler.render.workflows import WORKFLOW_PATH, reconcile_workflow

    order = gate_order(settings.targets)
    targets = settings.targets
    content = reconcile_workflow([(n, targets[n].after, targets[n].registry) for n in order])
    path = settings.repo / WORKFLOW_PATH
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == content:
            print_text(f"{WORKFLOW_PATH}: matches reconciler.toml")
            return EXIT_OK
        print_text(f"{WORKFLOW_PATH}: differs from reconciler.toml; run `reconciler workflows`")
        return EXIT_CHANGES
    write_files(path.parent, {path.name: content})
    print_text(f"wrote {WORKFLOW_PATH}")
    return EXIT_OK


# -- every other command: once per target ------------------------------------------------------


def _fan_out(args: Namespace, settings: Settings, chosen: tuple[str, ...]) -> int:
    """Run a single-registry command once per target; JSON output gathered into one
    document with a section per target."""
    run: Callable[[Namespace], int] = getattr(single, "run_" + args.command)
    if args.command == "validate":  # git only: the same for every target
        return run(args)
    if args.command in ("watch", "reconcile") and len(chosen) > 1:
        raise CliError(
            f"`{args.command}` runs for one target at a time: name it with --target "
            "(one process per target; `apply` walks every target in gate order)"
        )
    codes: list[int] = []
    sections: list[dict[str, Any]] = []
    for name in chosen:
        args.target_name = name
        registry = settings.for_target(name).registry
        result = TargetResult(name, registry)
        if not args.json:
            if len(chosen) > 1:
                print_text(_header(result))
            try:
                codes.append(run(args))
            except single.EXPECTED_ERRORS as exc:
                result.error = str(exc)
                _print_error(result)
                codes.append(EXIT_ERROR)
            continue
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                codes.append(run(args))
        except single.EXPECTED_ERRORS as exc:
            result.error = str(exc)
            sections.append(_error_section(result))
            codes.append(EXIT_ERROR)
            continue
        sections.append(_section(result, json.loads(captured.getvalue())))
    if args.json:
        print_json(_one_or_all(args.command, sections))
    return _exit(codes)


_MULTI: dict[str, Callable[[Namespace, Settings, tuple[str, ...]], int]] = {
    "plan": run_plan,
    "apply": run_apply,
    "drift": run_drift,
    "status": run_status,
    "evidence": run_evidence,
}
