"""The wheelhouse: every wheel a device needs to install the app with no network.

Why the closure check: ``pip download`` succeeding on the control node does not prove the device
can install offline (a wheel for the wrong platform in a cache, a dependency pulled in only by a
marker pip judged against the control node). So after downloading, the wheels are read back and the
app's requirements are walked to the end: each must be met by exactly the wheels shipped, for the
device's platform. Anything missing is refused here, not discovered on a device.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from rvm_bundle import BuildError
from rvm_bundle.lockfile import Pin, render
from rvm_bundle.target import Target

_PIP_TAIL_LINES = 15


@dataclass(frozen=True)
class Wheel:
    """A wheel file and what its name says about it."""

    path: Path
    name: NormalizedName
    version: Version
    compatible: bool
    tags: str = field(compare=False)

    @classmethod
    def read(cls, path: Path, target: Target) -> Wheel:
        try:
            name, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise BuildError(f"{path}: not a wheel file name: {exc}") from exc
        compatible = bool(set(tags) & target.tags)
        return cls(path, name, version, compatible, ".".join(sorted({str(t) for t in tags}))[:120])

    def requires(self, target: Target) -> list[Requirement]:
        """Requires-Dist of this wheel that apply on ``target`` (extras never installed)."""
        return requirements_of(self.path, target)


def requirements_of(path: Path, target: Target) -> list[Requirement]:
    """Read METADATA from a wheel and keep the requirements whose markers hold on the target."""
    try:
        with zipfile.ZipFile(path) as archive:
            meta_name = next(
                (n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")),
                None,
            )
            if meta_name is None:
                raise BuildError(f"wheel {path.name}: no .dist-info/METADATA (a damaged wheel)")
            text = archive.read(meta_name).decode("utf-8")
    except (zipfile.BadZipFile, OSError) as exc:
        raise BuildError(f"wheel {path.name}: unreadable ({exc}); delete it and build again") from exc
    headers = HeaderParser().parsestr(text)
    out: list[Requirement] = []
    for raw in headers.get_all("Requires-Dist") or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement as exc:
            raise BuildError(f"wheel {path.name}: bad Requires-Dist {raw!r}: {exc}") from exc
        if req.marker is None or req.marker.evaluate(target.marker_env):
            out.append(req)
    return out


def download(
    pins: list[Pin],
    target: Target,
    cache: Path,
    *,
    find_links: list[Path],
    no_index: bool,
) -> None:
    """``pip download`` the pins (and what they need) for ``target`` into ``cache``.

    pip keeps files already present, so a second build downloads nothing. Binary wheels only: a
    source distribution would have to be compiled on the device, which has no compiler or network.
    """
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / ".requirements.txt"
    lock.write_text(render(pins), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python,
        "--dest",
        str(cache),
        "-r",
        str(lock),
    ]
    for abi in (target.cp, "abi3", "none"):
        cmd += ["--abi", abi]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    for link in find_links:
        cmd += ["--find-links", str(link)]
    if no_index:
        cmd.append("--no-index")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-_PIP_TAIL_LINES:])
        raise BuildError(
            f"pip download for {target.describe()} failed (exit {proc.returncode}); a pinned "
            f"package may have no wheel for this platform:\n{tail}"
        )


def _describe_others(candidates: list[Wheel]) -> str:
    if not candidates:
        return "none at all"
    return "; ".join(f"{w.path.name} ({'fits' if w.compatible else 'other platform'})" for w in candidates)


def select(
    pins: list[Pin],
    app_requires: list[Requirement],
    cache: Path,
    target: Target,
) -> list[Wheel]:
    """The wheels to ship: the pins plus whatever their metadata requires, all fit for ``target``.

    Refuses a pin with no fitting wheel (missing, or only for another platform), and any requirement
    of the app or of a shipped wheel that the shipped set does not meet.
    """
    by_name: dict[NormalizedName, list[Wheel]] = {}
    for path in sorted(cache.glob("*.whl")):
        wheel = Wheel.read(path, target)
        by_name.setdefault(wheel.name, []).append(wheel)

    chosen: dict[NormalizedName, Wheel] = {}
    for pin in pins:
        candidates = by_name.get(pin.name, [])
        fits = [w for w in candidates if w.compatible and w.version == Version(pin.version)]
        if not fits:
            raise BuildError(
                f"missing wheel: {pin} for {target.describe()} is not in the wheelhouse {cache} "
                f"(wheels of {pin.name} there: {_describe_others(candidates)})"
            )
        chosen[pin.name] = fits[0]

    pending: list[tuple[str, Requirement]] = [("the app", req) for req in app_requires]
    for wheel in list(chosen.values()):
        pending += [(wheel.path.name, req) for req in wheel.requires(target)]
    while pending:
        who, req = pending.pop(0)
        name = canonicalize_name(req.name)
        have = chosen.get(name)
        if have is not None:
            if not req.specifier.contains(have.version, prereleases=True):
                raise BuildError(
                    f"{who} requires {req} but the lock pins {name}=={have.version}; "
                    "re-lock app/requirements/runtime.txt"
                )
            continue
        fits = sorted(
            (
                w
                for w in by_name.get(name, [])
                if w.compatible and req.specifier.contains(w.version, prereleases=True)
            ),
            key=lambda w: w.version,
            reverse=True,
        )
        if not fits:
            raise BuildError(
                f"missing wheel: {who} requires {req}, and no wheel for {target.describe()} in "
                f"{cache} satisfies it (wheels of {name}: {_describe_others(by_name.get(name, []))}); "
                "add it to the lock"
            )
        chosen[name] = fits[0]
        pending += [(fits[0].path.name, r) for r in fits[0].requires(target)]
    return sorted(chosen.values(), key=lambda w: w.name)
