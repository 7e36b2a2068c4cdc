"""The storage side: path-style blob URLs (``/<account>/<container>/<blob>``) with a SAS.

Serves what an upload and a later read need: put blob, set metadata, get and head blob
(ranged reads included) and list blobs. Errors are the service's XML bodies with
``x-ms-error-code``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from reconciler.emulator.blobs import BadBlobName, BlobInfo

if TYPE_CHECKING:
    from reconciler.emulator.server import Emulator, Request, Response

STORAGE_VERSION = "2025-01-05"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def storage_error(status: int, code: str, message: str) -> Response:
    from reconciler.emulator.server import Response

    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(
        status,
        body.encode(),
        {
            "Content-Type": "application/xml",
            "x-ms-error-code": code,
            "x-ms-version": STORAGE_VERSION,
        },
    )


def _blob_headers(info: BlobInfo) -> dict[str, str]:
    headers = {
        "ETag": info.etag,
        "Last-Modified": info.last_modified,
        "Content-MD5": info.content_md5,
        "x-ms-version": STORAGE_VERSION,
        "x-ms-blob-type": "BlockBlob",
        "x-ms-creation-time": info.last_modified,
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
        "x-ms-server-encrypted": "true",
        "Accept-Ranges": "bytes",
    }
    headers.update({f"x-ms-meta-{k}": v for k, v in info.metadata.items()})
    return headers


def route(emulator: Emulator, request: Request) -> Response:
    expected = parse_qs(emulator.sas)["sig"][0]
    if request.query.get("sig") != expected:
        return storage_error(
            403,
            "AuthenticationFailed",
            "the request has no valid SAS signature (ask the datastore's listSecrets)",
        )
    parts = request.path.strip("/").split("/", 2)
    if len(parts) < 2:
        return storage_error(400, "InvalidUri", "expected /<account>/<container>[/<blob>]")
    account, container = parts[0], parts[1]
    try:
        if len(parts) == 2:
            return _container(emulator, request, account, container)
        return _blob(emulator, request, account, container, parts[2])
    except BadBlobName as exc:
        return storage_error(400, "InvalidResourceName", str(exc))


def _container(emulator: Emulator, request: Request, account: str, container: str) -> Response:
    from reconciler.emulator.server import Response

    query = request.query
    if request.method == "GET" and query.get("comp") == "list":
        prefix = query.get("prefix", "")
        items = []
        for info in emulator.blobs.list(account, container, prefix):
            metadata = "".join(
                f"<{k}>{escape(v)}</{k}>" for k, v in info.metadata.items() if k.isidentifier()
            )
            items.append(
                f"<Blob><Name>{escape(info.name)}</Name><Properties>"
                f"<Last-Modified>{info.last_modified}</Last-Modified><Etag>{info.etag}</Etag>"
                f"<Content-Length>{info.size}</Content-Length>"
                "<Content-Type>application/octet-stream</Content-Type>"
                f"<Content-MD5>{info.content_md5}</Content-MD5><BlobType>BlockBlob</BlobType>"
                f"</Properties><Metadata>{metadata}</Metadata></Blob>"
            )
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="{escape(emulator.base_url)}" '
            f'ContainerName="{escape(container)}"><Prefix>{escape(prefix)}</Prefix>'
            f"<Blobs>{''.join(items)}</Blobs><NextMarker /></EnumerationResults>"
        )
        return Response(
            200, body.encode(), {"Content-Type": "application/xml", "x-ms-version": STORAGE_VERSION}
        )
    if query.get("restype") == "container" and request.method in ("GET", "HEAD", "PUT"):
        # Containers exist as soon as they are named: the datastore's container always does.
        return Response(
            200 if request.method != "PUT" else 201, b"", {"x-ms-version": STORAGE_VERSION}
        )
    return storage_error(
        501, "NotImplemented", f"the emulator does not serve {request.method} here"
    )


def _blob(
    emulator: Emulator, request: Request, account: str, container: str, blob: str
) -> Response:
    from reconciler.emulator.server import Response

    blobs = emulator.blobs
    comp = request.query.get("comp")
    metadata = {
        k.removeprefix("x-ms-meta-"): v
        for k, v in request.headers.items()
        if k.startswith("x-ms-meta-")
    }
    if request.method == "PUT" and comp is None:
        if request.headers.get("x-ms-blob-type", "BlockBlob") != "BlockBlob":
            return storage_error(400, "InvalidBlobType", "the emulator stores block blobs only")
        stored = blobs.put(account, container, blob, request.body, metadata)
        return Response(201, b"", _blob_headers(stored) | {"x-ms-request-server-encrypted": "true"})
    if request.method == "PUT" and comp == "metadata":
        updated = blobs.set_metadata(account, container, blob, metadata)
        if updated is None:
            return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        return Response(200, b"", {"ETag": updated.etag, "Last-Modified": updated.last_modified})
    if request.method in ("GET", "HEAD") and comp is None:
        info = blobs.info(account, container, blob)
        if info is None:
            return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        headers = _blob_headers(info) | {"Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(info.size)
            return Response(200, b"", headers)
        body = blobs.read(account, container, blob) or b""
        wanted = request.headers.get("x-ms-range") or request.headers.get("range")
        match = _RANGE.match(wanted or "")
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
            if start >= len(body) and body:
                return storage_error(416, "InvalidRange", "The range specified is invalid.")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            return Response(206, body[start : end + 1], headers)
        return Response(200, body, headers)
    return storage_error(501, "NotImplemented", f"the emulator does not serve comp={comp}")
