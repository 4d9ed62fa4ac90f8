"""Helpers for the bundle builder tests: a tiny app, hand-made wheels and a model directory, all offline.

A module name of its own (not conftest) so it never collides with another test directory's conftest.

The wheels are real wheel files (zip + dist-info) so pip itself downloads and resolves them from a
local --find-links directory; nothing here reaches a package index.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

RELEASE_DIR = Path(__file__).resolve().parents[2] / "release"
if str(RELEASE_DIR) not in sys.path:
    sys.path.insert(0, str(RELEASE_DIR))

from rvm_bundle.target import Target  # noqa: E402

LAB = Target.make("x86_64", f"3.{sys.version_info.minor}")


def make_wheel(directory: Path, name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> Path:
    """Write a minimal but valid wheel; ``tag`` is python-abi-platform, e.g. ``py3-none-any``."""
    dist = name.replace("-", "_")
    path = directory / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    module = f"{dist}/__init__.py"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(module, f"VERSION = {version!r}\n")
        archive.writestr(f"{info}/METADATA", meta)
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(
            f"{info}/RECORD", f"{module},,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n"
        )
    return path


@dataclass
class Project:
    """A fake app checkout: wheel, lock, models, a local wheel index and where outputs go."""

    root: Path
    app_wheel: Path
    lock: Path
    models: Path
    index: Path
    cache: Path
    out: Path

    def args(self, *extra: str) -> list[str]:
        return [
            "--app",
            str(self.root / "app"),
            "--app-wheel",
            str(self.app_wheel),
            "--requirements",
            str(self.lock),
            "--models",
            str(self.models),
            "--find-links",
            str(self.index),
            "--no-index",
            "--cache",
            str(self.cache),
            "--out",
            str(self.out),
            "--python",
            LAB.python,
            "--created",
            "2026-11-29T12:00:00Z",
            *extra,
        ]


def write_models(directory: Path) -> None:
    """A detector and a SAM2 sub-directory, each with a manifest that hashes its files."""
    for sub, name in (("", "detector.onnx"), ("sam2", "encoder.onnx")):
        folder = directory / sub
        folder.mkdir(parents=True, exist_ok=True)
        data = f"model bytes of {name}".encode()
        (folder / name).write_bytes(data)
        manifest = {"schema": 1, "models": [{"file": name, "sha256": hashlib.sha256(data).hexdigest()}]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
