"""Everything the driver prints: one JSON line per event on stdout (the journal keeps a record tools can
parse) and plain error lines on stderr, with the repository password scrubbed from all of it in one place."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO


def redact_url(text: str) -> str:
    """Hide the password of a repository URL (rest:https://user:PASS@host/...) wherever it shows up."""
    return re.sub(r"(://[^/:@\s]+:)[^@/\s]+@", r"\1***@", text)


def password_file_secret(path: str) -> str | None:
    """The password as restic reads it, only so that it can be scrubbed from any text this program prints."""
    try:
        secret = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return secret if len(secret) >= 4 else None


class Journal:
    """Everything this program prints goes through here, so secrets are scrubbed in one place."""

    def __init__(
        self, secrets: Sequence[str] = (), out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.secrets = [s for s in secrets if s]
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def scrub(self, text: str) -> str:
        """Replace the repository password and the password file's content, raw or JSON-escaped."""
        text = redact_url(text)
        for secret in self.secrets:
            for form in (secret, json.dumps(secret)[1:-1]):
                text = text.replace(form, "***")
        return text

    def event(self, event: str, seconds: float, **fields: Any) -> None:
        """One JSON line per step on stdout: the journal keeps a record that tools can parse."""
        self.emit({"event": event, "seconds": round(seconds, 3), **fields})

    def emit(self, document: Any) -> None:
        """A JSON document on one line of stdout."""
        self.out.write(self.scrub(json.dumps(document)) + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        """A human-readable error on stderr (journal, Ansible's stderr), besides the JSON event."""
        self.err.write(f"rvm-backup: error: {self.scrub(message)}\n")
        self.err.flush()
