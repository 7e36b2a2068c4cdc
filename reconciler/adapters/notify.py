"""Notifications over HTTP: a JSON document, a Slack message or a Teams card, POSTed to
each ``[[notify]]`` endpoint whose ``on`` list names the event.

Sending happens on a worker thread with its own queue: a slow or dead endpoint is retried
with backoff there and never holds up a reconcile. URLs hold tokens, so only their masked
form (scheme and host) appears in what is logged.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import __version__
from reconciler.core.loop.notify import Format, Notification, NotifyTarget

ATTEMPTS = 4
FIRST_DELAY = 1.0  # seconds; doubles after each failed attempt
MAX_RETRY_AFTER = 60.0
TIMEOUT = 10.0
_COLORS = {"drift": "#cf222e", "failure": "#9a6700", "recovery": "#1a7f37", "applied": "#0969da"}


def _lines(note: Notification) -> list[str]:
    lines = list(note.details)
    if note.classes:
        lines.append("classes: " + ", ".join(note.classes))
    return lines


def payload(note: Notification, fmt: Format) -> dict[str, Any]:
    """The body of one message in ``fmt``; pure."""
    if fmt is Format.SLACK:
        text = f"*reconciler: {note.title}*"
        body = "\n".join(f"• {line}" for line in _lines(note))
        if note.report_url:
            body += f"\n<{note.report_url}|drift report>"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        ]
        if body.strip():
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body.strip()}})
        return {"text": f"reconciler: {note.title}", "blocks": blocks}
    if fmt is Format.TEAMS:
        items: list[dict[str, Any]] = [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": note.title},
            *({"type": "TextBlock", "wrap": True, "text": line} for line in _lines(note)),
        ]
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": items,
        }
        if note.report_url:
            card["actions"] = [
                {"type": "Action.OpenUrl", "title": "Drift report", "url": note.report_url}
            ]
        return {
            "type": "message",
            "summary": f"reconciler: {note.title}",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
    return {"source": "reconciler", "version": __version__, **note.to_dict()}


class DeliveryError(Exception):
    pass


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def deliver(
    target: NotifyTarget,
    note: Notification,
    attempts: int = ATTEMPTS,
    first_delay: float = FIRST_DELAY,
    stop: threading.Event | None = None,
) -> int:
    """POST one message, retrying transient failures; the attempts it took.
    DeliveryError (naming the masked URL) when every attempt failed."""
    body = json.dumps(payload(note, target.format)).encode()
    delay = first_delay
    problem = "not sent"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            target.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"reconciler/{__version__}",
            },
        )
        wait = delay
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
            return attempt
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code not in (408, 429):
                break  # the endpoint refuses this message: retrying will not help
            wait = _retry_after(exc) or delay
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = str(reason)
        if attempt < attempts:
            if stop is not None and stop.wait(wait):
                break
            if stop is None:
                time.sleep(wait)
            delay *= 2
    raise DeliveryError(f"notification to {target.masked} failed: {problem}")


@dataclass
class Sent:
    target: str  # masked
    event: str
    ok: bool
    attempts: int
    error: str | None = None


class Notifier:
    """Queues notifications and sends them in order, one worker thread per endpoint, so a
    dead endpoint's retries delay nobody else's messages."""

    def __init__(
        self,
        targets: Sequence[NotifyTarget],
        log: Callable[[str], None],
        first_delay: float = FIRST_DELAY,
    ) -> None:
        self.targets = tuple(targets)
        self.log = log
        self.first_delay = first_delay
        self.sent: list[Sent] = []  # recent outcomes, for the status document
        self._queues: list[queue.Queue[Notification | None]] = [queue.Queue() for _ in targets]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._threads:
            return
        for index, target in enumerate(self.targets):
            thread = threading.Thread(
                target=self._work, args=(target, self._queues[index]), name="notify", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def notify(self, notes: Sequence[Notification]) -> None:
        for note in notes:
            for index, target in enumerate(self.targets):
                if target.wants(note.event):
                    self._queues[index].put(note)

    def _work(self, target: NotifyTarget, inbox: queue.Queue[Notification | None]) -> None:
        while True:
            note = inbox.get()
            if note is None:
                return
            try:
                attempts = deliver(target, note, first_delay=self.first_delay, stop=self._stop)
                outcome = Sent(target.masked, note.event.value, True, attempts)
                self.log(f"notified {target.masked} ({target.format.value}): {note.title}")
            except DeliveryError as exc:
                outcome = Sent(target.masked, note.event.value, False, ATTEMPTS, str(exc))
                self.log(str(exc))
            with self._lock:
                self.sent = [*self.sent[-19:], outcome]

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop the workers."""
        for inbox in self._queues:
            inbox.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()  # a retry still waiting gives up
        for thread in self._threads:
            thread.join(1.0)
