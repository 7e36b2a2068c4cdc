"""GitHub push webhooks: the signature check and what a delivery asks for. Pure: the
HTTP handler passes the headers and body in and acts on the verdict.

``X-Hub-Signature-256`` is ``sha256=`` and the HMAC-SHA256 of the raw body keyed with the
shared secret; it is compared in constant time. Nothing in an unsigned or wrongly signed
body is looked at."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB and drops larger ones
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class Verdict:
    status: int  # the HTTP status to answer with
    result: str  # the metric label: accepted, ignored, ping, unauthorized, bad_request
    message: str
    trigger: str | None = None  # set when a reconcile is due


def judge(
    secret: bytes, event: str | None, header: str | None, body: bytes, branch: str
) -> Verdict:
    if not signature_ok(secret, body, header):
        why = "missing" if not header else "wrong"
        return Verdict(401, "unauthorized", f"{why} {SIGNATURE_HEADER}")
    if event == "ping":
        return Verdict(200, "ping", "pong")
    if event != "push":
        return Verdict(202, "ignored", f"event {event or '(none)'} ignored")
    try:
        if body.startswith(b"payload="):  # the form-encoded content type
            body = parse_qs(body.decode())["payload"][0].encode()
        payload = json.loads(body)
        ref = payload["ref"]
        after = str(payload.get("after") or "")
    except (ValueError, KeyError, TypeError, IndexError):
        return Verdict(400, "bad_request", "a push event needs a JSON body with `ref`")
    if ref != f"refs/heads/{branch}":
        return Verdict(202, "ignored", f"push to {ref} ignored (tracking {branch})")
    if payload.get("deleted"):
        return Verdict(202, "ignored", f"{ref} deleted: nothing to apply")
    return Verdict(202, "accepted", "reconcile queued", trigger=f"push {after[:12]}".strip())
