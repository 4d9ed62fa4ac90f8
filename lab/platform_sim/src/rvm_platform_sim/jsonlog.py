"""Structured logs: one JSON object per line on stdout, which journald keeps and rotates."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rvm_platform_sim.timeutil import iso8601_precise, now_utc

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...extra}``; extras come from ``logger.info(..., extra=)``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso8601_precise(now_utc()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would duplicate our own per-request event in another format.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
