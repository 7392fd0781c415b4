"""Go-style duration strings (``100ms``, ``1.5s``, ``1m30s``) as seconds."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError for anything Go's time.ParseDuration would reject."""
    value = text.strip()
    if value in ("0", ""):
        return 0.0
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    pos, total = 0, 0.0
    while pos < len(value):
        m = _PART.match(value, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total
