"""`serve` put together: the interval loop on the main thread with the service observing
it, the HTTP server, the notification worker and, with ``--watch``, a file watcher, each
on a thread of its own. A stop signal ends the loop's sleep; the cycle in progress ends,
then the server, the watcher and the notifier are stopped in turn."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.adapters.azureml_client import observe_responses
from reconciler.adapters.notify import Notifier
from reconciler.core.loop.notify import NotifyTarget
from reconciler.engine import Engine
from reconciler.ports import Registry
from reconciler.serve.http import HttpServer
from reconciler.serve.metrics import Metrics
from reconciler.serve.service import Notices, ServeConfig, Service
from reconciler.watch.control import Stopper, Wakeup
from reconciler.watch.files import DEFAULT_DEBOUNCE_MS, file_events
from reconciler.watch.interval import DriftReporter, IntervalLoop, StatusFile

DocumentReporter = Callable[[Engine, str | None], tuple[int, dict[str, object]]]


@dataclass
class Wiring:
    engine: Engine
    report: DocumentReporter  # writes the drift report; (environments with drift, document)
    status: StatusFile
    open_registry: Callable[[], Registry]
    prepare: Callable[[str], None] | None  # before each cycle (fetching the remote)
    targets: tuple[NotifyTarget, ...]
    watch_paths: list[Path] = field(default_factory=list)
    watch_ignored: list[Path] = field(default_factory=list)
    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    ref: str | None = None


def serve(
    config: ServeConfig,
    wiring: Wiring,
    stopper: Stopper,
    out: Callable[[str], None],
    started: Callable[[str], None] | None = None,
) -> None:
    notices = Notices(out)
    metrics = Metrics()
    # Requests of an Azure ML registry, by status code (a SQLite registry makes none).
    observe_responses(lambda code: metrics.registry_requests.labels(str(code)).inc())
    wakeup = Wakeup(stopper, debounce=wiring.debounce_ms / 1000)
    notifier = Notifier(wiring.targets, notices)
    engine = wiring.engine
    service = Service(
        config,
        metrics,
        notifier,
        wakeup,
        lambda: engine.registry,
        wiring.open_registry,
        lambda: wiring.status.document,
        notices,
    )

    def report(engine: Engine, ref: str | None) -> int:
        drift, document = wiring.report(engine, ref)
        service.drift_report(document)
        return drift

    reporter: DriftReporter = report
    loop = IntervalLoop(
        engine,
        reporter,
        wiring.status,
        stopper,
        out,
        config.interval,
        wiring.ref,
        wakeup=wakeup,
        prepare=wiring.prepare,
        observe=service.observe,
    )
    server = HttpServer(config.listen, service)
    watcher: threading.Thread | None = None
    watching = threading.Event()
    if config.watch and wiring.watch_paths:

        def watch() -> None:
            for count in file_events(
                wiring.watch_paths,
                wiring.watch_ignored,
                stopper.event,
                wiring.debounce_ms,
                watching,
            ):
                wakeup.request(f"{count} file event{'s' if count > 1 else ''}")

        watcher = threading.Thread(target=watch, name="watch", daemon=True)
    server.start()
    notifier.start()
    wiring.status.update(listen=server.url)
    if started is not None:
        started(server.url)
    if watcher is not None:
        watcher.start()
        # The first cycle reads the files once the watcher is up, so no edit falls between.
        while not watching.wait(0.05) and watcher.is_alive() and not stopper.stopped:
            pass
    try:
        loop.run()
    finally:
        server.close()
        stopper.stop()  # ends the watcher too
        if watcher is not None:
            watcher.join(5)
        notifier.close()
