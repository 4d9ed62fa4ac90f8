"""Releases of this checkout's app built for a production test: a version of their own (what the
device, its heartbeat and its metrics report), and, for ``broken``, a bug that only a health gate
can catch (the service gets ready, then exits 8 s later, again and again).

Versions are PEP 440 (the wheel is built from them): the suite uses ``<app version>.post<epoch>`` so
that a run never meets a release of the same name with other bytes left by an earlier run (a
device refuses that, rightly).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from prodtest.lab import ROOT, LabError, sh

APP = ROOT / "app"
MODELS = APP / "models" / "lab"
LOOP = "        while not self.shutdown.is_set():\n"
BUG = (
    "        _t_bug = time.monotonic()\n"
    "        while not self.shutdown.is_set():\n"
    "            if time.monotonic() - _t_bug > 8:  # prodtest's broken release: the bug\n"
    "                self.exit_code = EXIT_PIPELINE\n"
    "                break\n"
)
IGNORE = shutil.ignore_patterns(".venv*", "models", "tests", "*.egg-info", "__pycache__", "build")


def app_version() -> str:
    found = re.search(r'(?m)^__version__ = "(.*)"$', (APP / "src" / "rvm_edge" / "__init__.py").read_text())
    if not found:
        raise LabError("app/src/rvm_edge/__init__.py names no __version__")
    return found.group(1)


def source(version: str, dest: Path, broken: bool = False) -> Path:
    """A copy of app/ that says ``version`` (and carries the bug when ``broken``)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(APP, dest, ignore=IGNORE)
    pyproject = dest / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text()))
    init = dest / "src" / "rvm_edge" / "__init__.py"
    init.write_text(re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text()))
    if broken:
        runner = dest / "src" / "rvm_edge" / "service" / "runner.py"
        text = runner.read_text()
        if text.count(LOOP) != 1:
            raise LabError(f"{runner}: the service loop moved; update prodtest/releases.py's bug")
        runner.write_text(text.replace(LOOP, BUG))
    return dest


def bundle(version: str, out: Path, models: Path = MODELS, app: Path | None = None) -> Path:
    """``rvm-edge-VERSION-x86_64.tar.gz`` (+ .sha256) in ``out`` from ``app`` (default this checkout's
    app/) and ``models``; the bundle's path. The lab's SAM2 (random weights) is never shipped."""
    argv = [
        sys.executable, str(ROOT / "release" / "build_bundle.py"), "--models", str(models),
        "--version", version, "--python", "3.11", "--arch", "x86_64", "--out", str(out),
    ]  # fmt: skip
    if app is not None:
        argv += ["--app", str(app)]
    if (models / "sam2").is_dir():
        argv += ["--skip-models", "sam2"]
    proc = sh(argv, 900)
    if proc.returncode != 0:
        raise LabError(f"building {version} failed: {(proc.stdout + proc.stderr)[-1500:]}")
    return out / f"rvm-edge-{version}-x86_64.tar.gz"


def build_release(version: str, out: Path, broken: bool = False) -> Path:
    """A release that says ``version`` (PEP 440), with the bug when ``broken``; the bundle's path."""
    return bundle(version, out, MODELS, source(version, out.parent / "src" / version, broken))
