"""The terminal's progress display (rich): a row per step or image under way, shown once
work has taken a moment and erased when the results print. It implements the Progress
port (ports.py) and is told everything; it decides nothing."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

DETAIL_WIDTH = 70


class _CountedBar(BarColumn):
    """A bar for counted steps; nothing for a step without a count (an image build)."""

    def render(self, task: Task) -> Any:
        return Text("") if task.total is None else super().render(task)


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)}", "progress.download")


class _Spinner(SpinnerColumn):
    """Spinning while a task runs; a mark once it has stopped."""

    def render(self, task: Task) -> Any:
        if task.stop_time is None:
            return super().render(task)
        failed = "FAILED" in str(task.description)
        return Text("✗", "bold red") if failed else Text("✓", "green")


class TerminalProgress:
    """The progress display (the Progress port): one row per task (reading, parsing,
    applying, each image being built with its elapsed time and the last line of its
    log). Shown only once a step has taken a moment, and gone when the results print."""

    DELAY = 0.3  # seconds: quicker work never flashes a display

    def __init__(self, console: Console) -> None:
        self._display = Progress(
            _Spinner(),
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=50),
            ),
            _CountedBar(bar_width=24),
            _Count(),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[detail]}",
                markup=False,
                style="dim",
                table_column=Column(no_wrap=True, overflow="ellipsis"),
            ),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._shown = False
        self._closed = False

    def _show(self) -> None:
        with self._lock:
            if not self._closed and not self._shown:
                self._display.start()
                self._shown = True

    def start(self, task: str, description: str, total: int | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            if task in self._tasks:
                self._display.reset(
                    self._tasks[task], total=total, description=description, visible=True
                )
            else:
                self._tasks[task] = self._display.add_task(description, total=total, detail="")
            if self._timer is None:
                self._timer = threading.Timer(self.DELAY, self._show)
                self._timer.daemon = True
                self._timer.start()

    def advance(self, task: str, detail: str | None = None) -> None:
        with self._lock:
            found = self._tasks.get(task)
            if found is None or self._closed:
                return
            fields: dict[str, Any] = {}
            if detail is not None:
                fields["detail"] = _shorten(detail)
            counted = self._display.tasks[found].total is not None
            self._display.update(found, advance=1 if counted else 0, **fields)

    def finish(self, task: str, description: str | None = None) -> None:
        with self._lock:
            found = self._tasks.get(task)
            if found is None or self._closed:
                return
            current = self._display.tasks[found]
            fields: dict[str, Any] = {"detail": ""}
            if current.total is not None:
                fields["completed"] = current.total
            self._display.update(found, description=description or current.description, **fields)
            self._display.stop_task(found)
            if task in ("parse", "registry", "apply"):  # steps: gone when done
                self._display.update(found, visible=False)

    def note(self, line: str) -> None:
        self.start("note", "")
        self.advance("note", line)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._shown:
                self._display.stop()
                self._shown = False


def _shorten(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= DETAIL_WIDTH else line[: DETAIL_WIDTH - 1] + "…"
