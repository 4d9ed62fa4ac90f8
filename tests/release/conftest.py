"""Fixtures for the bundle builder: a tiny app, hand-made wheels and a model directory, all offline.

The wheels are real wheel files (zip + dist-info) so pip itself downloads and resolves them from a
local --find-links directory; nothing here reaches a package index.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture
def project(tmp_path: Path) -> Project:
    cp = LAB.cp
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "fakenum", "2.0", f"{cp}-{cp}-manylinux_2_28_x86_64")
    make_wheel(index, "fakeyaml", "6.0", "py3-none-any", ("fakedep>=1",))
    make_wheel(index, "fakedep", "1.5", "py3-none-any")
    make_wheel(index, "fakeonly-arm", "1.0", f"{cp}-{cp}-manylinux_2_28_aarch64")
    wheels = tmp_path / "appwheel"
    wheels.mkdir()
    app_wheel = make_wheel(wheels, "rvm-edge", "0.3.0", "py3-none-any", ("fakenum>=2", "fakeyaml"))
    lock = tmp_path / "runtime.txt"
    lock.write_text(
        "# lock\nfakenum==2.0\nfakeyaml==6.0\nfakedep==1.5\nfakeonly-arm==1.0 ; platform_machine == 'aarch64'\n"
    )
    (tmp_path / "app").mkdir()
    models = tmp_path / "models"
    write_models(models)
    return Project(tmp_path, app_wheel, lock, models, index, tmp_path / "cache", tmp_path / "dist")


@pytest.fixture
def build_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    from build_bundle import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        rc = main(argv)
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run
