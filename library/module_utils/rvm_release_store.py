"""The on-disk release directory of rvm-edge and its crash-safe primitives.

Layout under ``root`` (``/opt/rvm-edge`` on a device)::

    releases/<version>/            one complete release; never partially present
    releases/<version>/.rvm-release.json   the marker (install/activation record)
    current  -> releases/<version>  relative symlink
    previous -> releases/<version>  relative symlink
    .rvm-release.lock              flock(2) taken by every changing run

Why each primitive is shaped the way it is: a device can lose power or be killed at any instant.
Every visible change is therefore a single ``rename(2)`` of something fully prepared beside its
destination (a release tree, a marker file, a symlink), and everything prepared carries the
``.rvm-tmp-`` prefix so the next run can recognise and remove leftovers. Files and directories are
fsync'ed before they are renamed into place, so a rename never exposes a tree whose data is not on disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ansible.module_utils.rvm_release_bundle import (
    MANIFEST_NAME,
    MARKER_NAME,
    VERSION_RE,
    Expectation,
    Manifest,
    ReleaseError,
    parse_manifest,
    verify_bundle,
    verify_tree,
)

TMP_PREFIX = ".rvm-tmp-"
LOCK_NAME = ".rvm-release.lock"
LINKS = ("current", "previous")
STATES = ("installed", "activated", "rolled_back")


def utc_now() -> str:
    """Timestamps for humans; ordering uses the sequence numbers, which survive clock jumps."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Release:
    """One installed release as recorded by its marker file."""

    version: str
    arch: str
    python: str
    wheel: str | None
    bundle: str
    manifest_sha256: str
    installed_at: str
    installed_seq: int
    state: str = "installed"
    activated_at: str | None = None
    activated_seq: int | None = None
    rolled_back_at: str | None = None

    @property
    def last_used(self) -> int:
        """Rank for pruning: the later of install and activation, in this directory's own sequence."""
        return max(self.installed_seq, self.activated_seq or 0)

    def to_marker(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "arch": self.arch,
            "python": self.python,
            "wheel": self.wheel,
            "bundle": self.bundle,
            "manifest_sha256": self.manifest_sha256,
            "installed_at": self.installed_at,
            "installed_seq": self.installed_seq,
            "state": self.state,
            "activated_at": self.activated_at,
            "activated_seq": self.activated_seq,
            "rolled_back_at": self.rolled_back_at,
        }

    @classmethod
    def from_marker(cls, data: dict[str, Any]) -> Release:
        fields = cls.__dataclass_fields__
        release = cls(**{key: data[key] for key in fields if key in data})
        if release.state not in STATES or not isinstance(release.installed_seq, int):
            raise ValueError(f"state {release.state!r} / installed_seq {release.installed_seq!r}")
        return release


@dataclass(frozen=True)
class Snapshot:
    """What the directory looks like right now; operations plan against this."""

    releases: dict[str, Release]
    current: str | None
    previous: str | None
    unmanaged: list[str]
    temps: list[Path]
    warnings: list[str]

    def next_seq(self) -> int:
        seqs = [r.installed_seq for r in self.releases.values()]
        seqs += [r.activated_seq for r in self.releases.values() if r.activated_seq is not None]
        return max(seqs, default=0) + 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReleaseStore:
    """Reads and changes the release directory; every change is one atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases_dir = root / "releases"

    def release_path(self, version: str) -> Path:
        return self.releases_dir / version

    def link_path(self, name: str) -> Path:
        return self.root / name

    # ---- reading -------------------------------------------------------------------------------

    def read_marker(self, version: str) -> Release:
        path = self.release_path(version) / MARKER_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Release.from_marker(data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ReleaseError(f"{path}: unreadable release marker ({exc})") from exc

    def _read_link(self, name: str, releases: dict[str, Release], warnings: list[str]) -> str | None:
        path = self.link_path(name)
        try:
            target = os.readlink(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                warnings.append(f"{path} is not a symlink; it will be replaced when {name} is next switched")
                return None
            raise
        resolved = Path(os.path.normpath(self.root / target))
        if resolved.parent != self.releases_dir or resolved.name not in releases:
            warnings.append(f"{path} -> {target} does not point to an installed release; treated as absent")
            return None
        return resolved.name

    def snapshot(self) -> Snapshot:
        releases: dict[str, Release] = {}
        unmanaged: list[str] = []
        warnings: list[str] = []
        temps = sorted(self.root.glob(TMP_PREFIX + "*")) if self.root.is_dir() else []
        if self.releases_dir.is_dir():
            for entry in sorted(self.releases_dir.iterdir()):
                if entry.name.startswith(TMP_PREFIX):
                    temps.append(entry)
                    continue
                if entry.is_symlink() or not entry.is_dir() or not VERSION_RE.match(entry.name):
                    unmanaged.append(entry.name)
                    continue
                if not (entry / MARKER_NAME).is_file():
                    unmanaged.append(entry.name)
                    continue
                # A marker rewrite interrupted between mkstemp and rename leaves its temp file here.
                temps.extend(sorted(entry.glob(TMP_PREFIX + "*")))
                try:
                    releases[entry.name] = self.read_marker(entry.name)
                except ReleaseError as exc:
                    warnings.append(str(exc))
                    unmanaged.append(entry.name)
        for name in unmanaged:
            warnings.append(
                f"{self.releases_dir / name} was not installed by rvm_release (no valid {MARKER_NAME}); "
                "it is ignored and never pruned"
            )
        current = self._read_link("current", releases, warnings)
        previous = self._read_link("previous", releases, warnings)
        return Snapshot(releases, current, previous, unmanaged, temps, warnings)

    def installed_manifest(self, version: str) -> Manifest:
        path = self.release_path(version) / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReleaseError(f"release {version}: cannot read {path}: {exc}") from exc
        return parse_manifest(data, str(path))

    def verify(self, release: Release) -> None:
        """Prove an installed release still matches the manifest it was installed from."""
        source = f"release {release.version} at {self.release_path(release.version)}"
        manifest = self.installed_manifest(release.version)
        if manifest.sha256 != release.manifest_sha256:
            raise ReleaseError(
                f"{source}: {MANIFEST_NAME} changed since install (sha256 {manifest.sha256}, "
                f"installed {release.manifest_sha256})"
            )
        verify_tree(self.release_path(release.version), manifest, source)

    # ---- changing ------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changing runs on one host, so one run never cleans up another's temp files."""
        self.releases_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def remove_temps(self, temps: list[Path]) -> None:
        for path in temps:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def write_marker(self, release: Release) -> None:
        """Replace a release's marker atomically: temp file in the same directory, fsync, rename."""
        directory = self.release_path(release.version)
        self._write_json(directory, release.to_marker())

    @staticmethod
    def _write_json(directory: Path, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + "marker-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / MARKER_NAME)
        _fsync_dir(directory)

    def switch_link(self, name: str, version: str | None) -> None:
        """Point ``name`` at releases/<version> (or remove it): symlink to a temp name, then rename."""
        path = self.link_path(name)
        if version is None:
            path.unlink(missing_ok=True)
        else:
            tmp = self.root / f"{TMP_PREFIX}link-{name}-{secrets.token_hex(4)}"
            os.symlink(f"releases/{version}", tmp)
            os.replace(tmp, path)
        _fsync_dir(self.root)

    def install(self, bundle: Path, expect: Expectation, seq: int) -> Release:
        """Unpack and verify a bundle beside releases/, then rename it into place with its marker."""
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}install-", dir=self.releases_dir))
        try:
            manifest = verify_bundle(bundle, expect, dest=tmp)
            release = Release(
                version=manifest.version,
                arch=manifest.arch,
                python=manifest.python,
                wheel=manifest.wheel,
                bundle=bundle.name,
                manifest_sha256=manifest.sha256,
                installed_at=utc_now(),
                installed_seq=seq,
            )
            self._write_json(tmp, release.to_marker())
            for dirpath, _dirs, _files in os.walk(tmp):
                os.chmod(dirpath, 0o755)  # mkdir honours the umask; the service user must read releases
                _fsync_dir(Path(dirpath))
            final = self.release_path(manifest.version)
            if final.exists() or final.is_symlink():
                raise ReleaseError(f"{final} appeared while installing; refusing to overwrite it")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.releases_dir)
        return release

    def remove(self, version: str) -> None:
        """Take a release out of releases/ with one rename, then delete it at leisure."""
        doomed = self.releases_dir / f"{TMP_PREFIX}remove-{version}-{secrets.token_hex(4)}"
        os.rename(self.release_path(version), doomed)
        _fsync_dir(self.releases_dir)
        shutil.rmtree(doomed)


def activated(release: Release, seq: int | None) -> Release:
    """The release as it looks once it is current; ``seq`` None keeps its original activation order."""
    if seq is None:
        return replace(release, state="activated", rolled_back_at=None)
    return replace(release, state="activated", activated_at=utc_now(), activated_seq=seq, rolled_back_at=None)


def rolled_back(release: Release) -> Release:
    return replace(release, state="rolled_back", rolled_back_at=utc_now())
