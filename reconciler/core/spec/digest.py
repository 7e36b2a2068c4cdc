"""The content digest: one hash of everything that decides what an image contains.

What enters it (and nothing else), as canonical JSON (sorted keys, no spaces, UTF-8):

- ``format``: the digest format number (1);
- ``image``: the base image reference, exactly as written, or null;
- ``conda``: the conda specification as parsed data (so key order, comments, quoting and
  file location do not matter; list order does), or null;
- ``build``: null, or for a URL context ``{"url", "dockerfile_path"}``, or for a local
  context ``{"dockerfile_path", "files"}`` where ``files`` lists every file of the context
  as ``[path inside the context, git file mode, git blob id]``, sorted by path;
- ``os_type``: ``linux`` or ``windows`` (lower case; default linux);
- ``inference_config``: the three routes as ``{port, path}``, or null.

Name, version, description, tags, datastore, the YAML file's own path and its formatting
do not enter it: two environments with identical content share one digest (and one image).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

DIGEST_FORMAT = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_digest(content: dict[str, Any]) -> str:
    return json_digest(canonical_json(content))


def json_digest(text: str) -> str:
    """The digest of content already written as canonical JSON."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_content(
    *,
    image: str | None,
    conda: Any,
    build: dict[str, Any] | None,
    os_type: str,
    inference_config: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": DIGEST_FORMAT,
        "image": image,
        "conda": conda,
        "build": build,
        "os_type": os_type,
        "inference_config": inference_config,
    }


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]
