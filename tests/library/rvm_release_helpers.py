"""Helpers for the rvm_release tests: a bundle builder and an in-process module runner.

The module imports its helpers as ``ansible.module_utils.rvm_release_*`` (ansible.cfg points
module_utils at library/module_utils); for in-process tests the same directory is appended to
the ``ansible.module_utils`` package path, so the tests exercise exactly the shipped files.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import ansible.module_utils
import pytest
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "library"
MODULE_UTILS = LIBRARY / "module_utils"
if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))
if str(LIBRARY) not in sys.path:
    sys.path.insert(0, str(LIBRARY))

import rvm_release

DELETE = object()
AddMembers = Callable[[tarfile.TarFile], None]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_files(version: str) -> dict[str, bytes]:
    """A small but realistic bundle: the app wheel, a wheelhouse and models with their manifest."""
    return {
        f"rvm_edge-{version}-py3-none-any.whl": f"wheel of rvm-edge {version}".encode(),
        "wheelhouse/numpy-2.2.0-cp310-cp310-manylinux_2_17_x86_64.whl": b"numpy wheel bytes",
        "wheelhouse/onnxruntime-1.20.0-cp310-cp310-manylinux_2_27_x86_64.whl": b"onnxruntime wheel",
        "models/manifest.json": b'{"models": ["detector.onnx"]}',
        "models/detector.onnx": f"onnx graph for {version}".encode() * 100,
    }


def add_file(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    archive.addfile(info, io.BytesIO(data))


def make_bundle(
    directory: Path,
    version: str = "1.0.0",
    arch: str = "x86_64",
    *,
    files: dict[str, bytes] | None = None,
    archived: dict[str, bytes] | None = None,
    manifest_patch: dict[str, Any] | None = None,
    raw_manifest: bytes | None = None,
    add_members: AddMembers | None = None,
    name: str | None = None,
    prefix: str = "./",
) -> Path:
    """Write a bundle the way the builder is meant to (MANIFEST.json first), with hooks to break it.

    ``files`` is what MANIFEST.json lists (hashed here); ``archived`` is what actually goes into the
    archive (defaults to ``files``), so tests can make files missing, extra or different.
    """
    files = default_files(version) if files is None else files
    archived = files if archived is None else archived
    manifest: dict[str, Any] = {
        "schema": 1,
        "name": "rvm-edge",
        "version": version,
        "arch": arch,
        "python": "3.10",
        "created": "2026-11-29T16:00:00Z",
        "files": {rel: sha256(data) for rel, data in files.items()},
        "wheel": f"rvm_edge-{version}-py3-none-any.whl",
    }
    if manifest["wheel"] not in files:
        del manifest["wheel"]
    for key, value in (manifest_patch or {}).items():
        if value is DELETE:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    data = raw_manifest if raw_manifest is not None else json.dumps(manifest, indent=1).encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"rvm-edge-{version}-{arch}.tar.gz")
    with tarfile.open(path, "w:gz") as archive:
        add_file(archive, prefix + "MANIFEST.json", data)
        for rel, content in archived.items():
            add_file(archive, prefix + rel, content)
        if add_members is not None:
            add_members(archive)
    return path


class ModuleRun:
    """Runs rvm_release.main() in-process with the given arguments and returns its JSON result."""

    def __call__(self, args: dict[str, Any], *, check: bool = False, diff: bool = False) -> dict[str, Any]:
        full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        out = io.StringIO()
        with patch_module_args(full), redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            rvm_release.main()
        result: dict[str, Any] = json.loads(out.getvalue())
        result["rc"] = exit_info.value.code
        # ansible-core 2.19 reports warnings as structured summaries; tests read the text.
        result["warning_msgs"] = [
            w["event"]["msg"] if isinstance(w, dict) else str(w) for w in result.get("warnings", [])
        ]
        return result
