"""Notifications: where they go (``[[notify]]`` in reconciler.toml) and when they are due.

A notification is sent on a *transition* of the service, never once per cycle: the
registry went from in sync to drift, reconciling went from ok to failing or back, or a
cycle applied something. Deciding that is a pure function of the previous and the current
observation; sending is the adapter's job (adapters/notify.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.spec.secrets import MASK


class NotifyError(ValueError):
    pass


class Event(StrEnum):
    DRIFT = "drift"  # in sync -> drift
    FAILURE = "failure"  # ok -> failing
    RECOVERY = "recovery"  # failing -> ok
    APPLIED = "applied"  # a cycle wrote something


class Format(StrEnum):
    JSON = "json"
    SLACK = "slack"
    TEAMS = "teams"


DEFAULT_EVENTS = (Event.DRIFT, Event.FAILURE, Event.RECOVERY)


def mask_url(url: str) -> str:
    """Scheme and host only: webhook URLs carry their token in the path or the query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    tail = "/" + MASK if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{tail}"


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    url: str
    format: Format = Format.JSON
    on: frozenset[Event] = frozenset(DEFAULT_EVENTS)

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def wants(self, event: Event) -> bool:
        return event in self.on


def parse_targets(value: Any) -> tuple[NotifyTarget, ...]:
    """The ``[[notify]]`` array of tables; NotifyError names the entry and the key."""
    if not isinstance(value, list):
        raise NotifyError("[[notify]] must be an array of tables")
    targets = []
    for index, entry in enumerate(value, 1):
        where = f"[[notify]] #{index}"
        if not isinstance(entry, dict):
            raise NotifyError(f"{where}: expected a table")
        unknown = sorted(set(entry) - {"url", "format", "on"})
        if unknown:
            raise NotifyError(f"{where}: unknown key `{unknown[0]}` (known: format, on, url)")
        url = entry.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise NotifyError(f"{where}: `url` must be an http(s) URL")
        if not urlsplit(url).hostname:
            raise NotifyError(f"{where}: `url` has no host")
        fmt = entry.get("format", "json")
        if fmt not in Format.__members__.values():
            known = ", ".join(f.value for f in Format)
            raise NotifyError(f"{where}: `format` {fmt!r} is not one of {known}")
        on = entry.get("on", [e.value for e in DEFAULT_EVENTS])
        if not isinstance(on, list) or not on or not all(isinstance(e, str) for e in on):
            raise NotifyError(f"{where}: `on` must be a non-empty list of event names")
        bad = [e for e in on if e not in Event.__members__.values()]
        if bad:
            known = ", ".join(e.value for e in Event)
            raise NotifyError(f"{where}: `on`: unknown event {bad[0]!r} (known: {known})")
        targets.append(NotifyTarget(url, Format(fmt), frozenset(Event(e) for e in on)))
    return tuple(targets)


@dataclass(frozen=True, slots=True)
class Observation:
    """What a cycle ended with, as far as notifications care."""

    ok: bool
    drifted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> classes
    applied: tuple[str, ...] = ()
    error: str | None = None
    cycle: int = 0


@dataclass(frozen=True, slots=True)
class Notification:
    event: Event
    title: str
    environments: tuple[str, ...]
    classes: tuple[str, ...]
    details: tuple[str, ...]
    report_url: str | None
    cycle: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "title": self.title,
            "environments": list(self.environments),
            "classes": list(self.classes),
            "details": list(self.details),
            "report_url": self.report_url,
            "cycle": self.cycle,
        }


SHOWN = 20  # environments named in one message; the rest are counted


def transitions(
    before: Observation | None, now: Observation, report_url: str | None = None
) -> list[Notification]:
    """The notifications due between two cycles. A service that just started counts as
    in sync and ok: drift or a failure found by its first cycle is reported once."""
    previous = before or Observation(ok=True)
    out: list[Notification] = []
    if previous.ok and not now.ok:
        out.append(
            Notification(
                Event.FAILURE,
                "reconcile failing",
                (),
                (),
                (now.error or "the reconcile failed",),
                report_url,
                now.cycle,
            )
        )
    if not previous.ok and now.ok:
        out.append(
            Notification(Event.RECOVERY, "reconcile recovered", (), (), (), report_url, now.cycle)
        )
    if now.ok and now.drifted and not previous.drifted:
        names = sorted(now.drifted)
        classes = sorted({c for cs in now.drifted.values() for c in cs})
        details = tuple(f"{n}: {', '.join(now.drifted[n])}" for n in names[:SHOWN])
        if len(names) > SHOWN:
            details += (f"+{len(names) - SHOWN} more",)
        out.append(
            Notification(
                Event.DRIFT,
                f"drift in {len(names)} environment{'s' if len(names) != 1 else ''}",
                tuple(names),
                tuple(classes),
                details,
                report_url,
                now.cycle,
            )
        )
    if now.applied:
        names = sorted({a.split(":", 1)[0].split(" ", 1)[0] for a in now.applied})
        out.append(
            Notification(
                Event.APPLIED,
                f"applied {len(now.applied)} change{'s' if len(now.applied) != 1 else ''}",
                tuple(names),
                (),
                tuple(now.applied[:SHOWN]),
                report_url,
                now.cycle,
            )
        )
    return out


def sample(report_url: str | None) -> Notification:
    """What `reconciler notify --test` sends."""
    return Notification(
        Event.DRIFT,
        "test notification from reconciler",
        ("example-env",),
        ("out-of-band",),
        ("example-env: out-of-band",),
        report_url,
        0,
    )


def due_for(targets: Sequence[NotifyTarget], note: Notification) -> list[NotifyTarget]:
    return [t for t in targets if t.wants(note.event)]
