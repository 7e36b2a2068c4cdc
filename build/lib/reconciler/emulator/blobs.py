"""Enough of the Azure Blob Storage API for the SDK's upload of a build context.

Blobs are files under ``<root>/<account>/<container>/``; each blob's metadata (the SDK
marks a finished upload with it) is a JSON file beside it in ``<root>/.metadata/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path, PurePosixPath


class BadBlobName(ValueError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    last_modified: str  # RFC 1123, as the storage service sends it
    content_md5: str
    metadata: dict[str, str]


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, account: str, container: str, blob: str) -> tuple[Path, Path]:
        parts = PurePosixPath(blob).parts
        if not parts or any(p in ("", ".", "..") for p in parts) or blob.startswith("/"):
            raise BadBlobName(f"invalid blob name {blob!r}")
        for segment in (account, container):
            if not segment or "/" in segment or segment in (".", ".."):
                raise BadBlobName(f"invalid account or container {segment!r}")
        data = self.root.joinpath(account, container, *parts)
        meta = self.root.joinpath(".metadata", account, container, *parts[:-1], parts[-1] + ".json")
        return data, meta

    def put(
        self, account: str, container: str, blob: str, body: bytes, metadata: dict[str, str]
    ) -> BlobInfo:
        data, meta = self._paths(account, container, blob)
        data.parent.mkdir(parents=True, exist_ok=True)
        meta.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(data, body)
        _atomic_write(meta, json.dumps(metadata).encode())
        info = self.info(account, container, blob)
        assert info is not None
        return info

    def set_metadata(
        self, account: str, container: str, blob: str, metadata: dict[str, str]
    ) -> BlobInfo | None:
        data, meta = self._paths(account, container, blob)
        if not data.is_file():
            return None
        _atomic_write(meta, json.dumps(metadata).encode())
        return self.info(account, container, blob)

    def read(self, account: str, container: str, blob: str) -> bytes | None:
        data, _ = self._paths(account, container, blob)
        return data.read_bytes() if data.is_file() else None

    def info(self, account: str, container: str, blob: str) -> BlobInfo | None:
        data, meta = self._paths(account, container, blob)
        if not data.is_file():
            return None
        body = data.read_bytes()
        stat = data.stat()
        metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        meta_stamp = meta.stat().st_mtime_ns if meta.is_file() else 0
        etag = hashlib.sha256(f"{stat.st_mtime_ns}:{meta_stamp}".encode() + body).hexdigest()
        return BlobInfo(
            name=blob,
            size=len(body),
            etag=f'"0x{etag[:16].upper()}"',
            last_modified=format_datetime(datetime.fromtimestamp(stat.st_mtime, UTC), usegmt=True),
            content_md5=base64.b64encode(hashlib.md5(body).digest()).decode(),
            metadata=metadata,
        )

    def list(self, account: str, container: str, prefix: str = "") -> list[BlobInfo]:
        base = self.root / account / container
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if path.is_file():
                name = path.relative_to(base).as_posix()
                if name.startswith(prefix):
                    info = self.info(account, container, name)
                    if info is not None:
                        out.append(info)
        return out


def _atomic_write(path: Path, body: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")  # threads write too
    temporary.write_bytes(body)
    os.replace(temporary, path)
