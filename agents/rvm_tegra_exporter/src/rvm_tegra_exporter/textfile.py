"""Atomic writes into node-exporter's textfile collector directory.

node-exporter reads every ``*.prom`` file on each scrape; a file caught half-written would be a
parse error (node_textfile_scrape_error) or, worse, a partial set of series. So the text goes to a
hidden temporary file in the same directory (same filesystem), is fsynced, and replaces the
target with one rename(2).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace path with text in one step; on failure the old file stays and no temp file remains."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
