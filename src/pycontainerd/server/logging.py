"""Structured logs in containerd's shape: logfmt text (default) or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_NAMES = {
    TRACE: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int((record.created % 1) * 1_000_000):06d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}


def _quote(value: object) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_./:@" for c in text):
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """``time="..." level=info msg="..." key=value`` (logrus text format)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f'time="{_timestamp(record)}"',
            f"level={_NAMES.get(record.levelno, 'info')}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        if record.name and record.name != "root":
            parts.append(f"module={_quote(record.name)}")
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": _NAMES.get(record.levelno, "info"),
            "msg": record.getMessage(),
            "module": record.name,
        }
        data.update({k: v if isinstance(v, int | float | bool | str) else str(v) for k, v in _fields(record).items()})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data)


def parse_level(name: str) -> int:
    """A containerd log level name to a logging level; ValueError for unknown names."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r} (one of {', '.join(sorted(set(LEVELS)))})") from None


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger to write to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))
    # grpc and asyncio log every event-loop hand-over at debug level; keep them for trace.
    quiet = logging.WARNING if root.level > TRACE else TRACE
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(quiet)
