"""Writes report artifacts and local records: each file whole or not at all (temporary
file, then rename), so a full disk or a kill never leaves a truncated file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


class ReportWriteError(Exception):
    pass


def write_files(directory: Path, files: Mapping[str, str]) -> list[Path]:
    written: list[Path] = []
    for name, body in files.items():
        target = directory / name
        temp: str | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(body)
            os.replace(temp, target)
        except OSError as exc:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)
            raise ReportWriteError(
                f"cannot write the report {target}: {exc.strerror or exc}"
            ) from exc
        written.append(target)
    return written


def replace_file(path: Path, data: bytes) -> None:
    """Replace an existing file whole (temporary file, then rename), keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ReportWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
