"""rvm-edge release bundles: the MANIFEST.json schema and a verifying, streaming extractor.

Why a file of its own: the bundle format is a contract with the bundle builder (issue 5, item 1).
Keeping the parser free of Ansible lets both sides test against the same rules, and lets the
module verify a bundle without a second copy of the logic.

A bundle is ``rvm-edge-<version>-<arch>.tar.gz``. Its archive root holds ``MANIFEST.json`` and the
files that manifest lists; nothing else. Only regular files and directories are accepted: links,
devices and fifos are refused, as is any member whose path is absolute or climbs out with ``..``.
Every file is hashed while it streams out of the archive, so a bundle is read exactly once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO

APP_NAME = "rvm-edge"
MANIFEST_NAME = "MANIFEST.json"
MARKER_NAME = ".rvm-release.json"
SCHEMA_VERSION = 1
ARCHES = ("x86_64", "aarch64")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
BUNDLE_NAME_RE = re.compile(r"^rvm-edge-(?P<version>.+)-(?P<arch>x86_64|aarch64)\.tar\.gz$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}$")
REQUIRED_KEYS = frozenset({"schema", "name", "version", "arch", "python", "created", "files"})
OPTIONAL_KEYS = frozenset({"wheel"})
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# How many offending paths an error message lists before it says "and N more".
_LIST_LIMIT = 5


class ReleaseError(Exception):
    """A bundle, its manifest or an installed release is refused; the message names file and problem."""


@dataclass(frozen=True)
class Manifest:
    """The parsed MANIFEST.json of one bundle; ``sha256`` is the digest of the manifest's own bytes."""

    version: str
    arch: str
    python: str
    created: str
    files: dict[str, str]
    wheel: str | None
    sha256: str


@dataclass(frozen=True)
class Expectation:
    """What this host requires of a bundle; ``None`` means "not checked"."""

    arch: str
    version: str | None = None
    python: str | None = None


def normalize_arch(machine: str) -> str:
    """Map ``platform.machine()`` spellings to the two bundle architectures (or return it unchanged)."""
    return _ARCH_ALIASES.get(machine.lower(), machine)


def check_version(value: str, what: str) -> str:
    """Refuse version strings that could not safely be a directory name under releases/."""
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise ReleaseError(
            f"{what} {value!r} is not a valid release version: expected 1-64 characters of "
            "letters, digits, '.', '_', '+', '-', starting with a letter or digit"
        )
    return value


def parse_bundle_name(path: Path) -> tuple[str, str]:
    """Return (version, arch) from a bundle file name, which the builder must follow exactly."""
    match = BUNDLE_NAME_RE.match(path.name)
    if not match:
        raise ReleaseError(
            f"bundle {path}: the file name must be rvm-edge-<version>-<arch>.tar.gz with arch "
            f"one of {', '.join(ARCHES)}"
        )
    return check_version(match.group("version"), f"bundle {path}: version in the file name"), match.group(
        "arch"
    )


def _summary(items: list[str]) -> str:
    shown = ", ".join(sorted(items)[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown} and {more} more" if more > 0 else shown


def _check_manifest_path(path: object, source: str) -> str:
    if not isinstance(path, str) or not path:
        raise ReleaseError(f"{source}: files: every key must be a non-empty relative path, got {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or pure.as_posix() != path or any(part in (".", "..") for part in pure.parts):
        raise ReleaseError(
            f"{source}: files: {path!r} must be a normalised relative path inside the bundle "
            "(no leading '/', './' or '..', no empty components)"
        )
    if path in (MANIFEST_NAME, MARKER_NAME):
        raise ReleaseError(f"{source}: files: {path!r} is reserved and may not be listed")
    return path


def parse_manifest(data: bytes, source: str) -> Manifest:
    """Parse and validate MANIFEST.json bytes; every error names ``source`` and the offending key."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReleaseError(f"{source}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReleaseError(f"{source}: the top level must be a JSON object, got {type(doc).__name__}")
    missing = REQUIRED_KEYS - doc.keys()
    if missing:
        raise ReleaseError(f"{source}: missing required key(s): {', '.join(sorted(missing))}")
    unknown = doc.keys() - REQUIRED_KEYS - OPTIONAL_KEYS
    if unknown:
        raise ReleaseError(
            f"{source}: unknown key(s): {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(sorted(REQUIRED_KEYS | OPTIONAL_KEYS))}"
        )
    schema = doc["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema != SCHEMA_VERSION:
        raise ReleaseError(f"{source}: schema: expected {SCHEMA_VERSION}, got {schema!r}")
    if doc["name"] != APP_NAME:
        raise ReleaseError(f"{source}: name: expected {APP_NAME!r}, got {doc['name']!r}")
    version = check_version(doc["version"], f"{source}: version")
    if doc["arch"] not in ARCHES:
        raise ReleaseError(f"{source}: arch: expected one of {', '.join(ARCHES)}, got {doc['arch']!r}")
    python = doc["python"]
    if not isinstance(python, str) or not PYTHON_RE.match(python):
        raise ReleaseError(f"{source}: python: expected a CPython minor version like '3.10', got {python!r}")
    created = doc["created"]
    if not isinstance(created, str) or not _is_iso_timestamp(created):
        raise ReleaseError(f"{source}: created: expected an ISO 8601 timestamp string, got {created!r}")
    files = doc["files"]
    if not isinstance(files, dict) or not files:
        raise ReleaseError(f"{source}: files: expected a non-empty object of path -> sha256")
    for path, digest in files.items():
        _check_manifest_path(path, source)
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise ReleaseError(f"{source}: files: {path!r}: expected 64 lowercase hex digits, got {digest!r}")
    parents = {str(parent) for path in files for parent in PurePosixPath(path).parents}
    clashing = sorted(parents & files.keys())
    if clashing:
        raise ReleaseError(
            f"{source}: files: {clashing[0]!r} is listed as a file but other paths lie under it"
        )
    wheel = doc.get("wheel")
    if wheel is not None and (not isinstance(wheel, str) or wheel not in files or not wheel.endswith(".whl")):
        raise ReleaseError(f"{source}: wheel: {wheel!r} must be a '.whl' path that is listed under files")
    return Manifest(
        version=version,
        arch=doc["arch"],
        python=python,
        created=created,
        files=dict(files),
        wheel=wheel,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _is_iso_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_expectation(manifest: Manifest, expect: Expectation, source: str) -> None:
    """Refuse a manifest built for another host or naming another version than the one asked for."""
    if manifest.arch != expect.arch:
        raise ReleaseError(f"{source}: built for {manifest.arch} but this host is {expect.arch}")
    if expect.version is not None and manifest.version != expect.version:
        raise ReleaseError(
            f"{source}: holds version {manifest.version} but version {expect.version} was asked for"
        )
    if expect.python is not None and manifest.python != expect.python:
        raise ReleaseError(
            f"{source}: built for Python {manifest.python} but Python {expect.python} was asked for"
        )


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks so a multi-GB wheelhouse never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _member_path(name: str) -> str | None:
    """Normalise an archive member name; ``None`` for the archive root itself ('.' or './')."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return None
    return name


def _refuse_unsafe_member(member: tarfile.TarInfo, rel: str, source: str) -> None:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise ReleaseError(f"{source}: member {member.name!r} points outside the bundle (absolute or '..')")
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        target = member.linkname
        where = (
            "outside the bundle"
            if PurePosixPath(target).is_absolute() or ".." in PurePosixPath(target).parts
            else "inside the bundle"
        )
        raise ReleaseError(
            f"{source}: member {rel!r} is a {kind} to {target!r} ({where}); bundles may hold only "
            "regular files and directories (build them with tar --dereference)"
        )
    if not (member.isreg() or member.isdir()):
        raise ReleaseError(
            f"{source}: member {rel!r} is not a regular file or directory (type {member.type!r})"
        )


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Report a failed write (disk full, read-only) as such, not as a corrupt bundle."""
    try:
        yield
    except OSError as exc:
        raise ReleaseError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _create(path: Path, mode: int) -> IO[bytes]:
    """A new file with exactly ``mode``: the device's umask must not hide releases from the service user."""
    with _writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")


def _copy_member(src: IO[bytes], dest: Path | None, executable: bool) -> str:
    """Stream one member, hashing it, into ``dest`` (or nowhere, for check mode); return its sha256."""
    digest = hashlib.sha256()
    if dest is None:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()
    with _create(dest, 0o755 if executable else 0o644) as out:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            digest.update(chunk)
            with _writing(dest):
                out.write(chunk)
        with _writing(dest):
            out.flush()
            os.fsync(out.fileno())
    return digest.hexdigest()


def _make_dir(path: Path) -> None:
    with _writing(path):
        path.mkdir(mode=0o755, parents=True, exist_ok=True)


class _Walk:
    """State of one pass over an archive: what was seen, the hashes, the manifest once found."""

    def __init__(self, source: str, dest: Path | None, expect: Expectation | None) -> None:
        self.source = source
        self.dest = dest
        self.expect = expect
        self.hashes: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.manifest: Manifest | None = None
        self.stray_manifests: list[str] = []

    def _check_parents(self, rel: str) -> None:
        for parent in PurePosixPath(rel).parents:
            if str(parent) in self.hashes:
                raise ReleaseError(
                    f"{self.source}: member {rel!r} lies under {str(parent)!r}, which is a file"
                )

    def add_dir(self, rel: str) -> None:
        if rel in self.hashes:
            raise ReleaseError(f"{self.source}: member {rel!r} appears both as a file and a directory")
        self._check_parents(rel)
        self.dirs.add(rel)
        if self.dest is not None:
            _make_dir(self.dest / rel)

    def add_file(self, rel: str, member: tarfile.TarInfo, src: IO[bytes]) -> None:
        if rel in self.hashes:
            raise ReleaseError(f"{self.source}: member {rel!r} appears more than once")
        if rel in self.dirs:
            raise ReleaseError(f"{self.source}: member {rel!r} appears both as a file and a directory")
        self._check_parents(rel)
        self.dirs.update(str(parent) for parent in PurePosixPath(rel).parents if str(parent) != ".")
        if rel.endswith("/" + MANIFEST_NAME):
            self.stray_manifests.append(rel)
        target: Path | None = None
        if self.dest is not None:
            target = self.dest / rel
            _make_dir(target.parent)
        if rel == MANIFEST_NAME:
            if member.size > MAX_MANIFEST_BYTES:
                raise ReleaseError(
                    f"{self.source}: {MANIFEST_NAME} is {member.size} bytes, limit {MAX_MANIFEST_BYTES}"
                )
            data = src.read()
            self.manifest = parse_manifest(data, f"{self.source}: {MANIFEST_NAME}")
            if self.expect is not None:
                # Checked as soon as the manifest streams past: a builder that writes MANIFEST.json
                # first lets a wrong-arch bundle be refused before anything else is unpacked.
                check_expectation(self.manifest, self.expect, f"bundle {self.source}")
            if target is not None:
                _write_small(target, data)
            self.hashes[rel] = self.manifest.sha256
            return
        self.hashes[rel] = _copy_member(src, target, bool(member.mode & 0o111))


def _write_small(path: Path, data: bytes) -> None:
    out = _create(path, 0o644)
    with out, _writing(path):
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _walk_archive(path: Path, walk: _Walk, stop_at_manifest: bool = False) -> None:
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                rel = _member_path(member.name)
                if rel is None:
                    if member.isdir():
                        continue
                    raise ReleaseError(f"{walk.source}: member {member.name!r} has an empty path")
                _refuse_unsafe_member(member, rel, walk.source)
                if member.isdir():
                    walk.add_dir(rel)
                    continue
                src = archive.extractfile(member)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise ReleaseError(f"{walk.source}: member {rel!r} has no data")
                walk.add_file(rel, member, src)
                if stop_at_manifest and walk.manifest is not None:
                    return
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ReleaseError(f"bundle {path} is corrupt or truncated: {exc}") from exc
    except OSError as exc:
        # Writes are reported by _writing as ReleaseError; an OSError here came from reading the
        # archive (gzip.BadGzipFile, a short read, an unreadable file).
        raise ReleaseError(f"bundle {path} is corrupt or unreadable: {exc}") from exc


def read_bundle_manifest(path: Path) -> Manifest:
    """Read only the manifest of a bundle (for "is this already installed?"), without unpacking files."""
    walk = _Walk(str(path), None, None)
    _walk_archive(path, walk, stop_at_manifest=True)
    if walk.manifest is None:
        raise ReleaseError(_no_manifest_message(path, walk))
    return walk.manifest


def _no_manifest_message(path: Path, walk: _Walk) -> str:
    hint = ""
    if walk.stray_manifests:
        hint = (
            f" (found {walk.stray_manifests[0]}: the manifest must sit at the archive root, not in a folder)"
        )
    return f"bundle {path} has no {MANIFEST_NAME} at its top level{hint}"


def verify_bundle(path: Path, expect: Expectation, dest: Path | None = None) -> Manifest:
    """Verify a bundle completely, unpacking it into ``dest`` (an empty directory) when given.

    With ``dest=None`` nothing is written (check mode). Any problem raises ReleaseError; the caller
    owns ``dest`` and removes it on failure.
    """
    name_version, name_arch = parse_bundle_name(path)
    if name_arch != expect.arch:
        raise ReleaseError(f"bundle {path}: built for {name_arch} (file name) but this host is {expect.arch}")
    if expect.version is not None and name_version != expect.version:
        raise ReleaseError(
            f"bundle {path}: the file name says version {name_version} but version {expect.version} was asked for"
        )
    if not path.is_file():
        raise ReleaseError(f"bundle {path} does not exist or is not a regular file")
    walk = _Walk(str(path), dest, expect)
    _walk_archive(path, walk)
    manifest = walk.manifest
    if manifest is None:
        raise ReleaseError(_no_manifest_message(path, walk))
    if manifest.version != name_version:
        raise ReleaseError(
            f"bundle {path}: the file name says version {name_version} but {MANIFEST_NAME} says {manifest.version}"
        )
    if manifest.arch != name_arch:
        raise ReleaseError(
            f"bundle {path}: the file name says {name_arch} but {MANIFEST_NAME} says {manifest.arch}"
        )
    compare_files(manifest, {k: v for k, v in walk.hashes.items() if k != MANIFEST_NAME}, f"bundle {path}")
    return manifest


def compare_files(manifest: Manifest, actual: dict[str, str], source: str, allow_extra: bool = False) -> None:
    """Refuse missing, extra (unless allowed) and mismatching files, naming them."""
    missing = [p for p in manifest.files if p not in actual]
    if missing:
        raise ReleaseError(
            f"{source}: {len(missing)} file(s) listed in {MANIFEST_NAME} are missing: {_summary(missing)}"
        )
    extra = [p for p in actual if p not in manifest.files]
    if extra and not allow_extra:
        raise ReleaseError(f"{source}: {len(extra)} file(s) not listed in {MANIFEST_NAME}: {_summary(extra)}")
    bad = [p for p, digest in manifest.files.items() if actual[p] != digest]
    if bad:
        first = bad[0]
        raise ReleaseError(
            f"{source}: sha256 mismatch for {len(bad)} file(s): {_summary(bad)} "
            f"({first}: {MANIFEST_NAME} says {manifest.files[first]}, the file is {actual[first]})"
        )


def verify_tree(root: Path, manifest: Manifest, source: str) -> None:
    """Re-hash an installed release's files against its manifest; extra files (venv, config) are fine."""
    actual: dict[str, str] = {}
    for rel in manifest.files:
        path = root / rel
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise ReleaseError(f"{source}: {rel} is no longer a regular file")
        actual[rel] = file_sha256(path)
    compare_files(manifest, actual, source, allow_extra=True)


# ---- the builder's half of the contract ---------------------------------------------------------
# The bundle builder (make release) may use these so both sides share one definition of the format;
# this file imports nothing from Ansible and can be loaded straight from library/module_utils.


def _hash_tree(tree: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            raise ReleaseError(f"{path}: bundles may not contain symlinks; copy the file it points to")
        if path.is_dir():
            continue
        if not path.is_file():
            raise ReleaseError(f"{path}: bundles hold only regular files and directories")
        if rel in (MANIFEST_NAME, MARKER_NAME):
            raise ReleaseError(
                f"{path}: {rel} is written by the builder/installer and may not be in the tree"
            )
        files[rel] = file_sha256(path)
    return files


def manifest_for_tree(
    tree: Path, *, version: str, arch: str, python: str, wheel: str | None = None, created: str | None = None
) -> dict[str, object]:
    """Hash every regular file under ``tree`` into a schema-1 manifest, validated before it is returned."""
    doc: dict[str, object] = {
        "schema": SCHEMA_VERSION,
        "name": APP_NAME,
        "version": version,
        "arch": arch,
        "python": python,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "files": _hash_tree(tree),
    }
    if wheel is not None:
        doc["wheel"] = wheel
    parse_manifest(_manifest_bytes(doc), f"manifest for {tree}")
    return doc


def _manifest_bytes(doc: dict[str, object]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _tar_info(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_bundle(
    tree: Path,
    dest_dir: Path,
    *,
    version: str,
    arch: str,
    python: str,
    wheel: str | None = None,
    created: str | None = None,
) -> Path:
    """Write ``dest_dir/rvm-edge-<version>-<arch>.tar.gz`` from ``tree`` in the form the installer wants.

    MANIFEST.json comes first (a wrong-arch bundle is refused before anything is unpacked), members
    are sorted with fixed owner and timestamps, so the same tree and ``created`` give the same bytes.
    """
    doc = manifest_for_tree(tree, version=version, arch=arch, python=python, wheel=wheel, created=created)
    data = _manifest_bytes(doc)
    manifest = parse_manifest(data, f"manifest for {tree}")
    mtime = int(datetime.fromisoformat(manifest.created.replace("Z", "+00:00")).timestamp())
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"rvm-edge-{version}-{arch}.tar.gz"
    partial = dest_dir / f".{path.name}.partial"
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=mtime) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        archive.addfile(_tar_info(MANIFEST_NAME, len(data), 0o644, mtime), io.BytesIO(data))
        for rel in manifest.files:
            source = tree / rel
            info = source.stat()
            mode = 0o755 if info.st_mode & 0o111 else 0o644
            with source.open("rb") as handle:
                archive.addfile(_tar_info(rel, info.st_size, mode, mtime), handle)
    os.replace(partial, path)
    return path
