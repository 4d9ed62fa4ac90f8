"""Print the cache key of the simulator's wheelhouse as JSON (run by the control node's Python).

The key changes when anything the wheels are built from changes: requirements.txt, pyproject.toml,
README.md (the package metadata), every file under src/ (build leftovers ignored), and the Python
minor version and machine the wheels are built for. The role builds one wheelhouse per key, so an
unchanged source is never rebuilt and a changed one always is.

    python wheelhouse_key.py SOURCE_DIR  ->  {"key": "<16 hex>", "python": "3.11", "machine": "x86_64"}
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

TOP_FILES = ("requirements.txt", "pyproject.toml", "README.md")
SKIP_PARTS = {"__pycache__", "build", "dist"}


def inputs(source: Path) -> list[Path]:
    files = [source / name for name in TOP_FILES]
    for path in sorted((source / "src").rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or path.suffix in {".pyc", ".pyo"}:
            continue
        if SKIP_PARTS & set(rel.parts) or any(part.endswith(".egg-info") for part in rel.parts):
            continue
        files.append(path)
    return files


def main() -> int:
    source = Path(sys.argv[1]).resolve()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    digest = hashlib.sha256(f"python {python} {platform.machine()}\n".encode())
    for path in inputs(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    print(json.dumps({"key": digest.hexdigest()[:16], "python": python, "machine": platform.machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
