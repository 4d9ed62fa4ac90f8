"""The platform a bundle is built for: CPU architecture, CPython minor version and glibc.

Why it matters: the wheelhouse is downloaded on the control node (x86_64, whatever Python it has)
for a device that may be an aarch64 Jetson on Python 3.10, so every marker and wheel tag must be
judged against the device, never against the machine running the builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging.tags import Tag, compatible_tags, cpython_tags

from rvm_bundle import BuildError

ARCHES = ("x86_64", "aarch64")
_PYTHON_RE = re.compile(r"^3\.(\d{1,2})$")
# Oldest manylinux the wheels may claim (manylinux2014) and the glibc each target ships:
# Debian 12 (the lab, CPU hosts) has 2.36, JetPack 6 (Ubuntu 22.04) 2.35.
_MANYLINUX_FLOOR = 17
DEFAULT_GLIBC = {"x86_64": (2, 36), "aarch64": (2, 35)}
_LEGACY_ALIASES = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Target:
    """One device platform; ``glibc`` is the newest manylinux level its C library satisfies."""

    arch: str
    python: str
    glibc: tuple[int, int]

    @classmethod
    def make(cls, arch: str, python: str, glibc: str | None = None) -> Target:
        if arch not in ARCHES:
            raise BuildError(f"--arch: expected one of {', '.join(ARCHES)}, got {arch!r}")
        if not _PYTHON_RE.match(python):
            raise BuildError(f"--python: expected a CPython minor version like 3.10, got {python!r}")
        if glibc is None:
            level = DEFAULT_GLIBC[arch]
        else:
            match = re.match(r"^2\.(\d{1,2})$", glibc)
            if not match:
                raise BuildError(f"--glibc: expected a version like 2.35, got {glibc!r}")
            level = (2, int(match.group(1)))
        return cls(arch, python, level)

    @property
    def minor(self) -> int:
        match = _PYTHON_RE.match(self.python)
        assert match is not None  # checked in make()
        return int(match.group(1))

    @property
    def cp(self) -> str:
        """The interpreter/ABI tag, for example ``cp310``."""
        return f"cp3{self.minor}"

    @property
    def platforms(self) -> list[str]:
        """manylinux platform tags this target accepts, newest first (pip's --platform values)."""
        out: list[str] = []
        for minor in range(self.glibc[1], -1, -1):
            if minor < _MANYLINUX_FLOOR and self.arch == "aarch64":
                break
            if minor < 5:
                break
            out.append(f"manylinux_2_{minor}_{self.arch}")
            legacy = _LEGACY_ALIASES.get((2, minor))
            if legacy:
                out.append(f"{legacy}_{self.arch}")
        return out

    @cached_property
    def tags(self) -> frozenset[Tag]:
        """Every wheel tag a CPython of this version on this platform installs."""
        version = (3, self.minor)
        found = set(cpython_tags(version, platforms=self.platforms))
        found.update(compatible_tags(version, interpreter=self.cp, platforms=self.platforms))
        return frozenset(found)

    @property
    def marker_env(self) -> dict[str, str]:
        """PEP 508 marker variables of the device (``extra`` empty: extras are never installed)."""
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "platform_machine": self.arch,
            "platform_system": "Linux",
            "sys_platform": "linux",
            "os_name": "posix",
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }

    def describe(self) -> str:
        return f"linux {self.arch} CPython {self.python} (glibc {self.glibc[0]}.{self.glibc[1]})"
