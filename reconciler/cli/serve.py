"""`reconciler serve` and `reconciler notify --test`: options, and the wiring of the
service from the settings (the loop and the HTTP surface live in reconciler/serve/)."""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from reconciler.cli.base import EXIT_ERROR, EXIT_OK, CliError, add_report_options
from reconciler.settings import SETTINGS_FILE, Settings

WEBHOOK_SECRET_VARIABLE = "RECONCILER_WEBHOOK_SECRET"
DEFAULT_INTERVAL = 600.0


def add_parsers(sub: Any, loop_options: Any, duration: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="reconcile on a schedule (and on webhooks) with metrics, health and a dashboard",
    )
    loop_options(p)
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where the HTTP server listens (setting `listen`, default 127.0.0.1:8080)",
    )
    p.add_argument(
        "--interval",
        type=duration,
        default=DEFAULT_INTERVAL,
        help="time between cycles: 30s, 10m, 1h (default 10m, ±10%% jitter)",
    )
    p.add_argument("--watch", action="store_true", help="also reconcile when files change")
    p.add_argument(
        "--debounce",
        type=int,
        default=300,
        metavar="MS",
        help="quiet time after a trigger before reconciling (default 300)",
    )
    p.add_argument("--branch", help="the branch a push webhook must name (default: current)")
    add_report_options(p)

    # The common options (--repo, --json, ...) come with every command's parser.
    p = sub.add_parser("notify", help="send a sample notification to each [[notify]] endpoint")
    p.add_argument("--test", action="store_true", required=True, help="send one sample each")


def _config(args: Namespace, settings: Settings, registry_url: str) -> Any:
    from reconciler.adapters.git_remote import current_branch, has_remote
    from reconciler.core.spec.secrets import mask_text
    from reconciler.serve.http import ListenError, parse_listen
    from reconciler.serve.service import ServeConfig

    listen = args.listen or settings.listen
    try:
        parse_listen(listen)
    except ListenError as exc:
        raise CliError(str(exc)) from None
    branch = args.branch or settings.branch or current_branch(settings.repo)
    if branch is None:
        raise CliError("HEAD is detached: name the tracked branch with --branch or `branch`")
    if settings.unready_after < 1:
        raise CliError("`unready_after` must be at least 1")
    remote = settings.remote if has_remote(settings.repo, settings.remote) else None
    return ServeConfig(
        listen=listen,
        interval=args.interval,
        branch=branch,
        unready_after=settings.unready_after,
        webhook_secret=os.environ.get(WEBHOOK_SECRET_VARIABLE, "").encode(),
        report_url=settings.report_url,
        registry_url=mask_text(registry_url),
        remote=remote,
        watch=args.watch,
    )


def run_serve(args: Namespace) -> int:
    from reconciler.adapters.git_remote import RemoteSync
    from reconciler.cli.drift_report import fail_on_classes, report_dir_of, write_drift_report
    from reconciler.cli.output import print_line
    from reconciler.cli.prepare import command_engine, command_settings
    from reconciler.cli.wiring import registry
    from reconciler.engine import Engine
    from reconciler.serve.http import ListenError
    from reconciler.serve.run import Wiring, serve
    from reconciler.watch.control import Stopper
    from reconciler.watch.interval import StatusFile

    if args.branch is not None:
        args.branch = args.branch.removeprefix("refs/heads/")
    settings = command_settings(args)
    fail_on = fail_on_classes(args)
    report_dir = report_dir_of(args, settings)
    engine = command_engine(settings, args, builds=bool(settings.image_registry))
    config = _config(args, settings, engine.registry.url)

    def report(engine: Engine, ref: str | None) -> tuple[int, dict[str, Any]]:
        document, _ = write_drift_report(engine, settings, ref, report_dir, fail_on)
        drift: int = document["summary"]["drift"] if document["drift_found"] else 0
        return drift, document

    # With a remote, serve reconciles the remote's branch as last fetched (the working tree
    # is left alone), or, with --watch, the working tree fast-forwarded to it.
    prepare = None
    ref = None
    if config.remote is not None:
        sync = RemoteSync(settings.repo, config.remote, config.branch, fast_forward=args.watch)
        ref = None if args.watch else sync.tracking_ref

        def prepare(trigger: str) -> None:
            if trigger.endswith(("file event", "file events")):
                return  # an edit of the working tree: nothing to fetch
            sync.sync()

    status = StatusFile(
        args.status_file or settings.repo / ".reconciler" / "status.json",
        {
            "interval_seconds": config.interval,
            "ref": ref,
            "registry": config.registry_url,
            "report_dir": str(report_dir),
            "branch": config.branch,
            "notify": [t.masked for t in settings.notify],
        },
    )
    root = settings.repo / settings.path
    wiring = Wiring(
        engine,
        report,
        status,
        open_registry=lambda: registry(settings),
        prepare=prepare,
        targets=settings.notify,
        watch_paths=[root if root.is_dir() else settings.repo],
        watch_ignored=[settings.repo / ".git", settings.repo / ".reconciler", report_dir],
        debounce_ms=max(1, args.debounce),
        ref=ref,
    )

    def started(url: str) -> None:
        webhook = "on" if config.webhook_secret else f"off (no ${WEBHOOK_SECRET_VARIABLE})"
        print_line(
            f"serving on {url} (interval {config.interval:g}s, branch {config.branch}, "
            f"webhook {webhook}{', watching files' if config.watch else ''}); "
            "stop with Ctrl-C or SIGTERM"
        )

    with Stopper() as stopper:
        try:
            serve(config, wiring, stopper, print_line, started)
        except ListenError as exc:
            raise CliError(str(exc)) from None
        finally:
            engine.registry.close()
    print_line("stopped")
    return EXIT_OK


def run_notify(args: Namespace) -> int:
    from reconciler.adapters.notify import DeliveryError, deliver
    from reconciler.cli.output import print_json, print_text
    from reconciler.cli.prepare import command_settings
    from reconciler.core.loop.notify import sample

    settings = command_settings(args)
    if not settings.notify:
        raise CliError(f"no [[notify]] endpoints in {settings.repo / SETTINGS_FILE}")
    note = sample(settings.report_url)
    results = []
    for target in settings.notify:
        try:
            attempts = deliver(target, note)
            results.append(
                {
                    "target": target.masked,
                    "format": target.format.value,
                    "ok": True,
                    "attempts": attempts,
                }
            )
        except DeliveryError as exc:
            results.append(
                {
                    "target": target.masked,
                    "format": target.format.value,
                    "ok": False,
                    "error": str(exc),
                }
            )
    if args.json:
        print_json(results)
    else:
        for r in results:
            said = "sent" if r["ok"] else r["error"]
            print_text(f"{r['format']:6} {r['target']}: {said}")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_ERROR
