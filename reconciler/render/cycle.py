"""One line per reconcile of a long-running loop: readable in a terminal and greppable in
a log (`HH:MM:SS reconcile N (trigger): result in T ms`)."""

from __future__ import annotations

from reconciler.core.loop.reconcile_pass import CycleResult, Outcome

SHOWN = 3  # items named in a line; the rest are counted


def _listed(items: tuple[str, ...], separator: str = ", ") -> str:
    shown = separator.join(items[:SHOWN])
    more = len(items) - SHOWN
    return shown + (f"{separator}+{more} more" if more > 0 else "")


def format_cycle(result: CycleResult) -> str:
    clock = result.started.astimezone().strftime("%H:%M:%S")
    head = f"{clock} reconcile {result.number} ({result.trigger})"
    took = f"in {result.seconds * 1000:.0f} ms"
    if result.outcome is Outcome.INVALID:
        body = (
            f"invalid: {len(result.errors)} error(s), registry left as is: "
            f"{_listed(result.errors, '; ')}"
        )
    elif result.outcome is Outcome.ERROR and result.message is not None:
        body = f"error: {result.message}"
    else:
        parts = []
        if result.applied:
            parts.append(f"applied {len(result.applied)} ({_listed(result.applied)})")
        if result.failed:
            parts.append(f"failed {len(result.failed)} ({_listed(result.failed, '; ')})")
        if not parts:
            parts.append("in sync")
        if result.drift:
            parts.append(f"drift in {result.drift} environment(s)")
        body = ", ".join(parts)
    if result.builds:
        body += f"; builds: {result.builds}"
    line = f"{head}: {body} {took}"
    if result.retry_in is not None:
        line += f"; retry in {result.retry_in:.1f} s"
    return line
