"""The Prometheus metrics of `serve`, through prometheus_client, in a registry of their
own (nothing of the process-wide default registry leaks in)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reconciler.core.drift.report import DriftClass
from reconciler.core.loop.reconcile_pass import CycleResult

CONTENT_TYPE = CONTENT_TYPE_LATEST
RESULTS = ("in_sync", "applied", "drift", "error")
STATES = ("in_sync", "pending", "drift", "unmanaged")
BUILD_STATUSES = ("built", "failed")
WEBHOOK_RESULTS = (
    "accepted",
    "ignored",
    "ping",
    "unauthorized",
    "too_large",
    "bad_request",
    "disabled",
)
# A reconcile takes milliseconds when nothing changed and minutes with image builds.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series: noise for counters that never reset
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "reconciler_reconcile", "Reconcile cycles by result.", ["result"], registry=r
        )
        self.duration = Histogram(
            "reconciler_reconcile_duration_seconds",
            "Time a reconcile cycle took.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "When the last successful reconcile ended (Unix time).",
            registry=r,
        )
        self.environments = Gauge(
            "reconciler_environments", "Environments by state.", ["state"], registry=r
        )
        self.drift_items = Gauge(
            "reconciler_drift_items", "Drift items by class.", ["class"], registry=r
        )
        self.builds = Counter(
            "reconciler_builds", "Image builds by status.", ["status"], registry=r
        )
        self.registry_requests = Counter(
            "reconciler_registry_requests",
            "Requests to the registry's HTTP API by status code.",
            ["code"],
            registry=r,
        )
        self.webhooks = Counter(
            "reconciler_webhook_deliveries",
            "GitHub webhook deliveries by result.",
            ["result"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "reconciler_consecutive_failures", "Failed cycles since the last success.", registry=r
        )
        self.interval = Gauge(
            "reconciler_interval_seconds", "The configured time between cycles.", registry=r
        )
        self.ready = Gauge("reconciler_ready", "1 when /readyz answers 200.", registry=r)
        # Every label value exists from the start, so rate() and absent() behave.
        for result in RESULTS:
            self.reconciles.labels(result)
        for state in STATES:
            self.environments.labels(state).set(0)
        for cls in DriftClass:
            self.drift_items.labels(cls.value).set(0)
        for status in BUILD_STATUSES:
            self.builds.labels(status)
        for outcome in WEBHOOK_RESULTS:
            self.webhooks.labels(outcome)

    def record_cycle(self, result: CycleResult, ended_at: float) -> None:
        self.reconciles.labels(result.status).inc()
        self.duration.observe(result.seconds)
        if result.ok:
            self.last_success.set(ended_at)
        for status, count in result.build_counts:
            self.builds.labels(status).inc(count)

    def record_environments(self, states: Mapping[str, int], classes: Mapping[str, int]) -> None:
        for state in set(STATES) | set(states):
            self.environments.labels(state).set(states.get(state, 0))
        for cls in {c.value for c in DriftClass} | set(classes):
            self.drift_items.labels(cls).set(classes.get(cls, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
