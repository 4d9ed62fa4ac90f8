"""The simulator's settings, checked once at start so a bad value fails with a clear message."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CREDENTIAL_NAME = "admin-token"
MIN_TOKEN_LENGTH = 16
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting and what is expected."""


@dataclass(frozen=True)
class SimConfig:
    host: str
    port: int
    db_path: Path
    admin_token: str
    prefix: str = "/api/v1"
    admin_prefix: str = "/_sim"
    max_body_bytes: int = 64 * 1024 * 1024


def normalize_prefix(value: str, option: str) -> str:
    """``api/v1/`` → ``/api/v1``; ``""`` or ``/`` mean the root. Anything odd is an error."""
    prefix = "/" + value.strip().strip("/") if value.strip().strip("/") else ""
    if not _PREFIX.match(prefix):
        raise ConfigError(f"{option} {value!r}: use path segments of letters, digits, '.', '_', '~', '-'")
    return prefix


def read_admin_token(token_file: str | None) -> str:
    """The admin token from ``--admin-token-file``, else from systemd's credentials directory."""
    if token_file is None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                "no admin token: pass --admin-token-file FILE, or run under systemd with "
                f"LoadCredential={CREDENTIAL_NAME}:/path/to/token"
            )
        token_file = str(Path(creds) / CREDENTIAL_NAME)
    path = Path(token_file)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--admin-token-file {path}: cannot read it ({exc.strerror})") from exc
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"--admin-token-file {path}: the token must be at least {MIN_TOKEN_LENGTH} characters "
            "with no spaces (e.g. `openssl rand -hex 24 > FILE`)"
        )
    return token
