"""Structured logging: one JSON object per line, secrets redacted, an audit stream of its own.

Why JSON on stdout: journald keeps and rotates it, and one event per line with named fields
(``deposit_id``, ``status``) can be searched without parsing prose. Why a redacting filter on
top of "never log the key": a key can still leak through a library's exception text; the filter
replaces every registered secret wherever it appears, as the last line of defence.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

AUDIT_LOGGER = "rvm_edge.audit"
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
REDACTED = "[REDACTED]"


class SecretRedactor(logging.Filter):
    """Replaces registered secret strings in messages, arguments and extra fields."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 8:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for k, v in list(vars(record).items()):
            if k not in _STANDARD and isinstance(v, str):
                setattr(record, k, self.redact(v))
        return True


REDACTOR = SecretRedactor()


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...extra}``; ``event`` is the message."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return REDACTOR.redact(json.dumps(out, default=str))


def setup_logging(
    level: str = "INFO",
    file: Path | None = None,
    audit_file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Root logger -> JSON on stdout (and a rotating file when configured); audit -> also its file."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = JsonFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(file, maxBytes=10 << 20, backupCount=5))
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(REDACTOR)
        root.addHandler(h)
    root.setLevel(level)
    audit = logging.getLogger(AUDIT_LOGGER)
    for h in list(audit.handlers):
        audit.removeHandler(h)
        h.close()
    audit.setLevel(logging.INFO)
    if audit_file is not None:
        audit_file.parent.mkdir(parents=True, exist_ok=True)
        ah = logging.handlers.RotatingFileHandler(audit_file, maxBytes=10 << 20, backupCount=10)
        ah.setFormatter(fmt)
        ah.addFilter(REDACTOR)
        audit.addHandler(ah)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level)


def audit(action: str, **fields: Any) -> None:
    """One audit event (remote command, config reload, start/stop); ``stream: audit`` marks them."""
    logging.getLogger(AUDIT_LOGGER).info(action, extra={"stream": "audit", "action": action, **fields})
