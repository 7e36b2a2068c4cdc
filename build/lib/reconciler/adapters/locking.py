"""An exclusive, cross-process lock on a file (fcntl.flock), waited for up to a timeout.

flock is released by the kernel when the holder dies, so a killed reconciler never
leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from reconciler.ports import LockTimeout, RegistryError


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RegistryError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(path)
                    raise LockTimeout(
                        f"{what} is locked by another reconciler{holder}; waited {timeout:g}s. "
                        "Try again when it finishes, or raise --lock-timeout"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        _note_holder(fd, f"pid {os.getpid()}\n")
        try:
            yield
        finally:
            _note_holder(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def _note_holder(fd: int, text: str) -> None:
    """Who holds the lock, for the timeout message. The flock is the lock: a full disk
    that refuses this note must not stop the reconciler."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        if text:
            os.write(fd, text.encode())
