"""The runtime lock (app/requirements/runtime.txt) narrowed to one target.

The lock carries markers (numpy differs for Python 3.10, OpenVINO is x86-only). pip would judge
those markers against the control node; here they are judged against the device, and the result
is a list of exact pins that the device installs with ``pip install --no-index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from rvm_bundle import BuildError
from rvm_bundle.target import Target


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of the lock that applies to the target."""

    name: NormalizedName
    version: str
    line: int

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def read_pins(path: Path, target: Target) -> list[Pin]:
    """Pins of ``path`` whose markers hold on ``target``; anything but exact pins is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"requirements {path}: cannot read: {exc.strerror or exc}") from exc
    pins: dict[NormalizedName, Pin] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise BuildError(f"{path}:{number}: options ({line.split()[0]}) are not supported in the lock")
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise BuildError(f"{path}:{number}: not a requirement: {exc}") from exc
        if req.marker is not None and not req.marker.evaluate(target.marker_env):
            continue
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise BuildError(
                f"{path}:{number}: {req.name} must be pinned exactly (name==version) so every device "
                f"gets the same code; got {str(req.specifier) or 'no version'}"
            )
        name = canonicalize_name(req.name)
        if name in pins:
            raise BuildError(
                f"{path}:{number}: {req.name} is pinned twice for {target.describe()} "
                f"(also line {pins[name].line})"
            )
        pins[name] = Pin(name, specs[0].version, number)
    if not pins:
        raise BuildError(f"{path}: no requirement applies to {target.describe()}")
    return sorted(pins.values(), key=lambda p: p.name)


def render(pins: list[Pin]) -> str:
    """The requirements file shipped in the bundle: exact pins, no markers (already decided)."""
    return "".join(f"{pin}\n" for pin in pins)
