"""What `serve` knows between cycles, and the wiring of its parts.

The reconcile loop (watch/interval.py) runs on the main thread, as `reconcile --interval`
does, and calls ``Service.observe`` after each cycle. That call does all the work of the
HTTP surface up front: metrics set, notifications queued, the status document built and
rendered once (JSON and HTML). Requests then answer with bytes already made, so
``/metrics``, ``/api/status`` and ``/`` cost the same at 10,000 environments as at ten, and
an idle service does nothing at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import __version__
from reconciler.adapters.notify import Notifier
from reconciler.core.build.jobs import BuildRecord
from reconciler.core.loop.notify import Observation, transitions
from reconciler.core.loop.reconcile_pass import CycleResult
from reconciler.ports import Registry, RegistryError
from reconciler.serve import dashboard, status
from reconciler.serve.metrics import Metrics
from reconciler.serve.webhook import Verdict, judge
from reconciler.watch.control import Wakeup
from reconciler.watch.interval import run_document

RUNS_KEPT = 20


@dataclass(frozen=True)
class ServeConfig:
    listen: str
    interval: float
    branch: str
    unready_after: int
    webhook_secret: bytes
    report_url: str | None
    registry_url: str
    remote: str | None  # fetched before each cycle; None: the working tree as it is
    watch: bool


@dataclass(frozen=True)
class Rendered:
    """The answers of the read endpoints, made once per cycle."""

    status_json: bytes
    dashboard_html: bytes
    ready: bool
    reason: str


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Service:
    def __init__(
        self,
        config: ServeConfig,
        metrics: Metrics,
        notifier: Notifier,
        wakeup: Wakeup,
        engine_registry: Callable[[], Registry],
        open_registry: Callable[[], Registry],
        loop_status: Callable[[], Mapping[str, Any]],
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.notifier = notifier
        self.wakeup = wakeup
        self._engine_registry = engine_registry  # the loop's own: used on the loop thread
        self._open_registry = open_registry  # a fresh one per environment page
        self._loop_status = loop_status
        self.log = log
        self.started_at = _now_iso()
        self.drift: Mapping[str, Any] | None = None  # the last drift report document
        self.runs: deque[dict[str, Any]] = deque(maxlen=RUNS_KEPT)
        self.cycles = 0
        self.failures = 0
        self.last_success_at: str | None = None
        self._previous: Observation | None = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._drift_envs: dict[str, Mapping[str, Any]] = {}
        metrics.interval.set(config.interval)
        self.rendered = self._render(())

    # -- the loop's side -------------------------------------------------------------

    def drift_report(self, document: Mapping[str, Any]) -> None:
        """The drift report document of the cycle in progress."""
        self.drift = document

    def observe(self, result: CycleResult) -> None:
        ended = time.time()
        self.metrics.record_cycle(result, ended)
        self.cycles += 1
        self.failures = 0 if result.ok else self.failures + 1
        if result.ok:
            self.last_success_at = _now_iso()
        self.runs.appendleft(run_document(result))
        builds = self._build_records()
        rows = status.environment_rows(self.drift, builds)
        self._rows = {r["name"]: r for r in rows}
        self._drift_envs = {e["name"]: e for e in (self.drift or {}).get("environments", ())}
        states = Counter(str(r["state"]) for r in rows)
        classes: Counter[str] = Counter(
            i["class"] for e in self._drift_envs.values() for i in e.get("items", ())
        )
        self.metrics.record_environments(states, classes)
        drifted = {r["name"]: tuple(r["classes"]) for r in rows if r["state"] == "drift"}
        if (not result.ok or result.drift is None) and self._previous is not None:
            # A failed cycle, or one that made no drift report, says nothing new of drift.
            drifted = dict(self._previous.drifted)
        now = Observation(
            ok=result.ok,
            drifted=drifted,
            applied=result.applied,
            error=result.message or (result.errors[0] if result.errors else None),
            cycle=result.number,
        )
        self.notifier.notify(transitions(self._previous, now, self.config.report_url))
        self._previous = now
        self.rendered = self._render(rows)

    def _build_records(self) -> dict[tuple[str, str], BuildRecord]:
        registry = self._engine_registry()
        try:
            return registry.build_records()
        except RegistryError as exc:
            self.log(f"build records not read: {exc}")
            return {}
        finally:
            registry.close()

    def _render(self, rows: Sequence[Mapping[str, Any]]) -> Rendered:
        ready, reason = self._readiness()
        self.metrics.ready.set(1 if ready else 0)
        self.metrics.consecutive_failures.set(self.failures)
        loop = self._loop_status()
        document = status.status_document(
            generated_at=_now_iso(),
            service={
                "version": __version__,
                "started_at": self.started_at,
                "listen": self.config.listen,
                "interval": f"{self.config.interval:g}s",
                "interval_seconds": self.config.interval,
                "branch": self.config.branch,
                "remote": self.config.remote,
                "watch": self.config.watch,
                "registry": self.config.registry_url,
                "report_url": self.config.report_url,
                "notify": [t.masked for t in self.notifier.targets],
                "webhook": bool(self.config.webhook_secret),
            },
            health={
                "ready": ready,
                "reason": reason,
                "state": loop.get("state"),
                "cycles": self.cycles,
                "consecutive_failures": self.failures,
                "unready_after": self.config.unready_after,
                "last_success_at": self.last_success_at,
                "next_run_at": loop.get("next_run_at"),
            },
            drift=self.drift,
            rows=rows,
            runs=list(self.runs),
            notifications=[asdict(s) for s in self.notifier.sent],
        )
        return Rendered(
            (json.dumps(document, ensure_ascii=False) + "\n").encode(),
            dashboard.format_dashboard(document).encode(),
            ready,
            reason,
        )

    def _readiness(self) -> tuple[bool, str]:
        if self.cycles == 0:
            return False, "the first reconcile has not ended"
        if self.failures >= self.config.unready_after:
            return False, f"{self.failures} consecutive failed reconciles"
        return True, "ready"

    # -- the HTTP side (any thread) --------------------------------------------------

    def webhook(self, event: str | None, signature: str | None, body: bytes) -> Verdict:
        if not self.config.webhook_secret:
            verdict = Verdict(503, "disabled", "no webhook secret (RECONCILER_WEBHOOK_SECRET)")
        else:
            verdict = judge(self.config.webhook_secret, event, signature, body, self.config.branch)
        self.webhook_result(verdict.result)
        if verdict.trigger is not None:
            self.wakeup.request(verdict.trigger)
        self.log(f"webhook {event or '-'}: {verdict.status} {verdict.message}")
        return verdict

    def webhook_result(self, result: str) -> None:
        self.metrics.webhooks.labels(result).inc()

    def environment(self, name: str) -> dict[str, Any] | None:
        """One environment's document, read from the registry now; None if unknown."""
        registry = self._open_registry()
        try:
            container = registry.get_container(name)
            events = registry.history(name) if container is not None else []
            builds = registry.build_records() if container is not None else {}
        finally:
            registry.close()
        row = self._rows.get(name)
        if container is None and row is None:
            return None
        return status.environment_document(
            name, row, self._drift_envs.get(name), container, events, builds
        )


class Notices:
    """A thread-safe line writer for the worker threads (notifications, webhook)."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        with self._lock:
            self._out(f"{stamp} {line}")
