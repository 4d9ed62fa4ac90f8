"""The reference bundle writer in rvm_release_bundle produces exactly what the installer accepts.

The bundle builder (make release) can use write_bundle directly; these tests pin the properties it
relies on: the installer accepts the result, MANIFEST.json comes first, builds are reproducible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ansible.module_utils.rvm_release_bundle import ReleaseError, write_bundle
from rvm_release_helpers import MODULE_UTILS, ModuleRun

CREATED = "2026-11-29T16:00:00Z"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "staging"
    (root / "wheelhouse").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "rvm_edge-1.4.0-py3-none-any.whl").write_bytes(b"app wheel")
    (root / "wheelhouse" / "numpy-2.2.0-cp310-cp310-manylinux_2_17_aarch64.whl").write_bytes(b"numpy")
    (root / "models" / "manifest.json").write_text('{"models": []}')
    (root / "models" / "detector.onnx").write_bytes(os.urandom(4096))
    script = root / "bin" / "healthcheck.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return root


def test_written_bundle_installs_and_keeps_executable_bits(
    tree: Path, tmp_path: Path, run_module: ModuleRun
) -> None:
    bundle = write_bundle(
        tree,
        tmp_path / "dist",
        version="1.4.0",
        arch="x86_64",
        python="3.10",
        wheel="rvm_edge-1.4.0-py3-none-any.whl",
        created=CREATED,
    )

    with tarfile.open(bundle) as archive:
        names = archive.getnames()
    result = run_module(
        {"root": str(tmp_path / "opt"), "state": "present", "bundle": str(bundle), "arch": "x86_64"}
    )

    assert bundle.name == "rvm-edge-1.4.0-x86_64.tar.gz"
    assert names[0] == "MANIFEST.json"
    assert result["changed"] is True, result.get("msg")
    release = tmp_path / "opt" / "releases" / "1.4.0"
    assert (release / "bin" / "healthcheck.sh").stat().st_mode & 0o777 == 0o755
    assert (release / "models" / "detector.onnx").read_bytes() == (
        tree / "models" / "detector.onnx"
    ).read_bytes()
    assert result["releases"][0]["wheel"] == "rvm_edge-1.4.0-py3-none-any.whl"


def test_rebuilding_the_same_tree_gives_the_same_bytes(
    tree: Path, tmp_path: Path, run_module: ModuleRun
) -> None:
    first = write_bundle(tree, tmp_path / "a", version="1.4.0", arch="x86_64", python="3.10", created=CREATED)
    second = write_bundle(
        tree, tmp_path / "b", version="1.4.0", arch="x86_64", python="3.10", created=CREATED
    )
    args = {"root": str(tmp_path / "opt"), "state": "present", "arch": "x86_64"}

    run_module({**args, "bundle": str(first)})
    again = run_module({**args, "bundle": str(second)})

    assert first.read_bytes() == second.read_bytes()
    assert again["changed"] is False


def test_symlink_in_the_tree_is_refused(tree: Path, tmp_path: Path) -> None:
    (tree / "models" / "latest.onnx").symlink_to("detector.onnx")
    with pytest.raises(ReleaseError, match=r"latest\.onnx: bundles may not contain symlinks"):
        write_bundle(tree, tmp_path / "dist", version="1.4.0", arch="x86_64", python="3.10")
    assert not (tmp_path / "dist").exists()


def test_bad_metadata_is_refused_before_writing(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"arch: expected one of x86_64, aarch64, got 'armv7l'"):
        write_bundle(tree, tmp_path / "dist", version="1.4.0", arch="armv7l", python="3.10")
    with pytest.raises(ReleaseError, match=r"wheel: 'missing\.whl' must be a '\.whl' path that is listed"):
        write_bundle(
            tree, tmp_path / "dist", version="1.4.0", arch="x86_64", python="3.10", wheel="missing.whl"
        )
    assert not (tmp_path / "dist").exists()


def test_writer_needs_no_ansible(tree: Path, tmp_path: Path) -> None:
    """The builder runs on the control node's build venv, which need not have Ansible: -S hides site-packages."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import rvm_release_bundle as b; "
        "print(b.write_bundle(Path(sys.argv[2]), Path(sys.argv[3]), version='2.0.0', arch='aarch64', python='3.10'))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(MODULE_UTILS), str(tree), str(tmp_path / "dist")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "dist" / "rvm-edge-2.0.0-aarch64.tar.gz")
