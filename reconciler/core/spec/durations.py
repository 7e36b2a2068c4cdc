"""Durations as people write them in flags and settings: `30s`, `10m`, `1h30m`, `2d`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`30s`, `10m`, `1h`, `1h30m`, `500ms`, or plain seconds, as seconds."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError(
                f"{text!r} is not a duration (examples: 30s, 10m, 1h, 1h30m)"
            ) from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds
