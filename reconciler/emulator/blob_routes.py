"""The storage side: path-style blob URLs (``/<account>/<container>/<blob>``) with a SAS.

Serves what an upload and a later read need: put blob (with ``If-None-Match``/``If-Match``),
set metadata, get and head blob (ranged reads included) and list blobs; and blob leases
(``comp=lease``: acquire, renew, change, release, break), which writes then respect.
Errors are the service's XML bodies with ``x-ms-error-code``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from reconciler.emulator import leases
from reconciler.emulator.blobs import BadBlobName, BlobInfo
from reconciler.emulator.leases import Lease, LeaseError

if TYPE_CHECKING:
    from reconciler.emulator.http import EmulatorState, Request, Response

STORAGE_VERSION = "2025-01-05"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def storage_error(status: int, code: str, message: str) -> Response:
    from reconciler.emulator.http import Response

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


def _blob_headers(info: BlobInfo, lease: Lease) -> dict[str, str]:
    headers = {
        "ETag": info.etag,
        "Last-Modified": info.last_modified,
        "Content-MD5": info.content_md5,
        "x-ms-version": STORAGE_VERSION,
        "x-ms-blob-type": "BlockBlob",
        "x-ms-creation-time": info.last_modified,
        **lease.headers(),
        "x-ms-server-encrypted": "true",
        "Accept-Ranges": "bytes",
    }
    headers.update({f"x-ms-meta-{k}": v for k, v in info.metadata.items()})
    return headers


def route(emulator: EmulatorState, request: Request) -> Response:
    expected = parse_qs(emulator.sas)["sig"][0]
    # A SAS, or a bearer token (Microsoft Entra ID), as the storage service accepts.
    bearer = request.headers.get("authorization") == f"Bearer {emulator.token}"
    if request.query.get("sig") != expected and not bearer:
        return storage_error(
            403,
            "AuthenticationFailed",
            "the request has no valid SAS signature (ask the datastore's listSecrets) or "
            "bearer token",
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


def _container(emulator: EmulatorState, request: Request, account: str, container: str) -> Response:
    from reconciler.emulator.http import Response

    query = request.query
    if request.method == "GET" and query.get("comp") == "list":
        prefix = query.get("prefix", "")
        items = []
        for info in emulator.blobs.list(account, container, prefix):
            lease = emulator.leases.get(_lease_key(account, container, info.name))
            duration = lease.duration_header
            lease_xml = (
                f"<LeaseStatus>{lease.status}</LeaseStatus><LeaseState>{lease.state}</LeaseState>"
                + (f"<LeaseDuration>{duration}</LeaseDuration>" if duration else "")
            )
            metadata = "".join(
                f"<{k}>{escape(v)}</{k}>" for k, v in info.metadata.items() if k.isidentifier()
            )
            items.append(
                f"<Blob><Name>{escape(info.name)}</Name><Properties>"
                f"<Last-Modified>{info.last_modified}</Last-Modified><Etag>{info.etag}</Etag>"
                f"<Content-Length>{info.size}</Content-Length>"
                "<Content-Type>application/octet-stream</Content-Type>"
                f"<Content-MD5>{info.content_md5}</Content-MD5><BlobType>BlockBlob</BlobType>"
                f"{lease_xml}</Properties><Metadata>{metadata}</Metadata></Blob>"
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
    emulator: EmulatorState, request: Request, account: str, container: str, blob: str
) -> Response:
    from reconciler.emulator.http import Response

    blobs = emulator.blobs
    comp = request.query.get("comp")
    key = _lease_key(account, container, blob)
    lease_id = request.headers.get("x-ms-lease-id")
    metadata = {
        k.removeprefix("x-ms-meta-"): v
        for k, v in request.headers.items()
        if k.startswith("x-ms-meta-")
    }
    try:
        if request.method == "PUT" and comp == "lease":
            return _lease(emulator, request, account, container, blob)
        if request.method == "PUT" and comp in (None, "metadata"):
            existing = blobs.info(account, container, blob)
            refused = _precondition(request, existing)
            if refused is not None:
                return refused
            if existing is not None:
                leases.check_write(emulator.leases.get(key), lease_id)
            elif lease_id is not None:
                return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        elif request.method in ("GET", "HEAD") and lease_id is not None:
            lease = emulator.leases.get(key)
            if lease.state in ("leased", "breaking") and lease.lease_id != lease_id:
                raise LeaseError(
                    412,
                    "LeaseIdMismatchWithBlobOperation",
                    "The lease ID specified did not match the lease ID for the blob.",
                )
    except LeaseError as exc:
        return storage_error(exc.status, exc.code, str(exc))
    if request.method == "PUT" and comp is None:
        if request.headers.get("x-ms-blob-type", "BlockBlob") != "BlockBlob":
            return storage_error(400, "InvalidBlobType", "the emulator stores block blobs only")
        stored = blobs.put(account, container, blob, request.body, metadata)
        emulator.leases.written(key)
        headers = _blob_headers(stored, emulator.leases.get(key))
        return Response(201, b"", headers | {"x-ms-request-server-encrypted": "true"})
    if request.method == "PUT" and comp == "metadata":
        updated = blobs.set_metadata(account, container, blob, metadata)
        if updated is None:
            return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        emulator.leases.written(key)
        return Response(200, b"", {"ETag": updated.etag, "Last-Modified": updated.last_modified})
    if request.method in ("GET", "HEAD") and comp is None:
        info = blobs.info(account, container, blob)
        if info is None:
            return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        lease = emulator.leases.get(key)
        headers = _blob_headers(info, lease) | {"Content-Type": "application/octet-stream"}
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


def _lease_key(account: str, container: str, blob: str) -> str:
    return f"{account}/{container}/{blob}"


def _precondition(request: Request, existing: BlobInfo | None) -> Response | None:
    """``If-None-Match: *`` (create only) and ``If-Match: <etag>`` on a write."""
    none_match = request.headers.get("if-none-match")
    if none_match == "*" and existing is not None:
        return storage_error(409, "BlobAlreadyExists", "The specified blob already exists.")
    match = request.headers.get("if-match")
    if match is not None and (
        existing is None or match not in ("*", existing.etag, existing.etag.strip('"'))
    ):
        return storage_error(
            412,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    return None


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise LeaseError(400, "InvalidHeaderValue", f"{name} must be an integer") from None


def _lease(
    emulator: EmulatorState, request: Request, account: str, container: str, blob: str
) -> Response:
    """``PUT ?comp=lease``: the action is in ``x-ms-lease-action``."""
    from reconciler.emulator.http import Response

    info = emulator.blobs.info(account, container, blob)
    if info is None:
        return storage_error(404, "BlobNotFound", "The specified blob does not exist.")
    key = _lease_key(account, container, blob)
    table = emulator.leases
    now = table.now()
    current = table.get(key)
    action = request.headers.get("x-ms-lease-action", "").lower()
    lease_id = request.headers.get("x-ms-lease-id")
    proposed = request.headers.get("x-ms-proposed-lease-id")
    headers = {
        "ETag": info.etag,
        "Last-Modified": info.last_modified,
        "x-ms-version": STORAGE_VERSION,
    }
    if action == "acquire":
        duration = _int_header(request, "x-ms-lease-duration")
        if duration is None:
            raise LeaseError(400, "MissingRequiredHeader", "x-ms-lease-duration is required")
        lease = leases.acquire(current, duration, proposed, now)
        status = 201
    elif action == "break":
        lease, seconds = leases.break_lease(
            current, _int_header(request, "x-ms-lease-break-period"), now
        )
        table.put(key, lease)
        return Response(202, b"", headers | {"x-ms-lease-time": str(seconds)})
    elif action in ("renew", "release", "change"):
        if lease_id is None:
            raise LeaseError(400, "MissingRequiredHeader", "x-ms-lease-id is required")
        if action == "renew":
            lease = leases.renew(current, lease_id, now)
        elif action == "release":
            lease = leases.release(current, lease_id)
        else:
            if proposed is None:
                raise LeaseError(400, "MissingRequiredHeader", "x-ms-proposed-lease-id is required")
            lease = leases.change(current, lease_id, proposed)
        status = 200
    else:
        raise LeaseError(
            400,
            "InvalidHeaderValue",
            "x-ms-lease-action must be acquire, renew, change, release or break",
        )
    table.put(key, lease)
    if lease.lease_id is not None and action != "release":
        headers["x-ms-lease-id"] = lease.lease_id
    return Response(status, b"", headers)
