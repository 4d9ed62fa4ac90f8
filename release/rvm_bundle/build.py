"""Put a bundle together: stage the tree, prove it is complete for the target, write it atomically.

The archive itself is written by ``write_bundle`` from library/module_utils/rvm_release_bundle.py,
the same file the device-side module verifies with, so builder and installer share one format.
Nothing lands in the output directory unless every check passed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from packaging.utils import canonicalize_name, parse_wheel_filename

from rvm_bundle import BuildError
from rvm_bundle.appwheel import build_wheel, check_device_wheel
from rvm_bundle.lockfile import read_pins, render
from rvm_bundle.models import copy_models
from rvm_bundle.target import Target
from rvm_bundle.wheelhouse import download, requirements_of, select

REPO = Path(__file__).resolve().parents[2]
FORMAT_MODULE = REPO / "library" / "module_utils" / "rvm_release_bundle.py"
# Layout inside the bundle (the rvm_edge role relies on these names).
WHEEL_DIR = "wheel"
WHEELHOUSE_DIR = "wheelhouse"
MODELS_DIR = "models"
REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True)
class Inputs:
    """Everything a build depends on; the same inputs give the same bundle bytes."""

    app_dir: Path
    requirements: Path
    models: Path
    out_dir: Path
    cache: Path
    target: Target
    version: str | None = None
    created: str | None = None
    find_links: tuple[Path, ...] = ()
    no_index: bool = False
    app_wheel: Path | None = None
    skip_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    bundle: Path
    sha256: str
    version: str
    files: int
    size: int
    seconds: float


def load_format() -> ModuleType:
    """Import the bundle format module by path: it has no Ansible imports, so no Ansible is needed."""
    spec = importlib.util.spec_from_file_location("rvm_release_bundle", FORMAT_MODULE)
    if spec is None or spec.loader is None:  # pragma: no cover - the file is part of the repo
        raise BuildError(f"cannot load {FORMAT_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("rvm_release_bundle", module)
    spec.loader.exec_module(module)
    return module


def source_epoch(app_dir: Path) -> int:
    """The last commit touching the app, so rebuilding the same commit gives the same bytes."""
    proc = subprocess.run(
        ["git", "-C", str(app_dir), "log", "-1", "--format=%ct", "--", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    stamp = proc.stdout.strip()
    return int(stamp) if proc.returncode == 0 and stamp.isdigit() else int(time.time())


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(created: str) -> int:
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise BuildError(f"--created: expected an ISO 8601 timestamp, got {created!r}") from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(inputs: Inputs) -> Result:
    """Build the bundle described by ``inputs``; raise BuildError naming the first problem."""
    started = time.monotonic()
    fmt = load_format()
    target = inputs.target
    created = inputs.created or _iso(source_epoch(inputs.app_dir))
    epoch = _epoch(created)
    pins = read_pins(inputs.requirements, target)
    with tempfile.TemporaryDirectory(prefix="rvm-bundle-") as scratch_name:
        scratch = Path(scratch_name)
        if inputs.app_wheel is not None:
            if not inputs.app_wheel.is_file():
                raise BuildError(f"--app-wheel: {inputs.app_wheel} does not exist")
            app_wheel = inputs.app_wheel
        else:
            app_wheel = build_wheel(inputs.app_dir, scratch, epoch)
        check_device_wheel(app_wheel)
        app_name, app_version, _, _ = parse_wheel_filename(app_wheel.name)
        if any(pin.name == canonicalize_name(app_name) for pin in pins):
            raise BuildError(f"{inputs.requirements}: pins the app itself ({app_name}); remove that line")
        version = inputs.version or str(app_version)
        try:
            fmt.check_version(version, "--version")
        except fmt.ReleaseError as exc:
            raise BuildError(str(exc)) from exc

        download(pins, target, inputs.cache, find_links=list(inputs.find_links), no_index=inputs.no_index)
        wheels = select(pins, requirements_of(app_wheel, target), inputs.cache, target)

        tree = scratch / "tree"
        (tree / WHEEL_DIR).mkdir(parents=True)
        shutil.copyfile(app_wheel, tree / WHEEL_DIR / app_wheel.name)
        (tree / WHEELHOUSE_DIR).mkdir()
        for wheel in wheels:
            shutil.copyfile(wheel.path, tree / WHEELHOUSE_DIR / wheel.path.name)
        shipped = sorted(pins, key=lambda p: p.name)
        (tree / REQUIREMENTS).write_text(render(shipped), encoding="utf-8")
        copy_models(inputs.models, tree / MODELS_DIR, inputs.skip_models)

        staging = scratch / "out"
        try:
            written = fmt.write_bundle(
                tree,
                staging,
                version=version,
                arch=target.arch,
                python=target.python,
                wheel=f"{WHEEL_DIR}/{app_wheel.name}",
                created=created,
            )
            # Read back with the installer's own verifier before it may leave the scratch area.
            manifest = fmt.verify_bundle(
                written, fmt.Expectation(arch=target.arch, version=version, python=target.python)
            )
        except fmt.ReleaseError as exc:
            raise BuildError(f"bundle: {exc}") from exc
        digest = file_sha256(written)
        inputs.out_dir.mkdir(parents=True, exist_ok=True)
        final = inputs.out_dir / written.name
        sidecar = inputs.out_dir / f"{written.name}.sha256"
        tmp = inputs.out_dir / f".{written.name}.partial"
        shutil.copyfile(written, tmp)
        tmp.replace(final)
        sidecar.write_text(f"{digest}  {final.name}\n", encoding="utf-8")
        return Result(
            bundle=final,
            sha256=digest,
            version=version,
            files=len(manifest.files),
            size=final.stat().st_size,
            seconds=round(time.monotonic() - started, 1),
        )
