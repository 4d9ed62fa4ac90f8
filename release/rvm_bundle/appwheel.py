"""The app's own wheel, built from a clean copy of its source tree.

Why a copy: setuptools writes build/ and *.egg-info into the tree it builds; the app directory
belongs to its developers (and may hold multi-GB venvs), so only the files a wheel needs are copied
to a scratch directory and the wheel is built there, with SOURCE_DATE_EPOCH fixed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from rvm_bundle import BuildError

# What a build of the app needs; venvs, caches, models and tests stay behind.
_SOURCE_ENTRIES = ("pyproject.toml", "setup.cfg", "setup.py", "README.md", "LICENSE", "MANIFEST.in", "src")
# What a device must never install (DESIGN §2): the control node's model toolchain, the unpackaged
# benchmarks, the lab's own packages, torch, ultralytics and sam2 ...
_FORBIDDEN_PATH = re.compile(
    r"(^|/)(rvm_toolchain|toolchain|benchmarks|rvm_platform_sim|lab|torch|ultralytics|sam2)(/|\.py$)"
)
# ... and no module that imports the toolchain or the lab's platform simulator (the service benchmark
# did; the device's own `rvm-edge bench` modules do not and stay).
_FORBIDDEN_IMPORT = re.compile(rb"^\s*(from|import)\s+(rvm_toolchain|rvm_platform_sim)\b", re.MULTILINE)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".ruff_cache")


def build_wheel(app_dir: Path, scratch: Path, epoch: int) -> Path:
    """Build ``app_dir`` into one wheel under ``scratch``; return its path."""
    if not (app_dir / "pyproject.toml").is_file():
        raise BuildError(f"app: {app_dir} has no pyproject.toml")
    source = scratch / "src-copy"
    source.mkdir(parents=True)
    for entry in _SOURCE_ENTRIES:
        path = app_dir / entry
        if path.is_dir():
            shutil.copytree(path, source / entry, ignore=_IGNORE)
        elif path.is_file():
            shutil.copy2(path, source / entry)
    out = scratch / "wheel"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
    if proc.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"app: pip wheel {app_dir} failed (exit {proc.returncode}):\n{tail}")
    return wheels[0]


def forbidden_entries(wheel: Path) -> list[str]:
    """Files in a device wheel that belong to the control node or the lab (empty when clean)."""
    bad = []
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if _FORBIDDEN_PATH.search(name) or (
                name.endswith(".py") and _FORBIDDEN_IMPORT.search(zf.read(name))
            ):
                bad.append(name)
    return bad


def check_device_wheel(wheel: Path) -> None:
    """Refuse a device wheel that carries toolchain, benchmark or lab modules."""
    bad = forbidden_entries(wheel)
    if bad:
        raise BuildError(
            f"app: {wheel.name} carries modules a device must not install: {', '.join(bad[:10])}"
            " (the model toolchain is toolchain/, benchmarks are benchmarks/)"
        )
