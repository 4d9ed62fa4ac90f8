"""Bad bundles are refused before anything changes: each with a message naming the problem.

Every case starts from a device running 1.0.0 and tries to install a broken 2.0.0; afterwards
``current`` must still point at 1.0.0 and releases/ must hold nothing new, not even a temp dir.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rvm_release_helpers import DELETE, ModuleRun, add_file, default_files, make_bundle, sha256

Builder = Callable[[Path], Path]


def _symlink(target: str) -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("./models/link.onnx")
        info.type = tarfile.SYMTYPE
        info.linkname = target
        archive.addfile(info)

    return add


def _hardlink(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("./models/hard.onnx")
    info.type = tarfile.LNKTYPE
    info.linkname = "/etc/shadow"
    archive.addfile(info)


def _member(name: str) -> Callable[[tarfile.TarFile], None]:
    return lambda archive: add_file(archive, name, b"payload")


def _truncated(directory: Path) -> Path:
    files = default_files("2.0.0")
    files["models/detector.onnx"] = os.urandom(200_000)  # incompressible, so the cut lands in data
    path = make_bundle(directory, "2.0.0", files=files)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_gzip(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rvm-edge-2.0.0-x86_64.tar.gz"
    path.write_bytes(b"this is not a gzip file at all")
    return path


def _without_manifest(directory: Path, member: str | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rvm-edge-2.0.0-x86_64.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add_file(archive, "rvm_edge-2.0.0-py3-none-any.whl", b"wheel")
        if member:
            add_file(archive, member, b"{}")
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def _changed(rel: str, data: bytes) -> dict[str, bytes]:
    files = default_files("2.0.0")
    files[rel] = data
    return files


def _without(rel: str) -> dict[str, bytes]:
    files = default_files("2.0.0")
    del files[rel]
    return files


CASES: dict[str, tuple[Builder, dict[str, Any], list[str]]] = {
    "sha256 mismatch": (
        lambda d: make_bundle(d, "2.0.0", archived=_changed("models/detector.onnx", b"tampered")),
        {},
        ["sha256 mismatch", "models/detector.onnx"],
    ),
    "missing wheel": (
        lambda d: make_bundle(d, "2.0.0", archived=_without("rvm_edge-2.0.0-py3-none-any.whl")),
        {},
        ["missing", "rvm_edge-2.0.0-py3-none-any.whl"],
    ),
    "extra file": (
        lambda d: make_bundle(d, "2.0.0", archived=_changed("bin/backdoor.sh", b"#!/bin/sh")),
        {},
        ["not listed in MANIFEST.json", "bin/backdoor.sh"],
    ),
    "path traversal": (
        lambda d: make_bundle(d, "2.0.0", add_members=_member("../../etc/cron.d/evil")),
        {},
        ["points outside the bundle", "etc/cron.d/evil"],
    ),
    "absolute path": (
        lambda d: make_bundle(d, "2.0.0", add_members=_member("/etc/cron.d/evil")),
        {},
        ["points outside the bundle", "/etc/cron.d/evil"],
    ),
    "symlink outside": (
        lambda d: make_bundle(d, "2.0.0", add_members=_symlink("/etc/shadow")),
        {},
        ["symlink", "/etc/shadow", "outside the bundle"],
    ),
    "symlink climbing out": (
        lambda d: make_bundle(d, "2.0.0", add_members=_symlink("../../../../etc/shadow")),
        {},
        ["symlink", "outside the bundle"],
    ),
    "hard link": (
        lambda d: make_bundle(d, "2.0.0", add_members=_hardlink),
        {},
        ["hard link", "models/hard.onnx"],
    ),
    "wrong arch by name": (
        lambda d: make_bundle(d, "2.0.0", "aarch64"),
        {},
        ["built for aarch64", "this host is x86_64"],
    ),
    "wrong arch in manifest": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"arch": "aarch64"}),
        {},
        ["built for aarch64 but this host is x86_64"],
    ),
    "manifest version differs from file name": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"version": "2.0.1"}),
        {},
        ["file name says version 2.0.0", "MANIFEST.json says 2.0.1"],
    ),
    "version parameter differs": (
        lambda d: make_bundle(d, "2.0.0"),
        {"version": "2.1.0"},
        ["file name says version 2.0.0", "version 2.1.0 was asked for"],
    ),
    "python version differs": (
        lambda d: make_bundle(d, "2.0.0"),
        {"python_version": "3.11"},
        ["built for Python 3.10", "Python 3.11 was asked for"],
    ),
    "truncated": (_truncated, {}, ["corrupt or truncated"]),
    "not gzip": (_not_gzip, {}, ["rvm-edge-2.0.0-x86_64.tar.gz is corrupt"]),
    "no manifest": (lambda d: _without_manifest(d, None), {}, ["has no MANIFEST.json at its top level"]),
    "manifest in a folder": (
        lambda d: _without_manifest(d, "rvm-edge-2.0.0/MANIFEST.json"),
        {},
        ["must sit at the archive root", "rvm-edge-2.0.0/MANIFEST.json"],
    ),
    "manifest not json": (
        lambda d: make_bundle(d, "2.0.0", raw_manifest=b"{nope"),
        {},
        ["not valid UTF-8 JSON"],
    ),
    "manifest missing key": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"arch": DELETE}),
        {},
        ["missing required key(s): arch"],
    ),
    "manifest unknown key": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"signature": "x"}),
        {},
        ["unknown key(s): signature"],
    ),
    "manifest bad digest": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"files": {"a.whl": "XYZ"}}),
        {},
        ["files: 'a.whl': expected 64 lowercase hex digits"],
    ),
    "manifest lists a traversal": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"files": {"../x": sha256(b"")}}),
        {},
        ["files: '../x' must be a normalised relative path"],
    ),
    "file and directory with one name": (
        lambda d: make_bundle(d, "2.0.0", add_members=_member("models/detector.onnx/inner")),
        {},
        ["'models/detector.onnx/inner' lies under 'models/detector.onnx', which is a file"],
    ),
    "file where a directory was": (
        lambda d: make_bundle(d, "2.0.0", add_members=_member("./models")),
        {},
        ["member 'models' appears both as a file and a directory"],
    ),
    "directory then file with one name": (
        lambda d: make_bundle(
            d,
            "2.0.0",
            files={"models/a/b.onnx": b"b", "models/a": b"a", "rvm_edge-2.0.0-py3-none-any.whl": b"w"},
        ),
        {},
        ["'models/a' is listed as a file but other paths lie under it"],
    ),
    "manifest wrong schema": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"schema": 2}),
        {},
        ["schema: expected 1, got 2"],
    ),
    "manifest wheel not listed": (
        lambda d: make_bundle(d, "2.0.0", manifest_patch={"wheel": "other.whl"}),
        {},
        ["wheel: 'other.whl' must be a '.whl' path that is listed under files"],
    ),
    "bad file name": (
        lambda d: make_bundle(d, "2.0.0", name="release.tgz"),
        {},
        ["rvm-edge-<version>-<arch>.tar.gz"],
    ),
    "bundle checksum mismatch": (
        lambda d: make_bundle(d, "2.0.0"),
        {"bundle_sha256": "0" * 64},
        ["bundle_sha256 says 0000", "corrupt or truncated"],
    ),
    "bundle missing": (lambda d: d / "rvm-edge-2.0.0-x86_64.tar.gz", {}, ["does not exist"]),
}


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_bad_bundle_is_refused_and_current_untouched(
    case: str, check: bool, run_module: ModuleRun, root: Path, bundles: Path, deploy: Callable[[str], Any]
) -> None:
    deploy("1.0.0")
    before = _tree(root)
    build, extra_args, fragments = CASES[case]
    bundle = build(bundles / "bad")
    args = {"root": str(root), "state": "present", "bundle": str(bundle), "arch": "x86_64", **extra_args}

    result = run_module(args, check=check)

    assert result.get("failed") is True, result
    for fragment in fragments:
        assert fragment in result["msg"], result["msg"]
    assert os.readlink(root / "current") == "releases/1.0.0"
    assert _tree(root) == before, "a refused bundle must leave no trace, not even a temp dir"


def test_bad_version_parameter_is_refused(run_module: ModuleRun, root: Path) -> None:
    result = run_module({"root": str(root), "state": "current", "version": "../../etc"})
    assert result["failed"] is True
    assert "parameter version: '../../etc' is not a valid release version" in result["msg"]


def test_manifest_written_last_is_still_verified(run_module: ModuleRun, root: Path, bundles: Path) -> None:
    """A builder may put MANIFEST.json anywhere in the archive; verification must not depend on order."""
    files = default_files("3.0.0")
    manifest = {
        "schema": 1,
        "name": "rvm-edge",
        "version": "3.0.0",
        "arch": "x86_64",
        "python": "3.10",
        "created": "2026-11-29T16:00:00+00:00",
        "files": {rel: sha256(data) for rel, data in files.items()},
    }
    files["models/detector.onnx"] = b"changed after hashing"
    bundles.mkdir(parents=True)
    path = bundles / "rvm-edge-3.0.0-x86_64.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for rel, data in files.items():
            add_file(archive, rel, data)
        add_file(archive, "MANIFEST.json", json.dumps(manifest).encode())

    result = run_module({"root": str(root), "state": "present", "bundle": str(path), "arch": "x86_64"})

    assert result["failed"] is True
    assert "sha256 mismatch for 1 file(s): models/detector.onnx" in result["msg"]
    assert not (root / "releases" / "3.0.0").exists()
