"""rvm-edge interface stub (see pyproject.toml): only what the rvm_edge role talks to."""

import json
import sys
from importlib.metadata import version
from pathlib import Path


def _release_version() -> str:
    """The release this venv belongs to (<release>/venv): scenarios deploy one wheel as 0.0.1, 0.0.2 ..."""
    manifest = Path(sys.prefix).parent / "MANIFEST.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return version("rvm-edge")


__version__ = _release_version()
