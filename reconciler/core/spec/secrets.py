"""Masking of credentials in everything the reconciler shows: plans, reports and logs.

Environment definitions carry credentials more often than they should: a pip
`--index-url https://user:token@host/simple`, a conda channel with `/t/<token>/`, a tag
named `api_token`. Registry writes keep the real values (the service needs them); every
rendering goes through ``mask`` so a value is shown as ``***`` while a change to it is
still reported (``FieldChange.masked``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# `scheme://user:password@host` and `scheme://token@host`: any user information.
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/\s@:]+(?::[^/\s@]*)?)@"
)
# anaconda.org style tokens in the path: https://conda.anaconda.org/t/<token>/channel
_PATH_TOKEN = re.compile(r"(/t/)(?!\*\*\*/)[^/\s]+(/)")
# Query parameters that carry credentials (Azure SAS `sig`, `token=`, `access_token=`...).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:sig|signature|token|access_token|api[_-]?key|key|password|secret|"
    r"code|auth)=)(?P<value>[^&\s#]+)",
    re.IGNORECASE,
)
# `password=...` / `token: ...` inside free text such as a pip option or a log line.
_ASSIGNED_SECRET = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"
    r"[\w.-]*\s*[=:]\s*)(?P<value>[^\s'\",;&]+)",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(
    r"(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credential|connection[_-]?string|sas)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """A mapping key whose value is a credential, by its name (`api_token`, `db_password`)."""
    return bool(_SECRET_KEY.search(key))


def mask_text(text: str) -> str:
    """Credentials inside a string (URL user information, tokens) replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _PATH_TOKEN.sub(rf"\1{MASK}\2", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)
    return _ASSIGNED_SECRET.sub(
        lambda m: m["key"] + (m["value"] if m["value"] == MASK else MASK), text
    )


def mask(value: Any, key: str | None = None) -> Any:
    """``value`` with every credential masked, recursively; a value under a secret-looking
    key is masked whole."""
    if key is not None and is_secret_key(key) and isinstance(value, str | int | float):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def last_key(path: str) -> str | None:
    """The mapping key a dotted field path ends in (`tags.api_token` -> `api_token`)."""
    tail = re.sub(r"(\[\d+\])+$", "", path).rsplit(".", 1)[-1]
    return tail or None
